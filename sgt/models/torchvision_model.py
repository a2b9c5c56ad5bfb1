"""Any torchvision classification model by name, sized for the dataset's classes.

``model=torchvision model.name=convnext_tiny model.weights=DEFAULT``: built by
``torchvision.models.get_model`` with ``num_classes`` outputs; pretrained weights (from
torchvision's weights API, or a local file) fill everything but a head of another class
count. Models that return auxiliary outputs in training (``googlenet``, ``inception_v3``)
need ``+model.aux_logits=false``. Note that some torchvision models reuse one activation
module (e.g. ResNet blocks' ``relu``), which captum's DeepLift cannot attribute through.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torchvision
from torch import nn

from sgt.models.names import check_model_name
from sgt.models.pretrained import load_pretrained, no_inplace, pretrained_state_dict


def classification_models() -> list[str]:
    """Names ``torchvision.models.get_model`` builds for image classification."""
    return torchvision.models.list_models(module=torchvision.models)


def torchvision_model(name: str, num_classes: int = 10, weights: str | None = None,
                      weights_path: str | Path | None = None, **kwargs: Any) -> nn.Module:
    """torchvision classifier ``name`` with ``num_classes`` outputs, optionally pretrained.

    Args:
        weights: a torchvision weights name for ``name`` (``DEFAULT``, ``IMAGENET1K_V1``…);
            downloads, so it needs a network (or torch's hub cache).
        weights_path: a local state-dict file of those weights instead.
        kwargs: passed on to the model's builder.
    """
    check_model_name(name, classification_models(), "torchvision classification model",
                     "torchvision.models.list_models()")
    model = torchvision.models.get_model(name, num_classes=num_classes, **kwargs)
    state = pretrained_state_dict(name, weights, weights_path)
    if state is not None:
        load_pretrained(model, state, num_classes, str(weights_path or f"{name} {weights}"))
    return no_inplace(model)
