"""What ``edge-train tune`` searches: a range (or a list of choices) per :class:`TrainConfig` option.

The default space is the five values the paper fixed without tuning: the triplet weight
lambda, the margin, the label smoothing, the learning rate and the weight decay. The
``[search]`` table of the config file changes it, one key per option:

    [search]
    lr = [0.001, 0.1]                      # low, high (log scale for lr, weight_decay, lam)
    lam = { low = 0.01, high = 0.5, log = true }
    margin = 1.0                           # one value: fixed, no longer searched
    hue = [0.0, 0.2]                       # any numeric option can be searched
    loss = { choices = ["ce", "hybrid"] }

>>> space = parse_search({"lr": [0.001, 0.1], "margin": 1.0})
>>> space["lr"], "margin" in space, sorted(space)
(ParamRange(name='lr', low=0.001, high=0.1, log=True, choices=()), False, ['label_smoothing', 'lam', 'lr', 'weight_decay'])
>>> search_fixed({"margin": 1.0})
{'margin': 1.0}
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from cytoedge.train.config import FIELD_TYPES, TrainConfig, coerce_value
from cytoedge.train.errors import ConfigError

LOG_BY_DEFAULT = frozenset({"lr", "weight_decay", "lam"})  # scale-free values: searched on a log scale


@dataclass(frozen=True)
class ParamRange:
    """One searched option: a numeric range (``log``: sampled uniformly in its logarithm) or a list of choices."""

    name: str
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple[Any, ...] = ()

    @property
    def is_int(self) -> bool:
        return FIELD_TYPES[self.name] is int

    def distribution(self) -> Any:
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.choices:
            return CategoricalDistribution(list(self.choices))
        if self.is_int:
            return IntDistribution(int(self.low), int(self.high), log=self.log)
        return FloatDistribution(self.low, self.high, log=self.log)

    def describe(self) -> str:
        if self.choices:
            return f"{self.name} in {{{', '.join(map(str, self.choices))}}}"
        return f"{self.name} {self.low:g}..{self.high:g}{' (log)' if self.log else ''}"


DEFAULT_SPACE: dict[str, ParamRange] = {
    "lam": ParamRange("lam", 0.01, 2.0, log=True),  # paper: 1
    "margin": ParamRange("margin", 0.1, 2.0),  # paper: 1
    "label_smoothing": ParamRange("label_smoothing", 0.0, 0.3),  # paper: 0.1
    "lr": ParamRange("lr", 1e-4, 0.1, log=True),  # paper: 1e-4 (ImageNet weights); from scratch ~0.02
    "weight_decay": ParamRange("weight_decay", 1e-5, 1e-2, log=True),  # paper: 0.005
}

NOT_SEARCHABLE = frozenset({"data", "out", "fold", "folds", "device", "workers", "progress", "resume"})


def _range(name: str, value: Any) -> ParamRange:
    kind = FIELD_TYPES[name]
    if isinstance(value, dict):
        unknown = set(value) - {"low", "high", "log", "choices"}
        if unknown:
            raise ConfigError(f"[search] {name}: unknown field(s) {', '.join(sorted(unknown))}; "
                              "use low, high, log or choices")
        if "choices" in value:
            choices = value["choices"]
            if not isinstance(choices, list) or len(choices) < 2:
                raise ConfigError(f"[search] {name}: choices must be a list of at least two values")
            return ParamRange(name, choices=tuple(coerce_value(name, c) for c in choices))
        if "low" not in value or "high" not in value:
            raise ConfigError(f"[search] {name}: give low and high (or choices)")
        low, high, log = value["low"], value["high"], value.get("log", name in LOG_BY_DEFAULT)
    elif isinstance(value, list) and len(value) == 2:
        low, high, log = value[0], value[1], name in LOG_BY_DEFAULT
    else:
        raise ConfigError(f"[search] {name} = {value!r}: write [low, high], {{ low = .., high = .., log = .. }}, "
                          "{ choices = [..] } or one value to fix it")
    if kind not in (int, float) or isinstance(low, bool) or isinstance(high, bool):
        raise ConfigError(f"[search] {name}: only numeric options take a range; give choices = [...] instead")
    if not isinstance(log, bool):
        raise ConfigError(f"[search] {name}: log must be true or false")
    low, high = coerce_value(name, low), coerce_value(name, high)
    if not low < high:
        raise ConfigError(f"[search] {name}: low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise ConfigError(f"[search] {name}: a log-scale range needs low > 0 (got {low}); set log = false")
    return ParamRange(name, float(low), float(high), log)


def parse_search(table: dict[str, Any]) -> dict[str, ParamRange]:
    """The default space with the ``[search]`` table's changes (a single value fixes the option instead)."""
    if not isinstance(table, dict):
        raise ConfigError("[search] must be a table: one key per option, e.g. lr = [0.001, 0.1]")
    space = dict(DEFAULT_SPACE)
    for name, value in table.items():
        if name not in FIELD_TYPES:
            from cytoedge.edge_app.configfile import unknown_key_message

            raise ConfigError(unknown_key_message("[search]", name, FIELD_TYPES).replace("config file ", ""))
        if name in NOT_SEARCHABLE:
            raise ConfigError(f"[search] {name} cannot be searched; set it as a plain option")
        if isinstance(value, (dict, list)):
            space[name] = _range(name, value)
        else:
            space.pop(name, None)
    return space


def search_fixed(table: dict[str, Any]) -> dict[str, Any]:
    """The options the ``[search]`` table fixes to one value (they override the base configuration)."""
    return {k: coerce_value(k, v) for k, v in table.items() if not isinstance(v, (dict, list))}


def check_space(space: dict[str, ParamRange], base: TrainConfig) -> None:
    """Every corner of the space must make a valid configuration (e.g. label smoothing < 1), checked up front."""
    for p in space.values():
        for value in (p.choices or (p.low, p.high)):
            v = int(value) if p.is_int and not p.choices else value
            try:
                replace(base, **{p.name: v}).validate()
            except ConfigError as exc:
                raise ConfigError(f"[search] {p.describe()}: {p.name} = {v} is not a valid setting ({exc})") from None


def suggest(trial: Any, space: dict[str, ParamRange]) -> dict[str, Any]:
    """The trial's values (a re-run of a killed trial gets its original values back)."""
    return {name: _suggest_one(trial, p) for name, p in space.items()}


def _suggest_one(trial: Any, p: ParamRange) -> Any:
    if p.choices:
        return trial.suggest_categorical(p.name, list(p.choices))
    if p.is_int:
        return trial.suggest_int(p.name, int(p.low), int(p.high), log=p.log)
    return trial.suggest_float(p.name, p.low, p.high, log=p.log)
