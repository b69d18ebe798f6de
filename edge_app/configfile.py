"""``--config FILE.toml`` for every command: option values from a file; the command line wins.

A key is an option's long name with underscores (``--min-cell-area`` -> ``min_cell_area``,
``--format`` -> ``format``) or a positional argument's name (``models``, ``bundle``). The
keys are read from the command's own argparse parser, so an option added later is a
valid key without any edit here. A value is checked as the command line checks it (the
option's type and choices); a switch takes ``true`` or ``false``; an option that takes
several values takes a list (a comma-separated one, like ``--threads 1,2,4``, either). An unknown key or a wrong type is a one-line error.

Sub-commands share one file: their own keys go in a table named after them
(``[report]``, ``[serve]``), and the top-level keys they also know (``out``, ``host``, ...)
apply to them too.

>>> import argparse
>>> p = argparse.ArgumentParser(prog="demo")
>>> _ = p.add_argument("--min-cell-area", type=float, default=0.001)
>>> _ = p.add_argument("--quiet", action="store_true")
>>> apply_config(p, {"min_cell_area": 0.002, "quiet": True}, "demo.toml")
{}
>>> p.parse_args([]).min_cell_area, p.parse_args(["--min-cell-area", "0.005"]).min_cell_area
(0.002, 0.005)
>>> apply_config(p, {"min_cell_aera": 1}, "demo.toml")
Traceback (most recent call last):
...
cytoedge.edge_app.configfile.ConfigFileError: config file demo.toml: unknown key min_cell_aera (did you mean min_cell_area?); the keys are the long option names with underscores, see --help
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cytoedge.edge_app.clitools import DeprecatedAlias, deprecation_line, did_you_mean
from cytoedge.edge_app.errors import CytoEdgeError

CONFIG_HELP = ("TOML file of option values: keys are the long option names with underscores "
               "(--min-cell-area -> min_cell_area); command-line values win")


class ConfigFileError(CytoEdgeError):
    """A config file cannot be read, or holds an unknown key or a value of the wrong type."""


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The key/value table of a TOML (or, by its suffix, JSON) file; unreadable or malformed -> one-line error."""
    path = Path(path)
    kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigFileError(f"config file {path} is not UTF-8 text") from None
    try:
        raw = json.loads(text) if kind == "JSON" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigFileError(f"config file {path} is not valid {kind}: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigFileError(f"config file {path} must hold key = value pairs")
    return raw


def unknown_key_message(source: str, key: str, known: Iterable[str]) -> str:
    """``config file F: unknown key K (did you mean X?)``: the closest known key, when one is close."""
    return f"config file {source}: unknown key {key}{did_you_mean(key, known)}"


def option_keys(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Config key -> argparse action: every long option (dashes -> underscores) and every positional."""
    keys: dict[str, argparse.Action] = {}
    for action in parser._actions:  # argparse has no public list of its actions
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)) or action.dest == "config":
            continue
        if not action.option_strings:
            keys[action.dest] = action
        for opt in action.option_strings:
            if opt.startswith("--"):
                keys[opt[2:].replace("-", "_")] = action
    return keys


def _flag_value(action: argparse.Action, key: str, value: Any, source: str) -> Any:
    if not isinstance(value, bool):
        raise ConfigFileError(f"config file {source}: {key} = {value!r} must be true or false (it is a switch)")
    if isinstance(action, argparse.BooleanOptionalAction):
        return value if not key.startswith("no_") else not value
    if isinstance(action, argparse._CountAction):
        return int(value)
    return action.const if value else action.default


def _one_value(action: argparse.Action, key: str, value: Any, source: str) -> Any:
    if isinstance(value, bool) or isinstance(value, (dict, list)):
        what = "true/false" if isinstance(value, bool) else ("a table" if isinstance(value, dict) else "a list")
        raise ConfigFileError(f"config file {source}: {key} = {value!r} is {what}; it takes one "
                              f"{getattr(action.type, '__name__', 'text value') if action.type else 'text value'}")
    text = value if isinstance(value, str) else str(value)
    try:
        result = action.type(text) if action.type else text
    except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
        kind = getattr(action.type, "__name__", "value")
        raise ConfigFileError(f"config file {source}: {key} = {value!r} is not a valid "
                              f"{kind if kind in ('int', 'float') else 'value'} ({exc})") from None
    if action.choices is not None and result not in action.choices:
        raise ConfigFileError(f"config file {source}: {key} = {value!r} is not one of "
                              f"{', '.join(map(str, action.choices))}")
    return result


def _value(action: argparse.Action, key: str, value: Any, source: str) -> Any:
    if action.nargs == 0:
        return _flag_value(action, key, value, source)
    many = action.nargs in ("+", "*") or isinstance(action.nargs, int) or isinstance(action, argparse._AppendAction)
    if not many:
        if isinstance(value, list) and action.type is None and all(isinstance(v, (str, int, float)) for v in value):
            value = ",".join(map(str, value))  # a comma-separated option (--threads 1,2,4) takes a list too
        return _one_value(action, key, value, source)
    items = value if isinstance(value, list) else [value]
    if isinstance(action.nargs, int) and len(items) != action.nargs:
        raise ConfigFileError(f"config file {source}: {key} takes a list of {action.nargs} values, got {value!r}")
    if action.nargs == "+" and not items:
        raise ConfigFileError(f"config file {source}: {key} takes a list of at least one value")
    return [_one_value(action, key, v, source) for v in items]


def apply_config(parser: argparse.ArgumentParser, values: dict[str, Any], source: str) -> dict[str, Any]:
    """Make ``values`` the parser's defaults (checked like command-line values), so the command line still wins.

    An option or positional the file provides is no longer required on the command line.
    Returns the values of repeatable options (``action="append"``): argparse would add the
    command line's to them, so :func:`parse_args` uses them only when the command line gives none.
    """
    keys = option_keys(parser)
    defaults: dict[str, Any] = {}
    fallbacks: dict[str, Any] = {}
    for key, value in values.items():
        action = keys.get(key)
        if action is None:
            raise ConfigFileError(unknown_key_message(source, key, keys) +
                                  "; the keys are the long option names with underscores, see --help")
        converted = _value(action, key, value, source)
        if isinstance(action, DeprecatedAlias):
            print(deprecation_line(f"config file {source}", key, action.replacement.lstrip("-").replace("-", "_")),
                  file=sys.stderr)
        if isinstance(action, argparse._AppendAction):
            fallbacks[action.dest] = converted
        else:
            defaults[action.dest] = converted
        action.required = False
        if not action.option_strings:  # a positional the file supplies becomes optional on the command line
            action.nargs = "*" if action.nargs in ("+", "*") else "?"
    parser.set_defaults(**defaults)
    return fallbacks


def config_path(argv: Sequence[str]) -> str | None:
    """The ``--config FILE`` of a command line, if any (read before the full parse)."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(list(argv))
    return known.config


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE.toml", help=CONFIG_HELP)


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str], *, section: str | None = None,
               sections: Iterable[str] = ()) -> argparse.Namespace:
    """``parser.parse_args(argv)`` with the values of ``--config FILE`` as defaults.

    ``section``: this is a sub-command, whose own keys sit in the file's ``[section]`` table
    (top-level keys it knows apply too; the others belong to the main command).
    ``sections``: for the main command, the tables that belong to sub-commands (skipped).
    """
    path = config_path(argv)
    if path:
        raw = read_config_file(path)
        if section is None:
            skip = set(sections)
            # a sub-command's table is skipped; a plain key of the same name (``model = DIR`` beside the
            # ``edge-app model`` sub-command) is the main command's
            values = {k: v for k, v in raw.items() if not (k in skip and isinstance(v, dict))}
        else:
            own = raw.get(section, {})
            if not isinstance(own, dict):
                raise ConfigFileError(f"config file {path}: [{section}] must be a table")
            # top-level keys this sub-command also knows apply to it; an old name of one of its options
            # (DeprecatedAlias) does not: at the top level that name may be another option's
            known = {k for k, a in option_keys(parser).items() if not isinstance(a, DeprecatedAlias)}
            values = {k: v for k, v in raw.items() if k in known and not isinstance(v, dict)}
            values.update(own)
        fallbacks = apply_config(parser, values, path)
        args = parser.parse_args(argv)
        for dest, value in fallbacks.items():  # a repeatable option from the file, unless the command line repeats it
            if getattr(args, dest, None) in (None, []):
                setattr(args, dest, value)
        return args
    return parser.parse_args(argv)
