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
a Python loop), all systems of a batch are solved at once in float64, by one of two solvers,
chosen per image because neither is fast on every mask (measured on 100 CIFAR-10 images,
experiments/bench/road.py):

- *Conjugate gradients* with a Jacobi preconditioner. The matrix is symmetric
  (``w_ij = w_ji``) and positive definite whenever a kept pixel exists, and its product
  with a vector is a 3 × 3 stencil, so an iteration is a few element-wise passes over the
  batch. Where every removed pixel is near a kept one (scattered masks) it needs ~25
  iterations and is the fastest; but the iterations grow with the holes' width (~50 for a
  16 × 16 square, 236 for 112 × 112), and there it loses to the reference.
- *An exact row sweep* (:func:`_row_sweep`): the system in row order is block tridiagonal,
  and block Gaussian elimination solves it with one batched ``w × w`` Cholesky
  factorisation per row, on each image's bounding window of its holes. Its cost does not
  depend on the holes' shape and shrinks with the window (a 16 × 16 square: 16 rows of
  16 × 16 blocks), so large and clustered holes (MoRF masks) go there: an image with at
  least ``DEEP_SHARE`` of its pixels deep inside a hole (no kept neighbour).

Both run on any device with torch operations alone (no host round trip, no scipy); the
sweep stores ``h`` inverses of ``w × w`` per image, so it takes the batch in chunks of
``DIRECT_BYTES``. On the CPU the solve runs on one thread: its operations are small (one
batch of 32 × 32 blocks, one stencil pass), so a second thread gains little, and on a
machine whose other core is busy every parallel section waits for it, which made the fill
5-20 × slower with 2 threads than with 1 on the project's loaded 2-core machine.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor

from sgt.errors import SettingError
from sgt.masking import FILLS

DEEP_SHARE = 1 / 64  # this share of pixels deep inside holes sends an image to the exact solve
DIRECT_BYTES = 2**28  # memory for the exact solve's stored inverses, per chunk of the batch


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


def _conjugate_gradients(rhs: Tensor, m: Tensor, twelve_s: Tensor, tol: float,
                         max_iter: int | None) -> Tensor:
    """``x (B, C, H, W)`` solving every image's system by Jacobi-preconditioned CG.

    ``rhs``: the kept neighbours' share, 0 at kept pixels; ``m (B, 1, H, W)``: 1 at missing
    pixels; ``twelve_s (H, W)``: ``12 s_i``, the diagonal (times 12).
    """
    height, width = rhs.shape[-2:]
    diagonal = twelve_s + 4  # ``twelve_neighbour_sum`` also counts 4 u_i
    # Jacobi preconditioner 1 / (12 s_i); a 1 × 1 image has no neighbour (s = 0)
    inv_diagonal = torch.where(twelve_s > 0, 1 / twelve_s, 0.0)

    def matvec(u: Tensor) -> Tensor:  # the matrix on vectors that are 0 at kept pixels
        return twelve_neighbour_sum(u).neg_().addcmul_(diagonal, u).mul_(m)

    def dot(a: Tensor, b: Tensor) -> Tensor:  # one value per (image, channel): (B, C, 1, 1)
        return (a * b).sum((2, 3), keepdim=True)

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
    return x


def _window(missing: Tensor) -> tuple[Tensor, Tensor]:
    """``(rows (B, h), cols (B, w))``: per image the indices of an ``h × w`` window of the
    image holding all its missing pixels, ``h × w`` the largest bounding box of the batch.

    Pixels outside the window are kept, so the system lives inside it, with the same stencil
    (the window is a contiguous piece of the image) and the kept pixels around it already
    on the right-hand side.
    """
    windows = []
    for dim in (2, 1):  # rows: any missing pixel along the width, then columns
        hit = missing.any(dim)  # (B, n)
        n = hit.shape[1]
        index = torch.arange(n, device=missing.device)
        first = torch.where(hit, index, n).amin(1)
        last = torch.where(hit, index, -1).amax(1)
        size = int((last - first + 1).amax().clamp_min(1))
        start = first.clamp(0, n - size)  # images with nothing missing: any window
        windows.append(start.unsqueeze(1) + torch.arange(size, device=missing.device))
    return windows[0], windows[1]


