"""Noisy linear imputation, ROAD's fill (Rong et al., ICML 2022, arXiv 2202.00449;
docs/paper.md §3(f)).

Removing pixels by a constant or a mean leaves a mask whose *shape* tells the model where
the salient pixels were. ROAD instead gives every removed pixel the weighted average of its
eight neighbours (1/6 sideways, 1/12 diagonally), where a kept neighbour contributes its
value and a removed one its own imputed value, then adds a little Gaussian noise.

For removed pixel ``i`` with in-image neighbours ``j`` this is one linear equation

    s_i x_i - sum_j w_ij x_j = 0,   s_i = sum_j w_ij  (1 inside the image, less at the border),

with the kept ``x_j`` moved to the right-hand side: the reference's sparse system, one per
image (docs/paper.md §3(f)). The matrix depends on the mask only; every channel has its own
right-hand side, so each ``(image, channel)`` is one system.

Instead of assembling and factorising a matrix per image (the reference: scipy ``spsolve`` in
a Python loop), all systems of a batch are solved at once by Jacobi-preconditioned conjugate
gradients in float64, as scipy solves. The matrix is symmetric (``w_ij = w_ji``) and positive
definite whenever a kept pixel exists, and its product with a vector is a 3 × 3 stencil, so an
iteration is a few element-wise passes over the batch: no matrix is ever built, memory stays
a few copies of the batch, and the iterations needed grow with the image side, not its area
(25-125 for 32 × 32 images with 50-90 % removed, at the default tolerance).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from sgt.errors import SettingError
from sgt.masking import FILLS


def _tent(u: Tensor, dim: int) -> Tensor:
    """``u`` convolved with ``[1, 2, 1]`` along ``dim``, zero outside the image."""
    out = 2 * u
    n = u.shape[dim]
    out.narrow(dim, 1, n - 1).add_(u.narrow(dim, 0, n - 1))
    out.narrow(dim, 0, n - 1).add_(u.narrow(dim, 1, n - 1))
    return out


def twelve_neighbour_sum(u: Tensor) -> Tensor:
    """``12 sum_j w_ij u_j + 4 u_i`` over each pixel's in-image neighbours, ``u: (..., H, W)``.

    In twelfths the reference's weights are the stencil ``[[1, 2, 1], [2, 0, 2], [1, 2, 1]]``;
    with 4 at the centre it is the separable ``[1, 2, 1]^T [1, 2, 1]``: two 1-D passes. Zero
    outside the image drops out-of-image neighbours, as the reference does.
    """
    return _tent(_tent(u, -2), -1)


def linear_imputation(images: Tensor, missing: Tensor, tol: float = 1e-8,
                      max_iter: int | None = None) -> Tensor:
    """The reference's noise-free imputation, every image of the batch at once.

    Args:
        images: ``(B, C, H, W)`` values; those at ``missing`` pixels are ignored.
        missing: ``(B, H, W)`` bool, the pixels to impute.
        tol: stop when every system's residual, in the preconditioner's norm, is at most
            ``tol`` times its right-hand side's.
        max_iter: at most this many iterations (default ``H * W``, the count at which
            conjugate gradients is exact in exact arithmetic).
    Returns:
        ``(B, C, H, W)`` float64: kept pixels unchanged, missing ones imputed. An image with
        no kept pixel has nothing to average and gets 0 there (the reference's matrix is
        singular then).
    """
    height, width = images.shape[-2:]
    m = missing.unsqueeze(1).to(torch.float64)  # (B, 1, H, W)
    known = images.to(torch.float64) * (1 - m)
    # The system times 12, so the stencil stays in integers: 12 s_i x_i - 12 sum_j w_ij x_j.
    # ``twelve_neighbour_sum`` also counts 4 x_i, so the diagonal it is taken from is 12 s_i + 4.
    diagonal = twelve_neighbour_sum(known.new_ones(height, width))  # (H, W)
    # Jacobi preconditioner 1 / (12 s_i); a 1 × 1 image has no neighbour (s = 0)
    inv_diagonal = torch.where(diagonal > 4, 1 / (diagonal - 4), 0.0)

    def matvec(u: Tensor) -> Tensor:  # the matrix on vectors that are 0 at kept pixels
        return twelve_neighbour_sum(u).neg_().addcmul_(diagonal, u).mul_(m)

    def dot(a: Tensor, b: Tensor) -> Tensor:  # one value per (image, channel): (B, C, 1, 1)
        return (a * b).sum((2, 3), keepdim=True)

    rhs = twelve_neighbour_sum(known).mul_(m)  # kept neighbours' share (known is 0 at i)
    x = torch.zeros_like(rhs)
    residual = rhs.clone()
    z = residual * inv_diagonal
    direction = z.clone()
    rz = dot(residual, z)
    stop = tol**2 * rz  # squared preconditioned norm of the residual at x = 0
    limit = max_iter or height * width
    for _ in range(limit):
        if bool((rz <= stop).all()):
            break
        product = matvec(direction)
        curvature = dot(direction, product)
        alpha = torch.where(curvature > 0, rz / curvature, 0.0)  # 0 for finished systems
        x.addcmul_(alpha, direction)
        residual.addcmul_(alpha, product, value=-1)
        z = residual * inv_diagonal
        rz_next = dot(residual, z)
        beta = torch.where(rz > 0, rz_next / rz, 0.0)
        direction = z.addcmul_(beta, direction)
        rz = rz_next
    else:
        if not bool((rz <= stop).all()):
            worst = tol * float((rz / stop.clamp_min(torch.finfo(torch.float64).tiny))
                                .max().sqrt())
            raise RuntimeError(f"noisy_linear imputation did not reach tol={tol:g} in {limit} "
                               f"iterations (relative residual {worst:.3g}); raise max_iter "
                               f"or tol")
    return known + x


@FILLS.register("noisy_linear")
class NoisyLinearFill:
    """ROAD's noisy linear imputation on a 2-D grid of features (images, time × feature).

    Args:
        noise: standard deviation of the Gaussian noise added to every imputed value, in
            ``[0, 1]`` pixel units, as the reference adds it to ``ToTensor`` images before
            normalising them (its default 0.01).
        input_std: the per-channel std the inputs were normalised with
            (``x = (pixel - mean) / std``): the noise is divided by it, so ``noise`` means
            the same on every dataset (MNIST: ``(0.3081,)``; CIFAR-10 here: the ImageNet
            std). ``None``: the inputs are pixels (or already in the noise's units). The
            imputation itself commutes with a per-channel affine normalisation: each value
            is a mean with weights summing to 1 (docs/paper.md §3(f)).
        tol, max_iter: the solver's (see :func:`linear_imputation`).
    """

    def __init__(self, noise: float = 0.01, input_std: Sequence[float] | None = None,
                 tol: float = 1e-8, max_iter: int | None = None) -> None:
        if (isinstance(noise, bool) or not isinstance(noise, (int, float))
                or not 0 <= noise < float("inf")):
            raise SettingError(f"noisy_linear noise must be a finite standard deviation >= 0, "
                               f"got {noise!r}")
        if input_std is not None and (
                isinstance(input_std, (str, bytes)) or not isinstance(input_std, Sequence)
                or not input_std or any(isinstance(v, bool) or not isinstance(v, (int, float))
                                        or not 0 < v < float("inf") for v in input_std)):
            raise SettingError(f"noisy_linear input_std must list one positive std per "
                               f"channel (or be null), got {input_std!r}")
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < 1:
            raise SettingError(f"noisy_linear tol must be a number in (0, 1), got {tol!r}")
        if max_iter is not None and (isinstance(max_iter, bool) or not isinstance(max_iter, int)
                                     or max_iter < 1):
            raise SettingError(f"noisy_linear max_iter must be a positive integer or null, "
                               f"got {max_iter!r}")
        self.noise, self.tol, self.max_iter = float(noise), float(tol), max_iter
        self.input_std = None if input_std is None else tuple(float(v) for v in input_std)

    def noise_std(self, channels: int, like: Tensor) -> Tensor:
        """``(C,)`` the noise's std in the input's units: ``noise / input_std``."""
        if self.input_std is None:
            return torch.full((channels,), self.noise, dtype=like.dtype, device=like.device)
        if len(self.input_std) != channels:
            raise SettingError(f"noisy_linear input_std has {len(self.input_std)} value(s) "
                               f"but the inputs have {channels} channel(s); give one std per "
                               f"channel")
        return self.noise / torch.tensor(self.input_std, dtype=like.dtype, device=like.device)

    def __call__(self, features: Tensor, *, selected: Tensor, valid: Tensor | None,
                 generator: torch.Generator | None, grid: tuple[int, ...]) -> Tensor:
        """``(B, N, C)``: ``features`` with the ``selected`` ones imputed (plus noise)."""
        batch, n, channels = features.shape
        if len(grid) != 2 or grid[0] * grid[1] != n:
            raise SettingError(f"the noisy_linear fill imputes from neighbours on a 2-D grid "
                               f"of the {n} features (images: (H, W)), got grid {tuple(grid)}; "
                               f"choose another fill for this modality")
        if valid is not None:
            raise SettingError("the noisy_linear fill cannot skip padding (text); choose "
                               "another fill for this modality")
        std = self.noise_std(channels, features)
        # (B, N, C) -> (B, C, H, W): N runs over the grid row by row
        images = features.transpose(1, 2).reshape(batch, channels, *grid)
        imputed = linear_imputation(images, selected.reshape(batch, *grid), self.tol,
                                    self.max_iter)
        imputed = imputed.to(features.dtype).flatten(2).transpose(1, 2)  # (B, N, C)
        if self.noise:
            imputed = imputed + std * torch.randn(
                features.shape, generator=generator, device=features.device,
                dtype=features.dtype)
        return torch.where(selected.unsqueeze(-1), imputed, features)


__all__ = ["NoisyLinearFill", "linear_imputation", "twelve_neighbour_sum"]
