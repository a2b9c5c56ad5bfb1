"""Saliency: the training-step input gradient and the evaluation's attribution methods.

- :mod:`sgt.saliency.gradient`: ∂ target output / ∂ input in one backward (the SGT step).
- :mod:`sgt.saliency.methods`: captum's methods by name (grad, IG, DeepLift, …, random).
- :mod:`sgt.saliency.explain`: :class:`Explainer`, seeded methods → per-feature scores.
- :mod:`sgt.saliency.ranking`: features ranked by score, exact ties broken at random.
"""

from sgt.saliency.explain import Explainer, method_generator
from sgt.saliency.gradient import (
    OUTPUTS,
    Output,
    check_output,
    explained_output,
    input_gradient,
    target_score,
)
from sgt.saliency.methods import (
    METHODS,
    Attribution,
    ModalityForward,
    get_method,
    global_rng_from,
)
from sgt.saliency.ranking import feature_ranks, least_relevant, most_relevant, tie_keys

__all__ = [
    "METHODS",
    "OUTPUTS",
    "Attribution",
    "Explainer",
    "ModalityForward",
    "Output",
    "check_output",
    "explained_output",
    "feature_ranks",
    "get_method",
    "global_rng_from",
    "input_gradient",
    "least_relevant",
    "method_generator",
    "most_relevant",
    "target_score",
    "tie_keys",
]
