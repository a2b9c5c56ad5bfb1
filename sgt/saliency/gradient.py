"""Input-gradient saliency of the target-class output, for a whole batch in one backward.

Simonyan et al. 2013 (https://arxiv.org/abs/1312.6034); the SGT paper's ``S(∇_X f(X))``.
Gradients are taken w.r.t. the input only (``torch.autograd.grad``), so parameter
``.grad`` is never touched and no parameter gradient is computed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from sgt.errors import SettingError

Output = Literal["logit", "log_prob", "prob"]
OUTPUTS: tuple[str, ...] = ("logit", "log_prob", "prob")


def check_output(output: str, key: str = "saliency_output") -> None:
    """The one check of which model output is explained (``logit``, ``log_prob``, ``prob``)."""
    if output not in OUTPUTS:
        raise SettingError(f"{key} must be one of {list(OUTPUTS)}, got {output!r}")


def explained_output(logits: Tensor, output: Output = "logit") -> Tensor:
    """The explained output per class: the logits, their ``log_softmax`` or ``softmax``.

    ``log_prob`` is what the original MNIST network returned (it ended in ``log_softmax``);
    ``logit`` is the raw class score (the original CIFAR/BIRD networks); ``prob`` what the
    time-series benchmark's networks returned (they ended in ``softmax``).
    """
    if output == "log_prob":
        return F.log_softmax(logits, dim=-1)
    return F.softmax(logits, dim=-1) if output == "prob" else logits


def target_score(logits: Tensor, target: Tensor, output: Output = "logit") -> Tensor:
    """Sum over the batch of the target-class output: one backward gives every sample's grad."""
    return explained_output(logits, output).gather(1, target.view(-1, 1)).sum()


def input_gradient(
    forward: Callable[[Tensor], Tensor],
    z: Tensor,
    target: Tensor,
    output: Output = "logit",
) -> Tensor:
    """Gradient of the target output w.r.t. ``z`` (same shape as ``z``), signed.

    Args:
        forward: maps ``z`` to logits ``(B, classes)``; samples must not interact
            (e.g. BatchNorm in eval mode), so that the summed score's gradient is per-sample.
        z: the tensor saliency is taken w.r.t. (images: the input itself).
        target: ``(B,)`` class indices (the ground-truth label, as the original).
    """
    z = z.detach().requires_grad_(True)
    with torch.enable_grad():
        score = target_score(forward(z), target, output)
        (grad,) = torch.autograd.grad(score, z)
    return grad
