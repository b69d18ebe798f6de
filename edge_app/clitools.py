"""The one place where typed errors become exit codes (used by all four commands), and small argparse helpers."""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn

from cytoedge.edge_app.errors import CytoEdgeError


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """`` (did you mean X?)`` with the closest of ``known`` when one is close, else ``""`` (config keys and
    command-line options alike)."""
    close = difflib.get_close_matches(word, list(known), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


_NUMBER = re.compile(r"-\d+$|-\d*\.\d+$")  # a negative number is a value, not an option


class Parser(argparse.ArgumentParser):
    """The parser of every command and sub-command (``Parser(prog=..., ...)`` as ``argparse.ArgumentParser``).

    * no abbreviations: ``--slid`` is not ``--slide`` (``allow_abbrev=False``, also for sub-parsers);
    * an option the command does not have is named in one line, before argparse would report a required option
      missing: ``edge-app: error: unknown option --modle (did you mean --model?)``;
    * every usage error is that one line and exit status 2, no usage dump (``--help`` shows the usage).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        args = list(sys.argv[1:] if args is None else args)
        self._refuse_unknown_options(args)
        return super().parse_known_args(args, namespace)

    def _refuse_unknown_options(self, args: list[str]) -> None:
        subs = {name: sub for action in self._actions if isinstance(action, argparse._SubParsersAction)
                for name, sub in action.choices.items()}
        for i, arg in enumerate(args):
            if arg == "--":
                return
            if arg in subs:  # the rest is the sub-command's, which checks it itself
                return
            if not arg.startswith("-") or arg == "-" or _NUMBER.match(arg):
                continue
            name = arg.split("=", 1)[0] if arg.startswith("--") else arg[:2]
            if name not in self._option_string_actions:
                hint = did_you_mean(name, self._option_string_actions) or f"; see {self.prog} --help for the options"
                self.error(f"unknown option {name}{hint}")

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def run_cli(prog: str, main: Callable[[Sequence[str] | None], int | None],
            argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)``; a :class:`CytoEdgeError` becomes ``prog: error: msg`` and its exit code.

    Anything else is a bug and keeps its traceback.
    """
    try:
        rc = main(argv)
    except CytoEdgeError as exc:
        msg = " ".join(str(exc).split())  # always one line
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


def fraction_arg(text: str) -> float:
    """argparse type for a share: ``0.02`` or ``2%`` (see :func:`edge_app.report.parse_fraction`)."""
    from cytoedge.edge_app.report import parse_fraction

    try:
        return parse_fraction(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class DeprecatedAlias(argparse.Action):
    """An option's old name, kept for one release: it stores into the new option's ``dest`` and says so.

    ``p.add_argument("--format", action=DeprecatedAlias, replacement="--report-format", dest="report_format")``.
    As a config-file key it is read only from the command's own table, never inherited from the top level
    (edge_app.configfile), where the old name may mean something else.
    """

    def __init__(self, option_strings: Sequence[str], dest: str, replacement: str, **kwargs: object) -> None:
        self.replacement = replacement
        kwargs.setdefault("help", f"deprecated: write {replacement}")
        super().__init__(option_strings, dest, **kwargs)  # type: ignore[arg-type]

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        print(deprecation_line(parser.prog, option_string or self.option_strings[0], self.replacement), file=sys.stderr)
        setattr(namespace, self.dest, values)


def deprecation_line(where: str, old: str, new: str) -> str:
    """The one line that says an old name still works, for now, and what to write instead.

    >>> deprecation_line("edge-app report", "--format", "--report-format")
    'edge-app report: warning: --format is deprecated and goes in the next release: write --report-format'
    """
    return f"{where}: warning: {old} is deprecated and goes in the next release: write {new}"
