"""Pretrained weights, from a local file (any model) or torchvision's weights API.

Asking for weights never silently gives an untrained model: a failed download, an unknown
weights name or a file that does not fit the model each raise a :class:`ModelError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models import get_model_weights

from sgt.errors import ModelError

log = logging.getLogger(__name__)


def _download(arch: str, weights: str) -> dict[str, Tensor]:
    enum = get_model_weights(arch)
    names = ["DEFAULT", *(w.name for w in enum)]
    if weights not in names:
        raise ModelError(f"unknown model.weights={weights!r} for {arch}; allowed: {names}")
    spec = enum.DEFAULT if weights == "DEFAULT" else enum[weights]
    try:
        return spec.get_state_dict(progress=False, check_hash=True)
    except Exception as err:  # offline, proxy, hash mismatch, ...
        raise ModelError(
            f"could not get the {arch} weights {spec} from {spec.url} ({type(err).__name__}: "
            f"{err}); copy that file here from a machine with a network and set "
            "model.weights_path=<file>, or model.weights=null to train from scratch"
        ) from None


def _loader(path: Path) -> Callable[[Path], object]:
    """How to read ``path``: by its suffix, safetensors (timm's hub files), else ``torch.load``
    of tensors only (a file cannot run code)."""
    if path.suffix != ".safetensors":
        return lambda p: torch.load(p, map_location="cpu", weights_only=True)
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise ModelError(f"model.weights_path={str(path)!r} is a .safetensors file, which needs "
                         "the safetensors package: pip install safetensors") from None
    return lambda p: load_file(p, device="cpu")


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The state dict in a local file: ``torch.save(model.state_dict(), path)``'s or a
    ``.safetensors`` file (parameter name -> tensor, on the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model.weights_path={str(path)!r} is not a file; give a state-dict "
                         "file saved with torch.save(model.state_dict(), path)")
    load = _loader(path)
    try:
        state = load(path)
    except Exception as err:
        raise ModelError(f"cannot read {path} as a state dict ({type(err).__name__}: {err}); "
                         "give a file saved with torch.save(model.state_dict(), path) or a "
                         ".safetensors file") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ModelError(f"{path} holds a {type(state).__name__}, not a state dict (parameter "
                         "name -> tensor); save one with torch.save(model.state_dict(), path)")
    return dict(state)


def pretrained_state_dict(arch: str, weights: str | None = None,
                          weights_path: str | Path | None = None) -> dict[str, Tensor] | None:
    """The state dict asked for: torchvision's ``weights`` for ``arch`` or ``weights_path``.

    Returns ``None`` when neither is given (train from scratch).
    """
    if weights and weights_path:
        raise ModelError("set either model.weights (download) or model.weights_path (a local "
                         f"file), not both; got {weights!r} and {str(weights_path)!r}")
    if weights_path:
        return read_state_dict(weights_path)
    return _download(arch, weights) if weights else None


def _is_head(module: nn.Module, num_classes: int) -> bool:
    return ((isinstance(module, nn.Linear) and module.out_features == num_classes)
            or (isinstance(module, nn.Conv2d) and module.out_channels == num_classes))


def load_pretrained(model: nn.Module, state: Mapping[str, Tensor], num_classes: int,
                    source: str) -> None:
    """Load ``state`` into ``model`` strictly, except classifier heads of another class count.

    Such heads (ImageNet's 1000 classes vs the dataset's) keep their fresh initialisation;
    any other missing, unexpected or mis-shaped entry is a :class:`ModelError`.
    """
    own = model.state_dict()
    replaced = [k for k, v in state.items() if k in own and v.shape != own[k].shape]
    for key in replaced:
        if not (_is_head(model.get_submodule(key.rpartition(".")[0]), num_classes)
                and state[key].shape[1:] == own[key].shape[1:]):
            raise ModelError(f"{source} does not fit this model: {key} has shape "
                             f"{tuple(state[key].shape)}, the model's is {tuple(own[key].shape)}")
    result = model.load_state_dict({k: v for k, v in state.items() if k not in replaced},
                                   strict=False)
    missing = [k for k in result.missing_keys if k not in replaced]
    if missing or result.unexpected_keys:
        raise ModelError(f"{source} does not fit this model: missing {missing[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]}")
    if replaced:
        log.info("%s: new %d-class head (%s), other weights loaded", source, num_classes,
                 ", ".join(replaced))


def no_inplace(model: nn.Module) -> nn.Module:
    """Turn off ``inplace`` everywhere: captum's DeepLift hooks need unmodified inputs."""
    for module in model.modules():
        if getattr(module, "inplace", False):
            module.inplace = False
    return model
