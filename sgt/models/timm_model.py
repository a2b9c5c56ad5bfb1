"""Any timm (pytorch-image-models) classifier by name, sized for the dataset.

``model=timm model.name=resnet18``: built by ``timm.create_model(name, num_classes=…,
in_chans=…)``, always with ``pretrained=False``: timm's own pretrained path downloads from
the Hugging Face hub, and a run never reaches the network unasked. Pretrained weights come
from a local file instead (``weights_path``: a state dict, or a timm hub ``.safetensors`` /
``.pth`` / ``.bin`` file), loaded strictly except a head of another class count. The data
gives the class count; ``in_chans`` is 3 unless the dataset's config says otherwise
(``configs/recipe_model/mnist_timm.yaml``: 1).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from sgt.checks import check_int
from sgt.errors import ModelError
from sgt.models.names import check_model_name
from sgt.models.pretrained import load_pretrained, no_inplace, read_state_dict

# create_model arguments that would load weights behind model.weights_path's back
HUB_ARGS = ("pretrained", "checkpoint_path")


def _timm() -> ModuleType:
    """``timm``, imported on first use: an optional extra, and 1–2 s to import."""
    try:
        import timm
    except ImportError:
        raise ModelError("model=timm needs the timm package: pip install -e \".[timm]\"") from None
    return timm


def timm_model(name: str, num_classes: int = 10, in_chans: int = 3,
               weights_path: str | Path | None = None, **kwargs: Any) -> nn.Module:
    """timm classifier ``name`` from ``(B, in_chans, H, W)`` to ``(B, num_classes)`` logits.

    Args:
        name: a timm model, with or without a pretrained tag (``resnet18``,
            ``resnet18.a1_in1k``): one of ``timm.list_models()``.
        weights_path: a local file of pretrained weights for ``name`` (a 1000-class head is
            replaced by a fresh ``num_classes`` one); ``None`` trains from scratch.
        kwargs: passed on to ``timm.create_model`` (``drop_rate``, ``drop_path_rate``…).
    """
    timm = _timm()
    check_model_name(name, sorted({*timm.list_models(), *timm.list_models(pretrained=True)}),
                     "timm model", "timm.list_models()")
    check_int(in_chans, "model.in_chans")
    hub = [k for k in HUB_ARGS if k in kwargs]
    if hub:
        raise ModelError(f"model=timm takes no {hub}: it never downloads; set "
                         "model.weights_path=<local weights file> instead")
    model = timm.create_model(name, pretrained=False, num_classes=num_classes,
                              in_chans=in_chans, **kwargs)
    if weights_path:
        load_pretrained(model, read_state_dict(weights_path), num_classes, str(weights_path))
    return no_inplace(model)
