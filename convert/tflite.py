"""ONNX -> TFLite fp32 through onnx2tf's Python API, offline, and a calibrated full-integer int8.

onnx2tf (1.29.24, ENV.md) prints hundreds of lines, may ``sys.exit(1)`` from inside
``convert()``, downloads a sample file unless it sits in the current working
directory, and runs ``onnxsim`` as a subprocess found on ``PATH``. :func:`run_onnx2tf`
therefore runs it inside the work folder, with the interpreter's ``bin/`` first on
``PATH``, and file descriptors 1 and 2 (and ``sys.stdout``/``sys.stderr``) sent to
``tflite.log``; any failure becomes one :class:`~convert.errors.StageError` naming
the log.

The int8 file is converted by :func:`quantize_int8` from the SavedModel onnx2tf leaves
behind, calibrated once on our images. onnx2tf's own ``-oiqt`` runs four calibrated
conversions (int8, full int8 and two int16-activation variants, 116 s for ShuffleNetV2
at 224 with 200 images against 43 s this way; identical output on the same data) and
allows TensorFlow ops the device cannot run. It is still switched on, with a one-image
calibration whose files are discarded, because it changes the graph onnx2tf builds:
with it MaxPool is padded with 0 (exact after a ReLU, as in all five registered
models); without it with the float minimum (a PADV2), which quantises into a model
XNNPACK refuses to prepare.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cytoedge.convert.calibration import ONNX2TF_SAMPLE_FILE, Calibration
from cytoedge.convert.errors import StageError
from cytoedge.convert.onnx_export import INPUT_NAME

LOG_FILE = "tflite.log"  # onnx2tf and the int8 converter write here


@contextlib.contextmanager
def captured_output(log: Path) -> Iterator[None]:
    """Send everything written to fds 1/2 (C++ logs, subprocesses) and sys.stdout/err to ``log``."""
    sys.stdout.flush()
    sys.stderr.flush()
    with open(log, "ab", buffering=0) as fh:
        saved = [os.dup(1), os.dup(2)]
        text = open(fh.fileno(), "w", closefd=False, encoding="utf-8", errors="replace")
        try:
            os.dup2(fh.fileno(), 1)
            os.dup2(fh.fileno(), 2)
            with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
                yield
        finally:
            text.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


@contextlib.contextmanager
def offline_workdir(work: Path) -> Iterator[None]:
    """cwd = ``work`` (where onnx2tf looks for its sample file) and this interpreter's bin/ first on PATH."""
    old_path = os.environ.get("PATH", "")
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), old_path])
    try:
        with contextlib.chdir(work):
            yield
    finally:
        os.environ["PATH"] = old_path


def _tail(log: Path, lines: int = 400) -> list[str]:
    try:
        return log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def _reason(log: Path) -> str:
    """The most telling line of an onnx2tf log (its ERROR lines, else the last exception)."""
    import re

    strip = re.compile(r"\x1b\[[0-9;]*m")
    lines = [strip.sub("", ln).strip() for ln in _tail(log)]
    errors = [ln for ln in lines if ln.startswith("ERROR:") and "https://" not in ln]
    if errors:
        return errors[0].removeprefix("ERROR:").strip()
    excs = [ln for ln in lines if re.match(r"^[A-Za-z_.]+(Error|Exception)\b", ln)]
    return excs[-1] if excs else "see the log"


