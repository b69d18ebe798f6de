"""edge-train tune: hyper-parameter search with Optuna (TPE sampler, median pruner), the study kept in SQLite.

  edge-train tune --data data/synth --input-size 128 --folds 2 --fold 0 --epochs 6 --grad-clip 5 \\
                  --trials 20 --out runs/tune                 search; the same command again continues it
  edge-train tune --config tune.toml --jobs 2                 options, tune settings and [search] from a file
  edge-train --config runs/tune/run.toml                      train the best configuration found

Searched by default: lam, margin, label_smoothing, lr, weight_decay (the paper fixed them
untuned). An option you set yourself (command line or the file's top level) is fixed, not
searched, unless the file's [search] table gives it a range:

  [search]
  lr = [0.001, 0.1]                                  low, high (log scale for lr, weight_decay, lam)
  margin = { low = 0.2, high = 1.5, log = false }
  hue = [0.0, 0.2]                                   any numeric edge-train option
  loss = { choices = ["ce", "hybrid"] }
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import fields
from typing import TYPE_CHECKING

from cytoedge.edge_app.clitools import Parser, fraction_arg
from cytoedge.edge_app.configfile import apply_config, config_path, read_config_file
from cytoedge.train.config import FIELD_TYPES, TrainConfig, config_values, resolve_config
from cytoedge.train.errors import ConfigError

if TYPE_CHECKING:
    from cytoedge.train.tune import TuneOptions

DEFAULT_OUT = "runs/tune"


def get_parser() -> argparse.ArgumentParser:
    from cytoedge.train.cli import add_config_options
    from cytoedge.train.tune import OBJECTIVES, TuneOptions

    d = TuneOptions(TrainConfig())
    p = Parser(prog="edge-train tune", description=__doc__,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE", help="TOML file: edge-train options and the options below at the top "
                                                   "level, ranges in a [search] table (command-line values win)")
    g = p.add_argument_group("search")
    g.add_argument("--trials", type=int, default=d.trials,
                   help="finished trials (complete or pruned) the study should hold; running the command again "
                        "continues up to this number (default: %(default)s)")
    g.add_argument("--timeout", type=float, default=d.timeout, metavar="S",
                   help="start no new trial after S seconds; running trials finish (default: 0, no limit)")
    g.add_argument("--jobs", type=int, default=d.jobs,
                   help="trials in parallel, each in its own process on the same storage (default: %(default)s)")
    g.add_argument("--objective", choices=tuple(OBJECTIVES), default=d.objective,
                   help="what a trial scores: macro-f1 (mean over the folds), or abnormal-sensitivity: the share of "
                        "koilocytotic + dyskeratotic cells found at --specificity (default: %(default)s)")
    g.add_argument("--specificity", type=fraction_arg, default=d.specificity, metavar="SHARE",
                   help="the fixed specificity of abnormal-sensitivity: 0.95 or 95%% (default: 95%%)")
    g.add_argument("--baseline", action="store_true",
                   help="evaluate the configuration as it stands first (the searched options' values without "
                        "tuning: the paper's, or the ones the config file sets beside a [search] range), so the "
                        "study shows what the search gained")
    g.add_argument("--storage", default="", metavar="URL",
                   help="Optuna storage: a .sqlite file or a database URL (default: OUT/study.sqlite)")
    g.add_argument("--study-name", default="", help="study name in the storage (default: the --out folder's name)")
    g.add_argument("--heartbeat", type=int, default=d.heartbeat, metavar="S",
                   help="database storage (several machines): a running trial's heartbeat every S seconds; a trial "
                        "silent for 2 x S (its worker killed, its machine gone) is marked FAIL and re-queued with the "
                        "same values (default: %(default)s)")
    t = p.add_argument_group("training (edge-train's options: fixed for every trial unless searched)")
    add_config_options(t)  # type: ignore[arg-type]
    for action in t._group_actions:  # the same option, another meaning here
        if action.dest == "out":
            action.help = f"study folder: study.sqlite, trials/, run.toml, best.json, plots (default: {DEFAULT_OUT})"
        elif action.dest == "fold":
            action.help = "search on this fold only (0-based); -1 = every fold, the objective their mean (default: -1)"
        elif action.dest == "threads":
            action.help = ("torch threads of each trial (0 = the cores shared out over --jobs); run.toml records "
                           "the count a trial ran with, so its retrain repeats the trial bit for bit (default: 0)")
    return p


def options_from_argv(argv: Sequence[str]) -> "TuneOptions":
    from cytoedge.train.tune import TuneOptions
    from cytoedge.train.tune_space import parse_search, search_fixed

    argv = list(argv)
    parser = get_parser()
    file_train: dict = {}
    search_table: dict = {}
    path = config_path(argv)
    if path:
        raw = read_config_file(path)
        search_table = raw.pop("search", {})
        file_train = config_values({k: v for k, v in raw.items() if k in FIELD_TYPES}, path)
        apply_config(parser, {k: v for k, v in raw.items() if k not in FIELD_TYPES}, path)
    args = parser.parse_args(argv)
    cli_values = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    space = parse_search(search_table)
    given = {k for k, v in cli_values.items() if v is not None} | set(file_train)
    for name in list(space):  # an option the user set is fixed, unless [search] gives it a range
        if name in given and name not in search_table:
            del space[name]
    fixed = search_fixed(search_table)
    cli_set = {k: v for k, v in cli_values.items() if v is not None}
    cfg = resolve_config({**file_train, **fixed}, cli_set)
    if not cfg.out or (cli_values["out"] is None and "out" not in file_train):
        cfg.out = DEFAULT_OUT
    if not space:
        raise ConfigError("nothing to search: every searched option is fixed (by the command line, the config "
                          "file or [search]); give one a range in the config file's [search] table")
    return TuneOptions(cfg, out=cfg.out, trials=args.trials, timeout=args.timeout, jobs=args.jobs,
                       objective=args.objective, specificity=args.specificity, storage=args.storage,
                       study_name=args.study_name, search=space, baseline=args.baseline,
                       heartbeat=args.heartbeat)


def main(argv: Sequence[str]) -> int:
    from cytoedge.train.tune import run_tune

    run_tune(options_from_argv(argv))
    return 0