def _row_sweep(rhs: Tensor, m: Tensor, twelve_s: Tensor) -> Tensor:
    """``x (B, C, h, w)`` solving every image's system exactly, row by row.

    In row order the matrix is block tridiagonal with ``w × w`` blocks: a row's own
    couplings ``A_k`` and the pair coupling ``O_k`` to the row above. Block Gaussian
    elimination (the block Thomas algorithm) keeps ``S_k = A_k - O_k S_{k-1}^{-1} O_k^T``,
    a dense SPD ``w × w`` matrix per image, and solves with its inverse; that is ``h``
    batched Cholesky factorisations of ``(B, w, w)``, whatever the mask's shape.

    ``rhs (B, C, h, w)``: 0 at kept pixels; ``m (B, h, w)``: 1 at missing pixels;
    ``twelve_s (B, h, w)``: the diagonal ``12 s_i``. Kept pixels get identity rows.
    """
    rows, width = m.shape[1], m.shape[2]
    # A_k in twelfths: -2 between side neighbours (12 s_i on the diagonal, set below)
    side = torch.ones(width - 1, dtype=m.dtype, device=m.device).diag(1)
    side = -2 * (side + side.T)
    inverses, partial = [], []
    for k in range(rows):
        mk = m[:, k]  # (B, w)
        r = rhs[:, :, k].transpose(1, 2)  # (B, w, C)
        if k:
            # O_k = -diag(m_k) P diag(m_{k-1}), P the tent [1, 2, 1] along the row (2
            # straight across, 1 diagonally, in twelfths); inverses[-1] is 0 at kept pixels
            schur = side - _tent(_tent(inverses[-1], 1), 2)  # A_k - P S^{-1} P, unmasked
            r = r + mk.unsqueeze(2) * _tent(partial[-1], 1)
        else:
            schur = side.expand(len(m), -1, -1)
        schur = schur * (mk.unsqueeze(2) * mk.unsqueeze(1))  # only missing pixels couple
        schur.diagonal(dim1=1, dim2=2).add_(mk * twelve_s[:, k] + 1 - mk)
        # S_k is SPD (a Schur complement of an SPD matrix): no pivoting, no error check
        # (which would wait for the device each row)
        inverse = torch.cholesky_inverse(torch.linalg.cholesky_ex(schur).L)
        # S_k is the identity at kept pixels; zeroing its inverse there keeps every
        # product below 0 at kept pixels, as the coupling needs
        inverse.diagonal(dim1=1, dim2=2).sub_(1 - mk)
        inverses.append(inverse)
        partial.append(inverse @ r)
    x = partial[-1]
    solution = [x]
    for k in range(rows - 2, -1, -1):  # back substitution, bottom row up
        x = partial[k] + inverses[k] @ (m[:, k].unsqueeze(2) * _tent(x, 1))
        solution.append(x)
    return torch.stack(solution[::-1], 2).transpose(1, 3)  # (B, w, h, C) -> (B, C, h, w)


