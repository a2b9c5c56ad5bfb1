"""sgt: saliency guided training and saliency-faithfulness evaluation.

The library is usable without Hydra::

    from sgt import SaliencyGuidedModule
    module = SaliencyGuidedModule(my_net, optimizer=partial(torch.optim.Adam, lr=1e-3), k=0.5)

captum, which only the evaluation's attribution methods need, is imported on their first
call, so training never pays for importing it.
"""

import sgt.imputation  # noqa: F401  (registers the noisy_linear fill)
from sgt.errors import NonFiniteError, SettingError, SGTError
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
from sgt.module import SaliencyGuidedModule
from sgt.saliency import METHODS, Explainer, get_method, input_gradient

__all__ = [
    "FILLS",
    "METHODS",
    "AccuracyDrop",
    "AccuracyDropResult",
    "CascadingRandomization",
    "Explainer",
    "ImageModality",
    "Modality",
    "NonFiniteError",
    "SGTError",
    "SGTLoss",
    "SaliencyGuidedModule",
    "SettingError",
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
