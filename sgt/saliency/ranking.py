"""Rank features by score for the removal evaluations, exact ties broken at random.

A removal metric (accuracy drop, ROAD) takes away the top (or the bottom) of a ranking. Exact
ties are common: 14–20 % of a trained CNN's Grad and IG scores tie, and every score of a
constant map does. A sort's own order for tied scores has structure (``torch.topk`` on the
CPU takes whole image rows), and a model can read a removal mask's shape. So ties are broken
by a seeded random key per feature, as ROAD's reference breaks them with a fixed random field
(docs/paper.md §3(a), §3(f)). The keys are drawn on the CPU and only then moved, so a ranking
is the same on every device.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sgt.masking import num_masked


def tie_keys(generator: torch.Generator, num_features: int, device: torch.device) -> Tensor:
    """``(N,)`` float64 standard-normal keys from a CPU ``generator``, on ``device``."""
    return torch.randn(num_features, generator=generator, dtype=torch.float64).to(device)


def feature_ranks(scores: Tensor, keys: Tensor | None = None,
                  valid: Tensor | None = None) -> Tensor:
    """``(B, N)`` place of each feature in its row's order by descending score (0 = the
    highest). Exact ties go by descending ``keys`` ``(N,)``, then by position; positions that
    are not ``valid`` (padding) come after every feature."""
    if valid is not None:
        scores = scores.masked_fill(~valid, float("-inf"))
    if keys is None:
        order = scores.argsort(dim=1, descending=True, stable=True)
    else:  # lay the features out by key first: the stable sort then keeps that order in ties
        by_key = keys.argsort(descending=True, stable=True)
        order = by_key[scores[:, by_key].argsort(dim=1, descending=True, stable=True)]
    places = torch.arange(scores.shape[1], device=scores.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, places)


def most_relevant(ranks: Tensor, fraction: float, valid: Tensor | None = None) -> Tensor:
    """``(B, N)`` bool: each row's top ``int(fraction · n)`` features, ``n`` its feature count."""
    n = ranks.shape[1] if valid is None else valid.sum(1, keepdim=True)
    return ranks < num_masked(fraction, n)


def least_relevant(ranks: Tensor, kept: float, valid: Tensor | None = None) -> Tensor:
    """``(B, N)`` bool: every feature of a row but its top ``int(kept · n)`` (ROAD's LeRF at
    ``kept``, which removes ``n - int(kept · n)``)."""
    n = ranks.shape[1] if valid is None else valid.sum(1, keepdim=True)
    return (ranks >= num_masked(kept, n)) & (ranks < n)


__all__ = ["feature_ranks", "least_relevant", "most_relevant", "tie_keys"]