def _guarded(stage: str, work: Path, log: Path, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` offline in ``work`` with its output in ``log``; any failure -> one StageError naming the log."""
    try:
        with offline_workdir(work), captured_output(log):
            return fn()
    except StageError:
        raise
    except SystemExit as exc:  # onnx2tf calls sys.exit(1) on errors
        raise StageError(stage, f"{stage} stopped (exit {exc.code}): {_reason(log)}", log) from None
    except Exception as exc:  # noqa: BLE001 - any failure inside is this stage's failure
        with open(log, "a", encoding="utf-8") as fh:  # the trace belongs in the log, not on the terminal
            traceback.print_exception(exc, file=fh)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else _reason(log)
        raise StageError(stage, f"{type(exc).__name__}: {first}", log) from None


def run_onnx2tf(onnx_path: Path, work: Path, calibration: Calibration | None = None) -> dict[str, Path]:
    """ONNX -> ``{"tflite-fp32": path}`` (+ ``"tflite-int8"``, full-integer, when ``calibration`` is given).

    Raises :class:`StageError` ("onnx2tf" / "int8-quantize") if a step fails, exits, would
    download, or writes no file.
    """
    work, onnx_path = work.resolve(), onnx_path.resolve()  # onnx2tf runs with cwd = work
    out = work / "onnx2tf"
    log = work / LOG_FILE
    if out.exists():
        shutil.rmtree(out)
    if not (work / ONNX2TF_SAMPLE_FILE).is_file():
        raise StageError("onnx2tf", f"{ONNX2TF_SAMPLE_FILE} is missing from {work}: onnx2tf would download it")
    # output_signaturedefs: the SavedModel quantize_int8 reads needs them, and without them onnx2tf
    # refuses PyTorch's "/net/features/..." op names when saving
    kwargs: dict[str, Any] = dict(input_onnx_file_path=str(onnx_path), output_folder_path=str(out), non_verbose=True,
                                  copy_onnx_input_output_names_to_tflite=True, output_signaturedefs=True)
    if calibration is not None:
        # -oiqt only for the graph it builds (MaxPool padded with 0, see the module docstring): its own
        # int8 files are calibrated on one of our images and discarded
        probe = work / "graph_probe.npy"
        np.save(probe, np.load(calibration.path, mmap_mode="r")[:1])
        kwargs.update(output_integer_quantized_tflite=True, custom_input_op_name_np_data_path=[
            [INPUT_NAME, str(probe), [[[[0.0, 0.0, 0.0]]]], [[[[1.0, 1.0, 1.0]]]]]])

    def run() -> None:
        if shutil.which("onnxsim") is None:
            raise StageError("onnx2tf", "the onnxsim command is not on PATH: install the [convert] extra", log)
        import onnx2tf  # TensorFlow's import noise goes to the log too

        onnx2tf.convert(**kwargs)

    _guarded("onnx2tf", work, log, run)
    found = {"tflite-fp32": out / f"{onnx_path.stem}_float32.tflite"}  # onnx2tf names files after the ONNX file
    if not found["tflite-fp32"].is_file() or not (out / "saved_model.pb").is_file():
        raise StageError("onnx2tf", f"onnx2tf wrote no {found['tflite-fp32'].name} or SavedModel: {_reason(log)}", log)
    if calibration is not None:
        found["tflite-int8"] = quantize_int8(out, calibration, work / "model_int8.tflite", work)
    return found


PIXEL_RANGE = (0.0, 255.0)  # a pixel input's calibrated range, pinned: int8 scale 1, zero point -128 (pixel - 128)


def quantize_int8(saved_model: Path, calibration: Calibration, dest: Path, work: Path) -> Path:
    """Full-integer TFLite from onnx2tf's SavedModel, calibrated once on every image of ``calibration``.

    int8 input and outputs. A pixel model's input range is *pinned* to 0..255 rather than
    calibrated (calibration would give the largest pixel of the calibration crops, e.g.
    253 -> scale 0.99216): its input is then the crop's pixel minus 128 (scale 1, zero point
    -128), which the device writes with one XOR and no arithmetic, and since the input is
    int8 the graph has no QUANTIZE op before its first layer (a uint8 input would add one,
    which XNNPACK does not take: it ran outside the delegate, single-threaded). Only
    built-in int8 kernels are allowed: an op that cannot be quantised is an error here, not
    a TensorFlow op the device's interpreter cannot run.
    """
    log = work / LOG_FILE
    data = np.load(calibration.path)
    pixels = calibration.record.get("space") == "pixels"

    def run() -> None:
        import tensorflow as tf
        from tensorflow.lite.python.convert import mlir_quantize

        def representative() -> Iterator[dict[str, Any]]:
            for i in range(len(data)):
                yield {INPUT_NAME: data[i:i + 1]}

        conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.representative_dataset = representative
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        if not pixels:
            dest.write_bytes(conv.convert())
            return
        # what TFLiteConverter does for full integer (calibrate, then the MLIR quantiser), with the
        # input's recorded range pinned in between (TensorFlow 2.19's own two steps, pinned in constraints)
        conv._experimental_calibrate_only = True  # noqa: SLF001 - the documented-in-source two-step path
        calibrated = pin_input_range(conv.convert(), *PIXEL_RANGE)
        dest.write_bytes(mlir_quantize(calibrated, input_data_type=tf.int8, output_data_type=tf.int8))

    _guarded("int8-quantize", work, log, run)
    return dest


def pin_input_range(calibrated: bytes, lo: float, hi: float) -> bytes:
    """A calibrated model (min/max recorded per tensor) with its single input's range set to ``[lo, hi]``."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    graph = model.subgraphs[0]
    if len(graph.inputs) != 1:
        raise StageError("int8-quantize", f"the model has {len(graph.inputs)} inputs; one pixel input was expected")
    q = graph.tensors[graph.inputs[0]].quantization
    if q is None or q.min is None or q.max is None:
        raise StageError("int8-quantize", "calibration recorded no range for the model's input")
    q.min, q.max = [float(lo)], [float(hi)]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
