"""One converted model folder (edge-convert's real pipeline on the shared tiny bundle) for the benchmark tests.

Built with the same options as ``tests/edge_app/conftest.py::device_model``: when that fixture moves to
``tests/conftest.py`` this one becomes an alias of it and the suite converts once instead of twice.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def bench_model(tiny_bundle, tmp_path_factory) -> Path:
    """model_card.json + model.onnx + model_fp32.tflite + model_int8.tflite + bundle/ of a 64 x 64 ShuffleNetV2."""
    from convert.pipeline import ConvertOptions, convert_bundle

    out = (tmp_path_factory.mktemp("bench_model") / "shufflenet").resolve()
    # a few training steps only: the accuracy gate is not what these tests are about
    convert_bundle(Path(tiny_bundle).resolve(), out, ConvertOptions(int8=True, calib_images=20, max_drop=100.0),
                   log=lambda line: None)
    return out
