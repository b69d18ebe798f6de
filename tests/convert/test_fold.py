"""Folding the mean/std normalisation into the first convolution (convert.onnx_export)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from cytoedge.convert.onnx_export import export_module, first_conv, fold_normalization  # noqa: E402
from cytoedge.edge_app.preprocess import PreprocessSpec  # noqa: E402


class TwoHeads(nn.Module):
    def __init__(self, stem: nn.Module) -> None:
        super().__init__()
        self.stem = stem
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        emb = self.pool(self.stem(x)).flatten(1)
        return self.fc(emb), emb


SPEC = PreprocessSpec(size=32, resize=32)


def _normalised(pixels: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(SPEC.mean).view(1, 3, 1, 1)
    std = torch.tensor(SPEC.std).view(1, 3, 1, 1)
    return (pixels / 255.0 - mean) / std


def test_folded_first_convolution_equals_normalise_then_convolve_inside_the_image():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
    net = TwoHeads(nn.Sequential(conv, nn.BatchNorm2d(8), nn.ReLU())).eval()
    folded, name = fold_normalization(net, SPEC)
    assert name == "stem.0" and folded.stem[0].bias is not None and net.stem[0].bias is None  # the original is kept
    pixels = torch.randint(0, 256, (2, 3, 32, 32)).float()
    with torch.no_grad():
        a = net.stem[0](_normalised(pixels))
        b = folded.stem[0](pixels)
    # exact away from the border; on it the zero padding is pixel 0 instead of the mean colour
    torch.testing.assert_close(b[..., 1:, 1:], a[..., 1:, 1:], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(b[..., 0, :], a[..., 0, :], atol=1e-3)


def test_without_padding_the_fold_is_exact_end_to_end():
    torch.manual_seed(1)
    net = TwoHeads(nn.Sequential(nn.Conv2d(3, 8, 3, padding=0), nn.ReLU())).eval()
    module = export_module(net, SPEC, "pixels", fold=True)
    assert module.folded_into == "stem.0" and not module.pixels
    pixels = torch.randint(0, 256, (3, 3, 32, 32)).float()
    with torch.no_grad():
        ref = net(_normalised(pixels))
        got = module(pixels)
    for r, g in zip(ref, got):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4)


def test_a_network_that_does_not_start_with_a_plain_convolution_gets_a_normalisation_layer():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 1)

        def forward(self, x):
            return self.conv(x * 2.0)  # the convolution does not see the input itself

    net = TwoHeads(Scaled()).eval()
    assert first_conv(net, 32) is None
    module = export_module(net, SPEC, "pixels", fold=True)
    assert module.folded_into == "" and module.pixels
    pixels = torch.randint(0, 256, (2, 3, 32, 32)).float()
    with torch.no_grad():
        torch.testing.assert_close(module(pixels)[0], net(_normalised(pixels))[0], rtol=1e-4, atol=1e-4)
    assert export_module(net, SPEC, "pixels").pixels  # the default: the layer


def test_every_registered_architecture_folds_into_its_stem():
    from cytoedge.train.models import create_model, list_models

    for name in list_models():
        net = create_model(name, num_classes=5).eval()
        found = first_conv(net, 64)
        assert found is not None and found[1].in_channels == 3, name  # every model's input goes into its stem
        folded, _ = fold_normalization(net, PreprocessSpec(size=64, resize=64))
        x = torch.randint(0, 256, (1, 3, 64, 64)).float()
        with torch.no_grad():
            a = net(_normalised(x))[0]
            b = folded(x)[0]
        assert np.isfinite(b.numpy()).all() and a.shape == b.shape, name
