"""MACs counted from the ONNX graph agree with torchvision's published figures and with PyTorch's own counter."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from cytoedge.benchmarks.flops import _inner_dim, count_onnx, count_torch  # noqa: E402
from cytoedge.train.models import create_model  # noqa: E402

# torchvision weights metadata `_ops` (GMACs at 224 x 224, 1000 classes) and where the 1000-class head sits:
# (published GMACs, features into the head, spatial positions the head runs at)
PUBLISHED = {
    "shufflenet_v2_x1_0": (0.145, 1024, 1),
    "mobilenet_v2": (0.301, 1280, 1),
    "squeezenet1_1": (0.349, 512, 13 * 13),  # its head is a 1x1 conv on the 13 x 13 map
    "densenet121": (2.834, 1024, 1),
}


def _export(model, path, size=224):
    torch.onnx.export(model, torch.zeros(1, 3, size, size), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits", "embedding"])
    return path


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_onnx_macs_match_torchvision_published_for_a_5_class_head(name, tmp_path):
    published, head_in, positions = PUBLISHED[name]
    expected = published * 1e9 - head_in * 1000 * positions + head_in * 5 * positions
    cost = count_onnx(_export(create_model(name, 5).eval(), tmp_path / "m.onnx"))
    assert cost.uncounted == []
    assert abs(cost.macs / expected - 1) < 0.03, (cost.macs, expected)
    assert cost.flops == 2 * cost.macs


@pytest.mark.parametrize("name,size", [("shufflenet_v2_x1_0", 64)])
def test_graph_count_matches_pytorch_flop_counter(name, size, tmp_path):
    model = create_model(name, 5).eval()
    # ShuffleNetV2's unsimplified export splits channels with shape arithmetic: counted after onnxsim folds it
    cost = count_onnx(_export(model, tmp_path / "m.onnx", size=size))
    ref = count_torch(model, size)
    assert cost.uncounted == []
    assert abs(cost.macs / ref.macs - 1) < 0.005, (cost.macs, ref.macs)
    assert ref.flops == 2 * ref.macs
    # parameters: BatchNorm is folded into the convolutions by the exporter -> the graph holds fewer, never more
    assert 0.9 * ref.params < cost.params <= ref.params


def test_efficientnet_lite0_costs_what_its_authors_publish(tmp_path):
    """EfficientNet-Lite0 (timm's tf_ port, TF "same" padding) at 224 x 224 with the ImageNet head: ~0.4 GMACs."""
    model = create_model("efficientnet_lite0", 1000).eval()
    cost = count_onnx(_export(model, tmp_path / "m.onnx"))
    assert cost.uncounted == []
    assert 0.37e9 < cost.macs < 0.41e9, cost.macs  # counted here: 0.385 G
    assert abs(cost.macs / count_torch(model, 224).macs - 1) < 0.005


def test_inner_dimension_of_matrix_products_ignores_transposes():
    assert _inner_dim([1, 1024], [5, 1024], [1, 5]) == 1024  # Gemm with transB
    assert _inner_dim([8, 3, 7], [8, 7, 4], [8, 3, 4]) == 7  # batched MatMul
    assert _inner_dim([2, 6], [6], [2]) == 6  # matrix x vector


def test_unreadable_graphs_are_typed_errors(tmp_path):
    from cytoedge.benchmarks.flops import FlopCountError, count_tflite

    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(FlopCountError, match="cannot read ONNX model"):
        count_onnx(bad)
    bad_tfl = tmp_path / "x.tflite"
    bad_tfl.write_bytes(b"not a model either")
    with pytest.raises(FlopCountError, match="cannot read TFLite model"):
        count_tflite(bad_tfl)
