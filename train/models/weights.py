"""ImageNet weights for ``--pretrained``: from the libraries' own local caches or a file, never downloaded.

torchvision keeps its files in ``$TORCH_HOME/hub/checkpoints/`` (``torch.hub.get_dir()``),
timm in the Hugging Face cache. Offline without a cached file this is a one-line
:class:`~train.errors.ModelError` saying where to put the file; no connection is tried.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from train.errors import ModelError
from train.models.registry import ModelInfo


def cached_weights_file(info: ModelInfo) -> Path | None:
    """Where the library's cache holds this model's ImageNet weights, if it does."""
    if info.source == "timm":
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return None
        for fname in ("model.safetensors", "pytorch_model.bin"):
            hit = try_to_load_from_cache(info.weights_hint, fname)
            if isinstance(hit, str):
                return Path(hit)
        return None
    import torch

    path = Path(torch.hub.get_dir()) / "checkpoints" / info.weights_hint
    return path if path.is_file() else None


def _expected_location(info: ModelInfo) -> str:
    if info.source == "timm":
        return f"the Hugging Face cache entry of {info.weights_hint} (model.safetensors)"
    import torch

    return str(Path(torch.hub.get_dir()) / "checkpoints" / info.weights_hint)


def read_state_dict(path: Path) -> dict[str, Any]:
    """A plain state_dict from ``.safetensors`` or a torch file (``weights_only=True``: no pickled objects)."""
    import torch

    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is the user's file
        raise ModelError(f"cannot read weights file {path}: {type(exc).__name__}: {exc}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"weights file {path} does not hold a state_dict")
    return state


def load_imagenet_state(info: ModelInfo, *, pretrained: bool, weights: str | Path | None) -> dict[str, Any] | None:
    """The ImageNet state_dict to start from, or None for random initialisation."""
    if weights is not None:
        return read_state_dict(Path(weights))
    if not pretrained:
        return None
    path = cached_weights_file(info)
    if path is None:
        raise ModelError(
            f"--pretrained: no cached ImageNet weights for {info.name} (looked for {_expected_location(info)}); "
            f"copy the file there or pass --weights FILE, or train from random initialisation without --pretrained")
    return read_state_dict(path)
