"""sgt: saliency guided training and saliency-faithfulness evaluation.

The library is usable without Hydra::

    from sgt import SaliencyGuidedModule
    module = SaliencyGuidedModule(my_net, optimizer=partial(torch.optim.Adam, lr=1e-3), k=0.5)
"""

from sgt.attribution import METHODS, get_method
from sgt.evaluation import AccuracyDrop, AccuracyDropResult, CascadingRandomization
from sgt.features import (
    ImageModality,
    Modality,
    TextModality,
    TimeSeriesModality,
    feature_saliency,
    get_modality,
)
from sgt.losses import SGTLoss, sgt_objective
from sgt.masking import FILLS, get_fill, mask_features, select_features
from sgt.module import NonFiniteError, SaliencyGuidedModule
from sgt.saliency import input_gradient

__all__ = [
    "FILLS",
    "METHODS",
    "AccuracyDrop",
    "AccuracyDropResult",
    "CascadingRandomization",
    "ImageModality",
    "Modality",
    "NonFiniteError",
    "SGTLoss",
    "SaliencyGuidedModule",
    "TextModality",
    "TimeSeriesModality",
    "feature_saliency",
    "get_fill",
    "get_method",
    "get_modality",
    "input_gradient",
    "mask_features",
    "select_features",
    "sgt_objective",
]
