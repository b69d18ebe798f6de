"""Every registered model: one forward gives logits and the pooled embedding; weights never download."""

from __future__ import annotations

import pytest
import torch

from train.errors import ModelError
from train.models import create_model, get_model_info, list_models
from train.models.registry import ModelInfo, register_model


@pytest.mark.parametrize("name", list_models())
def test_forward_gives_logits_and_embedding(name):
    model = create_model(name, 5).eval()
    with torch.no_grad():
        logits, emb = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 5)
    assert emb.shape == (2, get_model_info(name).embedding_dim)
    assert torch.isfinite(logits).all() and torch.isfinite(emb).all()


def test_all_paper_models_are_registered():
    assert set(list_models()) == {"squeezenet1_1", "mobilenet_v2", "shufflenet_v2_x1_0", "ghostnet_100", "densenet121"}


def test_unknown_model_and_duplicate_registration():
    with pytest.raises(ModelError, match="unknown model 'resnet9000'"):
        create_model("resnet9000", 5)
    with pytest.raises(ValueError, match="registered twice"):
        register_model(ModelInfo("mobilenet_v2", "torchvision", 1280, "x", "lightweight"))


def test_pretrained_offline_without_cache_is_a_clear_error(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    for name in ("shufflenet_v2_x1_0", "ghostnet_100"):
        with pytest.raises(ModelError, match="--weights FILE"):
            create_model(name, 5, pretrained=True)
    assert no_network == []  # refused without trying to connect


def test_pretrained_from_torch_hub_cache_and_from_file(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    reference = torchvision.models.squeezenet1_1(weights=None)
    state = reference.state_dict()
    ckpt = tmp_path / "torch" / "hub" / "checkpoints" / get_model_info("squeezenet1_1").weights_hint
    ckpt.parent.mkdir(parents=True)
    torch.save(state, ckpt)
    from_cache = create_model("squeezenet1_1", 5, pretrained=True)
    from_file = create_model("squeezenet1_1", 5, weights=ckpt)
    for m in (from_cache, from_file):
        torch.testing.assert_close(m.features[0].weight, state["features.0.weight"])


def test_weights_file_that_is_not_a_state_dict(tmp_path):
    bad = tmp_path / "w.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match="cannot read weights file"):
        create_model("squeezenet1_1", 5, weights=bad)
