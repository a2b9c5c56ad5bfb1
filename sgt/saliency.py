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

Output = Literal["logit", "log_prob"]
OUTPUTS: tuple[str, ...] = ("logit", "log_prob")


def target_score(logits: Tensor, target: Tensor, output: Output = "logit") -> Tensor:
    """Sum over the batch of the target-class output: one backward gives every sample's grad.

    ``output="log_prob"`` differentiates ``log p_y`` (the original MNIST network ended in
    ``log_softmax``); ``"logit"`` differentiates the raw logit ``z_y`` (CIFAR/BIRD).
    """
    if output == "log_prob":
        logits = F.log_softmax(logits, dim=-1)
    elif output != "logit":
        raise ValueError(f"unknown saliency output {output!r}; allowed: {list(OUTPUTS)}")
    return logits.gather(1, target.view(-1, 1)).sum()


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
