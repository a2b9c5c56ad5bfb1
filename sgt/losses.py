"""The SGT objective: CE(f(X), y) + λ · KL(f(X) ‖ f(X̃)).

KL direction and reduction follow the original code (docs/paper.md §1.2 item 8):
``KLDivLoss(reduction="batchmean")(log_softmax(masked), softmax(orig))`` =
``Σ_c p_orig (log p_orig − log p_masked)`` summed over classes, divided by the batch size.
Neither branch is detached: gradients flow through both, as in the paper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from sgt.errors import SettingError


@dataclass
class SGTLoss:
    """The objective's parts, kept apart so each can be logged."""

    loss: Tensor
    ce: Tensor
    kl: Tensor


def check_lam(lam: object, key: str = "lam") -> float:
    """The one check of the KL weight λ: a finite number >= 0 (not a bool)."""
    if (isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam)
            or lam < 0):
        raise SettingError(f"{key} must be a finite number >= 0, got {lam!r}")
    return float(lam)


def sgt_objective(
    logits: Tensor, target: Tensor, masked_logits: Tensor | None = None, lam: float = 1.0
) -> SGTLoss:
    """CE on the unmasked logits plus ``lam`` · KL(p(logits) ‖ p(masked_logits)), batchmean.

    ``masked_logits=None`` (k = 0) gives plain cross-entropy with a zero KL.
    """
    ce = F.cross_entropy(logits, target)
    if masked_logits is None:
        kl = torch.zeros((), device=logits.device, dtype=ce.dtype)
        return SGTLoss(ce, ce, kl)
    kl = F.kl_div(
        F.log_softmax(masked_logits, dim=-1),
        F.log_softmax(logits, dim=-1),
        log_target=True,
        reduction="batchmean",
    )
    return SGTLoss(ce + lam * kl, ce, kl)
