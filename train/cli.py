"""edge-train: train a lightweight CNN with the hybrid loss and k-fold cross-validation.

  edge-train synth --out data/synth                    write a synthetic SIPaKMeD-shaped tree
  edge-train --data data/synth --model shufflenet_v2_x1_0 --folds 5 --out runs/shufflenet
  edge-train --resume --out runs/shufflenet            continue a killed run
  edge-train tune --data data/synth --trials 20 --out runs/tune   hyper-parameter search (edge-train tune --help)
  torchrun --nproc-per-node 4 -m cytoedge.train.cli --data ...  several GPUs (DistributedDataParallel)

Defaults are the paper's recipe (SGD momentum 0.9, weight decay 0.005, lr 1e-4 x0.1 at
epochs 30 and 60, 100 epochs, batch 16, 5 folds); every value can also come from
--config FILE (TOML or JSON with the same keys, underscores instead of dashes; a switch as its
setting, e.g. groups = false for --no-groups).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import fields

from cytoedge.edge_app.clitools import Parser, run_cli
from cytoedge.train.config import TrainConfig, list_item_type, load_config_file, resolve_config


def add_config_options(p: argparse.ArgumentParser) -> None:
    """One option per :class:`TrainConfig` field (its help, flag and default come from the field)."""
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        meta, default = f.metadata, getattr(defaults, f.name)
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            # a switch: "--no-groups" turns a default-on feature off, "--pretrained" a default-off one on;
            # its help says what the switch does and what happens without it
            help_ = meta.get("flag_help") or f"{meta.get('help', '')} (default: {'on' if default else 'off'})"
            p.add_argument(flag, dest=f.name, action="store_const", const=not default, default=None, help=help_)
            continue
        shown = meta.get("default_text") or (default if default != "" else "none")
        help_ = f"{meta.get('help', '')} ({shown if shown == 'required' else f'default: {shown}'})"
        if isinstance(default, list):
            item = list_item_type(f.name)
            p.add_argument(flag, dest=f.name, type=item, nargs=meta.get("nargs", "+"), default=None,
                           metavar="N" if item is int else "X", help=help_)
        else:
            p.add_argument(flag, dest=f.name, type=type(default), default=None, help=help_)


def get_parser() -> argparse.ArgumentParser:
    p = Parser(prog="edge-train", description=__doc__,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE", help="TOML or JSON file of options (command-line values win)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--list-models", action="store_true", help="list the registered architectures and exit")
    add_config_options(p)
    return p


def resume_config(cli_values: dict, file_values: dict) -> TrainConfig:
    """--resume continues the saved run exactly; options that would change it are refused."""
    from cytoedge.train.errors import ConfigError
    from cytoedge.train.run import load_saved_config

    if not cli_values.get("out"):
        raise ConfigError("--resume needs --out RUN_FOLDER (the folder of the run to continue)")
    cfg = load_saved_config(cli_values["out"])
    given = {**file_values, **{k: v for k, v in cli_values.items() if v is not None}}
    differ = sorted(k for k, v in given.items() if k != "out" and getattr(cfg, k) != v)
    if differ:
        raise ConfigError(f"--resume continues the saved run unchanged, but these options differ from it: "
                          f"{', '.join(differ)}; drop them or start a new run with another --out")
    return cfg


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "synth":
        from cytoedge.train.data.synth import main as synth_main

        return synth_main(argv[1:])
    if argv and argv[0] == "tune":
        from cytoedge.train.tune_cli import main as tune_main

        return tune_main(argv[1:])
    args = get_parser().parse_args(argv)
    if args.list_models:
        from cytoedge.train.models import get_model_info, list_models

        for name in list_models():
            info = get_model_info(name)
            print(f"{name:22s} {info.source:12s} embedding {info.embedding_dim:5d}  {info.paper_role}")
        return 0
    cli_values = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    file_values = load_config_file(args.config) if args.config else {}
    if args.resume:
        cfg = resume_config(cli_values, file_values)
    else:
        cfg = resolve_config(file_values, cli_values).validate()
    from cytoedge.train.run import run_training

    run_training(cfg, resume=args.resume)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("edge-train", _main, argv)


if __name__ == "__main__":  # torchrun -m cytoedge.train.cli
    raise SystemExit(main())
