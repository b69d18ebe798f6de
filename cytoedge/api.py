"""The Python API: what the four commands do, callable from a notebook or a lab's own pipeline::

    import cytoedge
    run = cytoedge.train("run.toml", epochs=12, out="runs/lite0")   # edge-train --config run.toml ...
    card = cytoedge.convert("runs/lite0/fold_0", "models/lite0", int8=True)   # edge-convert --int8
    clf = cytoedge.Classifier("models/lite0")                          # the device's classifier (no torch)
    [(p.class_name, p.confidence, p.unknown) for p in clf.classify(crops)]   # crops: BGR uint8 arrays
    doc = cytoedge.bench(["models/lite0"], data="heldout", out="results")   # bench-device

(Not doctests: each line needs data or a trained model.) Every call raises the
commands' typed exceptions (:class:`cytoedge.edge_app.errors.CytoEdgeError` and its kin), never
exits. The heavy libraries are imported inside each call: ``import cytoedge`` and
``cytoedge.Classifier`` need numpy, OpenCV and LiteRT only.
"""
from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

__all__ = ["train", "convert", "bench", "Classifier"]


def train(config: str | Path | Mapping[str, Any] | Any, **overrides: Any) -> dict[str, Any] | None:
    """Train as ``edge-train --config FILE`` does; returns the run's summary (per-fold metrics).

    ``config`` is a TOML/JSON file ``edge-train --config`` reads (e.g. the ``run.toml`` that
    ``edge-train tune`` writes), a mapping of the same keys, or a ``TrainConfig``; keyword
    ``overrides`` (``epochs=2``, ``out="runs/x"``) win over it, as command-line options do. Values are
    checked as a config file's are; a list option also takes a comma-separated string (``milestones="30,60"``).
    """
    from cytoedge.train.config import ConfigError, TrainConfig, coerce_value, load_config_file, resolve_config
    from cytoedge.train.run import run_training

    values = {} if isinstance(config, TrainConfig) else (
        load_config_file(config) if isinstance(config, (str, Path)) else dict(config))
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted((set(values) | set(overrides)) - known)
    if unknown:
        raise ConfigError(f"unknown training setting(s): {', '.join(unknown)}")
    overrides = {k: v if v is None else coerce_value(k, str(v) if isinstance(v, Path) else v)
                 for k, v in overrides.items()}
    if isinstance(config, TrainConfig):
        cfg = replace(config, **overrides)
    else:
        cfg = resolve_config({k: coerce_value(k, v) for k, v in values.items()}, overrides)
    return run_training(cfg.validate())


def convert(bundle: str | Path, out: str | Path, int8: bool = True, *, log: Callable[[str], None] = print,
            **options: Any) -> Any:
    """Convert a checkpoint bundle (``runs/<name>/fold_k``) as ``edge-convert [--int8]`` does; returns the model card.

    ``options`` are :class:`cytoedge.convert.pipeline.ConvertOptions` fields (``calib_images=200``,
    ``max_drop=2.0`` ...). An artifact that fails the accuracy gate raises ``AccuracyGateError``
    after the card is written, as the command exits 3.
    """
    from cytoedge.convert.pipeline import ConvertOptions, convert_bundle

    opts = ConvertOptions(int8=int8, **options)
    opts.check()
    return convert_bundle(bundle, out, opts, log=log)


def bench(model_dirs: str | Path | Iterable[str | Path], *, out: str | Path | None = "results",
          progress: Callable[[str], None] = lambda s: None, **options: Any) -> dict[str, Any]:
    """Measure models as ``bench-device`` does; returns the result document and writes it under ``out`` (None: not written).

    ``options`` are :class:`cytoedge.benchmarks.suite.BenchOptions` fields (``data="heldout"``,
    ``frames="data/fields"``, ``threads=[1, 4]``, ``board="rpi5"`` ...). A list option also takes what
    ``bench-device`` and its config file take: ``formats="tflite-int8,onnx"``, ``threads="1,2,4"`` or ``threads=4``;
    one model folder may be given alone (``bench("models/lite0")``).
    """
    from cytoedge.benchmarks.cli import parse_ints
    from cytoedge.benchmarks.results import write_result
    from cytoedge.benchmarks.suite import BenchOptions, run_suite
    from cytoedge.edge_app.formats import parse_formats

    for key in ("data", "frames"):
        if options.get(key) is not None:
            options[key] = Path(options[key])
    if isinstance(options.get("formats"), str):
        options["formats"] = [f.name for f in parse_formats(options["formats"])]
    for key in ("threads", "batch"):
        if isinstance(options.get(key), (str, int)) and not isinstance(options[key], bool):
            options[key] = parse_ints(str(options[key]), key)
    models = [model_dirs] if isinstance(model_dirs, (str, Path)) else model_dirs
    opts = BenchOptions(models=[Path(m) for m in models], out=Path(out or "results"), **options)
    doc = run_suite(opts, progress=progress)
    if out is not None:
        doc["path"] = str(write_result(doc, opts.out))
    return doc


def __getattr__(name: str) -> Any:
    if name == "Classifier":  # the device's classifier: numpy, OpenCV and LiteRT only
        from cytoedge.edge_app.classifier import Classifier

        return Classifier
    raise AttributeError(f"module 'cytoedge.api' has no attribute {name!r}")