def _direct(rhs: Tensor, missing: Tensor, twelve_s: Tensor) -> Tensor:
    """``x (B, C, H, W)`` by :func:`_row_sweep` on each image's window, in chunks of the
    batch whose stored inverses (``h`` of ``w × w`` per image) stay within ``DIRECT_BYTES``."""
    batch, channels, height, width = rhs.shape
    x = torch.zeros_like(rhs)
    m = missing.to(rhs.dtype)
    chunk = max(1, DIRECT_BYTES // (rhs.element_size() * height * width * min(height, width)))
    for start in range(0, batch, chunk):
        part = slice(start, start + chunk)
        rows, cols = _window(missing[part])
        index = (rows.unsqueeze(2) * width + cols.unsqueeze(1)).flatten(1)  # (b, h * w)
        shape = (len(index), rows.shape[1], cols.shape[1])
        flat = index.unsqueeze(1).expand(-1, channels, -1)  # (b, C, h * w)
        window_rhs = rhs[part].flatten(2).gather(2, flat).view(-1, channels, *shape[1:])
        window_m = m[part].flatten(1).gather(1, index).view(shape)
        window_s = twelve_s.flatten()[index].view(shape)
        if shape[2] > shape[1]:  # sweep along the longer side: fewer, larger blocks cost less
            solved = _row_sweep(window_rhs.transpose(2, 3), window_m.transpose(1, 2),
                                window_s.transpose(1, 2)).transpose(2, 3)
        else:
            solved = _row_sweep(window_rhs, window_m, window_s)
        x[part] = x[part].flatten(2).scatter(2, flat, solved.flatten(2)).view_as(x[part])
    return x


def _deep_holes(missing: Tensor) -> Tensor:
    """``(B,)`` bool: images where at least ``DEEP_SHARE`` of the pixels are missing with
    all eight neighbours (deep inside a hole): there conjugate gradients needs many
    iterations and the exact solve is faster."""
    kept = F.pad((~missing).unsqueeze(1).to(torch.float32), (1, 1, 1, 1), value=1.0)
    deep = F.max_pool2d(kept, 3, stride=1) == 0  # (B, 1, H, W)
    return deep.flatten(1).float().mean(1) >= DEEP_SHARE


@contextmanager
def one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Run torch on one CPU thread inside (a no-op on other devices): small operations on a
    machine whose other cores are busy; see the module docstring for why."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def linear_imputation(images: Tensor, missing: Tensor, tol: float = 1e-8,
                      max_iter: int | None = None) -> Tensor:
    """The reference's noise-free imputation, every image of the batch at once.

    Images with a large hole are solved exactly (:func:`_row_sweep`), the others by
    conjugate gradients to ``tol`` (see the module docstring for why).

    Args:
        images: ``(B, C, H, W)`` values; those at ``missing`` pixels are ignored.
        missing: ``(B, H, W)`` bool, the pixels to impute.
        tol: conjugate gradients stops when every system's residual, in the
            preconditioner's norm, is at most ``tol`` times its right-hand side's.
        max_iter: at most this many conjugate-gradient iterations (default ``H * W``, the
            count at which it is exact in exact arithmetic).
    Returns:
        ``(B, C, H, W)`` float64: kept pixels unchanged, missing ones imputed. An image with
        no kept pixel has nothing to average and gets 0 there (the reference's matrix is
        singular then).
    """
    with one_cpu_thread(images.device):
        return _imputation(images, missing, tol, max_iter)


def _imputation(images: Tensor, missing: Tensor, tol: float, max_iter: int | None) -> Tensor:
    """:func:`linear_imputation`'s body."""
    height, width = images.shape[-2:]
    m = missing.unsqueeze(1).to(torch.float64)  # (B, 1, H, W)
    known = images.to(torch.float64) * (1 - m)
    # The system times 12, so the stencil stays in integers: 12 s_i x_i - 12 sum_j w_ij x_j.
    # ``twelve_neighbour_sum`` also counts 4 x_i, so 12 s_i is its value on ones, less 4.
    twelve_s = twelve_neighbour_sum(known.new_ones(height, width)) - 4  # (H, W)
    rhs = twelve_neighbour_sum(known).mul_(m)  # kept neighbours' share (known is 0 at i)
    # no kept pixel: x = 0, which conjugate gradients returns at once (its rhs is 0)
    direct = _deep_holes(missing) & ~missing.flatten(1).all(1)
    if bool(direct.all()):
        return known + _direct(rhs, missing, twelve_s)
    if not bool(direct.any()):
        return known + _conjugate_gradients(rhs, m, twelve_s, tol, max_iter)
    x = torch.empty_like(rhs)
    x[direct] = _direct(rhs[direct], missing[direct], twelve_s)
    iterative = ~direct
    x[iterative] = _conjugate_gradients(rhs[iterative], m[iterative], twelve_s, tol, max_iter)
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


__all__ = ["NoisyLinearFill", "linear_imputation", "one_cpu_thread", "twelve_neighbour_sum"]
