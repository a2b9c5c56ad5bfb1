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
right-hand side, so each ``(image, channel)`` is one system, symmetric (``w_ij = w_ji``) and
positive definite whenever a kept pixel exists.

Instead of assembling and factorising a matrix per image (the reference: scipy ``spsolve`` in
a Python loop), all systems of a batch are solved at once, by one of three solvers chosen per
image because none is fast on every mask (measured on CIFAR-10, experiments/bench/road.py):

- *Conjugate gradients* (:func:`_conjugate_gradients`), for shallow holes, whose every
  pixel is near a kept one (scattered pixels, MoRF's ragged clusters, 90 % removed at
  random): the product with the matrix is a 3 × 3 stencil, so an iteration is a few passes
  over the batch, and the iterations grow with the holes' depth. The passes are bound by
  memory, so the iterations run in float32 and each round corrects the float64 residual of
  the last (mixed-precision iterative refinement: two rounds of a 1e-4 reduction reach
  1e-8), and systems leave the batch as they converge.
- *An exact row sweep* (:func:`_row_sweep`), for images whose holes fit a small window or
  lie deep (large clustered holes; conjugate gradients needs ~50 iterations for a 16 × 16
  square, 236 for 112 × 112): in row order the system is block tridiagonal, and block
  Gaussian elimination solves it with one batched ``w × w`` Cholesky factorisation per
  row of each image's bounding window of its holes, whatever their shape.
- *A fast Poisson solve* (:func:`_rectangles`) for a hole that is one solid rectangle
  (an occluding block) clear of two opposite image edges: a sine transform along its rows
  turns it into independent tridiagonal systems. Exact, and independent of LAPACK: the
  sweep would take 112 factorisations of 112 × 112 for a 112 × 112 block in a 224 × 224
  image, barely faster than the reference.

:func:`_prefers_sweep` chooses between the first two by a cost model measured on this
project's CPU.

All run on any device with torch operations alone (no host round trip, no scipy); the
sweep stores ``h`` inverses of ``w × w`` per image, so it takes the batch in chunks of
``DIRECT_BYTES``. On the CPU the solve runs on one thread: its operations are small and
bound by memory, so a second thread gains little, and on a machine whose other core is busy
every parallel section waits for it, which made the fill 5-20 × slower with 2 threads than
with 1 on the project's loaded 2-core machine.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor

from sgt.errors import SettingError
from sgt.masking import FILLS

DIRECT_BYTES = 2**28  # memory for the exact solve's stored inverses, per chunk of the batch
ROUND_TOL = 1e-4  # each float32 conjugate-gradient round's residual reduction
COMPACT_EVERY = 8  # iterations between dropping converged systems from the batch
TINY = torch.finfo(torch.float32).tiny


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


def _twelve_s(height: int, width: int, like: Tensor) -> Tensor:
    """``(H, W)``: the diagonal ``12 s_i`` in twelfths, the stencil on ones less its 4 at the
    centre (``12`` inside the image, less at the border)."""
    return twelve_neighbour_sum(like.new_ones(height, width)) - 4


def _padded(t: Tensor) -> Tensor:
    """``(N, H, W) -> (N, (H + 1) (W + 1))``: each image with a zero column and a zero row
    appended, flattened. In this layout a pixel's neighbours lie at flat offsets ``±1`` and
    ``±(W + 1)`` and an out-of-image neighbour reads a zero, so the stencil is four shifted
    adds over the whole batch at once, on contiguous memory."""
    return F.pad(t, (0, 1, 0, 1)).flatten(1)


class _Stencil:
    """The systems' matrix (times 12) on the padded layout, for vectors that are 0 at kept
    pixels: ``(12 s_i + 4) u_i - (tent ⊗ tent)(u)_i`` at missing pixels, 0 at kept ones.

    ``negated (N, P)``: -1 at missing pixels, 0 elsewhere (float32, exact in any dtype);
    ``diagonal (P,)``: ``12 s_i + 4``, in the dtype the stencil works in.
    The input goes into :attr:`vector`, a view of a buffer whose zero margins keep every
    shifted read inside it. The iterations reuse these buffers: a fresh multi-megabyte
    tensor per operation costs more in page faults than the operation itself.
    """

    def __init__(self, negated: Tensor, diagonal: Tensor, width: int) -> None:
        self.negated, self.diagonal, self.width = negated, diagonal, width
        self.margin = width + 2  # one padded row and one more
        buffers = diagonal.new_empty(3, negated.numel() + 2 * self.margin)
        buffers[:, :self.margin] = 0
        buffers[:, -self.margin:] = 0
        # the input; the [1, 2, 1] pass along each row; products for dot products
        self.source, self.across, scratch = buffers
        self.vector = self.source[self.margin:-self.margin].view_as(negated)
        self.scratch = scratch[self.margin:-self.margin].view_as(negated)

    @classmethod
    def build(cls, missing: Tensor, dtype: torch.dtype) -> _Stencil:
        """The stencil of the systems ``missing (N, H, W)`` (bool)."""
        height, width = missing.shape[1:]
        diagonal = _padded(_twelve_s(height, width, missing.new_empty((), dtype=dtype))
                           .add_(4).unsqueeze(0))[0]
        return cls(_padded(missing.float()).neg_(), diagonal, width)

    def to(self, dtype: torch.dtype) -> _Stencil:
        return _Stencil(self.negated, self.diagonal.to(dtype), self.width)

    def subset(self, keep: Tensor) -> _Stencil:
        """The stencil of the systems ``keep`` (bool); the input is not copied."""
        return _Stencil(self.negated[keep], self.diagonal, self.width)

    def tent(self, u: Tensor, out: Tensor | None = None) -> Tensor:
        """``(tent ⊗ tent)(u)`` for ``u (N, P)``: ``[1, 2, 1]`` along rows, then columns."""
        if u is not self.vector:
            self.vector.copy_(u)
        o, n, row = self.margin, self.negated.numel(), self.width + 1
        source, across = self.source, self.across
        middle = across[o:o + n]
        torch.add(source[o - 1:o - 1 + n], source[o + 1:o + 1 + n], out=middle)
        middle.add_(source[o:o + n], alpha=2)
        out = torch.empty_like(self.vector) if out is None else out
        flat = out.view(-1)
        torch.add(across[o - row:o - row + n], across[o + row:o + row + n], out=flat)
        flat.add_(middle, alpha=2)
        return out

    def apply(self, out: Tensor) -> Tensor:
        """``out (N, P)`` = the matrix times :attr:`vector`."""
        return self.tent(self.vector, out).mul_(self.negated).addcmul_(self.diagonal,
                                                                      self.vector)

    def dot(self, a: Tensor, b: Tensor) -> Tensor:
        """``(N, 1)``: each system's ``a · b`` (``(N, P)`` each)."""
        return torch.mul(a, b, out=self.scratch).sum(1, keepdim=True)


def _cg_round(rhs: Tensor, stencil: _Stencil, limit: int) -> tuple[Tensor, int]:
    """``(d, iterations)``: ``d (N, P)`` solving ``stencil · d = rhs`` by conjugate gradients
    to a residual of ``ROUND_TOL`` times ``rhs``'s, in at most ``limit`` iterations.

    Every ``COMPACT_EVERY`` iterations the converged systems leave the batch, so that the
    slowest system of the batch does not make every other one iterate with it. No
    preconditioner: Jacobi's diagonal is constant but at the image's border, and measured
    no fewer iterations.
    """
    solution = torch.zeros_like(rhs)
    rows = torch.arange(len(rhs), device=rhs.device)
    x, r = torch.zeros_like(rhs), rhs.clone()
    p = stencil.vector
    p.copy_(r)
    product = torch.empty_like(r)
    rr = stencil.dot(r, r)
    stop = ROUND_TOL**2 * rr
    iteration = 0
    for iteration in range(limit + 1):
        done = (rr <= stop)[:, 0]
        if iteration == limit or bool(done.all()):
            break
        if iteration % COMPACT_EVERY == 0 and bool(done.any()):
            solution[rows[done]] = x[done]
            keep = ~done
            rows, x, r, rr, stop = rows[keep], x[keep], r[keep], rr[keep], stop[keep]
            direction = p[keep]
            stencil = stencil.subset(keep)
            p, product = stencil.vector, torch.empty_like(r)
            p.copy_(direction)
        stencil.apply(product)
        # a system solved exactly has r = p = 0: its steps are 0 / tiny = 0, not NaN
        alpha = rr / stencil.dot(p, product).clamp_min_(TINY)
        x.addcmul_(alpha, p)
        r.addcmul_(alpha, product, value=-1)
        rr_next = stencil.dot(r, r)
        torch.addcmul(r, rr_next / rr.clamp_min_(TINY), p, out=p)
        rr = rr_next
    solution[rows] = x
    return solution, iteration


def _conjugate_gradients(images: Tensor, missing: Tensor, tol: float, max_iter: int | None
                         ) -> Tensor:
    """``images (B, C, H, W)`` (float64) with the ``missing (B, H, W)`` pixels imputed.

    Conjugate gradients in float32 rounds, each solving for the float64 residual of the
    last, until every system's residual is at most ``tol`` times its right-hand side's
    (2-norms), within ``max_iter`` iterations in all (default ``4 H W``).
    """
    batch, channels, height, width = images.shape
    systems = missing.unsqueeze(1).expand(-1, channels, -1, -1).reshape(-1, height, width)
    exact = _Stencil.build(systems, images.dtype)
    known = _padded(images.reshape(-1, height, width))
    known.addcmul_(known, exact.negated)  # 0 at missing pixels
    residual = exact.tent(known).mul_(exact.negated).neg_()  # the kept neighbours' share
    bb = exact.dot(residual, residual)[:, 0]
    x = torch.zeros_like(residual)
    rows = torch.arange(len(x), device=x.device)
    limit = max_iter or 4 * height * width
    used = 0
    while True:
        rr = exact.dot(residual, residual)[:, 0]
        unfinished = rr > tol**2 * bb  # a system without missing or kept pixels has bb = 0
        if not bool(unfinished.any()):
            break
        if used >= limit:
            worst = float((rr / bb.clamp_min(torch.finfo(bb.dtype).tiny)).max().sqrt())
            raise RuntimeError(f"noisy_linear imputation did not reach tol={tol:g} in {limit} "
                               f"iterations (relative residual {worst:.3g}); raise max_iter "
                               f"or tol")
        if not bool(unfinished.all()):
            rows, residual, bb = rows[unfinished], residual[unfinished], bb[unfinished]
            exact = exact.subset(unfinished)
        correction, iterations = _cg_round(residual.float(), exact.to(torch.float32),
                                           limit - used)
        used += max(iterations, 1)
        exact.vector.copy_(correction)
        x.index_add_(0, rows, exact.vector)
        residual.sub_(exact.apply(exact.scratch))
    return known.add_(x).view(batch, channels, height + 1, width + 1)[..., :height, :width]


def _bounds(missing: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """``(first, last)``, each ``(B,)``: per image the first and last row (``dim=2``) or
    column (``dim=1``) holding a missing pixel; ``(n, -1)`` for an image without any."""
    hit = missing.any(dim)  # (B, n)
    n = hit.shape[1]
    index = torch.arange(n, device=missing.device)
    return torch.where(hit, index, n).amin(1), torch.where(hit, index, -1).amax(1)


def _system(images: Tensor, missing: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(known, rhs, twelve_s)`` in twelfths: ``images`` with 0 at missing pixels, the kept
    neighbours' share ``(B, C, H, W)`` (0 at kept pixels) and the diagonal ``12 s_i (H, W)``
    (the stencil on ones, less its 4 at the centre)."""
    m = missing.unsqueeze(1).to(images.dtype)
    known = images * (1 - m)
    return known, twelve_neighbour_sum(known).mul_(m), _twelve_s(*images.shape[-2:], images)


def _window(missing: Tensor) -> tuple[Tensor, Tensor]:
    """``(rows (B, h), cols (B, w))``: per image the indices of an ``h × w`` window of the
    image holding all its missing pixels, ``h × w`` the largest bounding box of the batch.

    Pixels outside the window are kept, so the system lives inside it, with the same stencil
    (the window is a contiguous piece of the image) and the kept pixels around it already
    on the right-hand side.
    """
    windows = []
    for dim in (2, 1):  # rows: any missing pixel along the width, then columns
        first, last = _bounds(missing, dim)
        n = missing.shape[3 - dim]
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


def _direct(images: Tensor, missing: Tensor) -> Tensor:
    """``images (B, C, H, W)`` (float64) with the ``missing (B, H, W)`` pixels imputed by
    :func:`_row_sweep` on each image's window, in chunks of the batch whose stored inverses
    (``h`` of ``w × w`` per image) stay within ``DIRECT_BYTES``."""
    batch, channels, height, width = images.shape
    known, rhs, twelve_s = _system(images, missing)
    m = missing.to(images.dtype)
    x = torch.zeros_like(rhs)
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
        if shape[2] > shape[1]:  # blocks across the shorter side: a row costs w^3
            solved = _row_sweep(window_rhs.transpose(2, 3), window_m.transpose(1, 2),
                                window_s.transpose(1, 2)).transpose(2, 3)
        else:
            solved = _row_sweep(window_rhs, window_m, window_s)
        x[part] = x[part].flatten(2).scatter(2, flat, solved.flatten(2)).view_as(x[part])
    return known + x


def _sine_matrix(n: int, like: Tensor) -> Tensor:
    """``(n, n)``: the type-I discrete sine transform, ``S_jk = sin(pi (j + 1) (k + 1) / (n + 1))``,
    unnormalised. Its columns are the eigenvectors of the tridiagonal ``[1, 2, 1]``
    (eigenvalues ``2 + 2 cos(pi (k + 1) / (n + 1))``) and ``S S = (n + 1) / 2`` times the
    identity. A product with it beats an FFT at the sizes of images' holes."""
    k = torch.arange(1, n + 1, device=like.device, dtype=like.dtype)
    return torch.sin(torch.pi / (n + 1) * k.outer(k))


def _solid_rectangles(missing: Tensor) -> tuple[Tensor, Tensor]:
    """``(across, down)``, each ``(B,)`` bool: the images whose missing pixels fill their
    bounding box exactly, with the box clear of the image's left and right edges
    (``across``: :func:`_rectangles` solves them as they are), or else clear of its top and
    bottom edges (``down``: solved transposed). A box touching all four sides has rows and
    columns that couple unlike the others; it goes to the other solvers."""
    height, width = missing.shape[1:]
    (top, bottom), (left, right) = _bounds(missing, 2), _bounds(missing, 1)
    count = missing.flatten(1).sum(1)
    solid = (count > 0) & (count == (bottom - top + 1) * (right - left + 1))
    clear_sides = (left >= 1) & (right <= width - 2)
    clear_ends = (top >= 1) & (bottom <= height - 2)
    return solid & clear_sides, solid & ~clear_sides & clear_ends


def _rectangles(images: Tensor, missing: Tensor) -> Tensor:
    """``images (B, C, H, W)`` (float64) with the ``missing (B, H, W)`` pixels imputed, where
    every image's missing pixels are a solid rectangle clear of the image's left and right
    edges (:func:`_solid_rectangles`).

    Inside such a hole every row couples alike: ``12 s_k`` on the diagonal (the same all
    along a row that touches neither side edge), -2 to the side neighbours, the tent
    ``[1, 2, 1]`` to the rows above and below. All three are polynomials in the tridiagonal
    ``[1, 2, 1]`` along the row, so the sine transform along the rows diagonalises them: for
    frequency ``j`` (eigenvalue ``t_j``) the rows form the scalar tridiagonal system
    ``(12 s_k + 4 - 2 t_j) y_k - t_j (y_{k-1} + y_{k+1}) = f_k``, SPD, which the Thomas
    algorithm solves. Exact, in ``O(h w^2)`` for an ``h × w`` hole where the row sweep costs
    ``h w^3`` and LAPACK's overhead. Holes of different sizes are solved one size at a time.
    """
    channels, height, width = images.shape[1:]
    twelve_s = _twelve_s(height, width, images)
    # the right-hand side comes from the ring of kept pixels around each hole: a zero ring
    # outside the image, as the reference drops out-of-image neighbours
    ringed = F.pad(images, (1, 1, 1, 1))
    out = images.clone()
    (top, bottom), (left, right) = _bounds(missing, 2), _bounds(missing, 1)
    sizes = torch.stack([bottom - top + 1, right - left + 1], 1)
    for h, w in torch.unique(sizes, dim=0).tolist():  # a loop over hole sizes, not images
        group = (sizes == sizes.new_tensor([h, w])).all(1)
        whole = bool(group.all())
        rows = top[group].unsqueeze(1) + torch.arange(h + 2, device=images.device)
        cols = left[group].unsqueeze(1) + torch.arange(w + 2, device=images.device)
        # (b, C, h + 2, w + 2): the hole and its ring (rows and cols index ``ringed``)
        flat = (rows.unsqueeze(2) * (width + 2) + cols.unsqueeze(1)).flatten(1)
        patch = (ringed if whole else ringed[group]).flatten(2).gather(
            2, flat.unsqueeze(1).expand(-1, channels, -1)).view(-1, channels, h + 2, w + 2)
        patch[..., 1:-1, 1:-1] = 0
        sines = _sine_matrix(w, images)
        f = twelve_neighbour_sum(patch)[..., 1:-1, 1:-1] @ sines
        frequencies = torch.arange(1, w + 1, device=images.device, dtype=images.dtype)
        t = 2 + 2 * torch.cos(torch.pi * frequencies / (w + 1))  # (w,)
        # the diagonal, the same all along a row: (b, h, w)
        diagonal = twelve_s[rows[:, 1:-1] - 1, cols[:, 1:2] - 1].unsqueeze(2) + 4 - 2 * t
        pivots = torch.empty_like(diagonal)
        pivots[:, 0] = diagonal[:, 0]
        for k in range(1, h):  # eliminate downwards: y_{k-1} leaves row k's equation
            pivots[:, k] = diagonal[:, k] - t * t / pivots[:, k - 1]
            f[:, :, k].addcmul_(f[:, :, k - 1], (t / pivots[:, k - 1]).unsqueeze(1))
        f[:, :, h - 1].div_(pivots[:, h - 1].unsqueeze(1))
        for k in range(h - 2, -1, -1):  # substitute upwards
            f[:, :, k].addcmul_(f[:, :, k + 1], t).div_(pivots[:, k].unsqueeze(1))
        solved = (f @ sines).mul_(2 / (w + 1)).flatten(2)
        hole = ((rows[:, 1:-1] - 1).unsqueeze(2) * width + (cols[:, 1:-1] - 1).unsqueeze(1)
                ).flatten(1).unsqueeze(1).expand(-1, channels, -1)
        if whole:
            return out.flatten(2).scatter_(2, hole, solved).view_as(out)
        out[group] = out[group].flatten(2).scatter(2, hole, solved).view(-1, channels, height,
                                                                           width)
    return out


def _erode(region: Tensor) -> Tensor:
    """``region (B, H, W)`` bool without the pixels that have a neighbour outside it (or
    outside the image)."""
    padded = F.pad(region, (1, 1, 1, 1), value=False)
    rows = padded[:, :-2] & padded[:, 1:-1] & padded[:, 2:]
    return rows[:, :, :-2] & rows[:, :, 1:-1] & rows[:, :, 2:]


def _hole_depth(missing: Tensor, limit: int) -> Tensor:
    """``(B,)``: per image the largest chessboard distance from a missing pixel to the
    nearest kept one (or the image's edge), counted up to ``limit``; 0 if nothing is missing."""
    depth = torch.zeros(len(missing), dtype=torch.long, device=missing.device)
    region = missing
    for _ in range(limit):
        depth += region.flatten(1).any(1)
        region = _erode(region)
    return depth


def _prefers_sweep(missing: Tensor, channels: int) -> Tensor:
    """``(B,)`` bool: the images that :func:`_row_sweep` likely solves faster than conjugate
    gradients.

    The sweep costs about ``L w^2`` for a window of its holes with long side ``L`` and short
    side ``w``, once for all channels; conjugate gradients costs ``C H W`` per iteration, and
    its iterations grow with the holes' depth ``d`` (how far the deepest missing pixel is
    from a kept one). Measured on this project's CPU (experiments/bench/road.py) the two are
    equal near ``0.6 L w^2 = C H W d``: blocks and large clustered holes go to the sweep,
    scattered pixels and MoRF's ragged holes (``d`` of 1 to 6 on 32 × 32) to conjugate
    gradients. An image with nothing missing, or nothing kept, goes to conjugate gradients,
    which returns it at once.
    """
    height, width = missing.shape[1:]
    sides = torch.stack([(last - first + 1).clamp_min(0) for first, last in
                         (_bounds(missing, 2), _bounds(missing, 1))])
    sweep_cost = 3 * sides.amax(0) * sides.amin(0) ** 2
    deep_enough = sweep_cost // (5 * channels * height * width) + 1  # the depth where it wins
    limit = int(deep_enough.amax().clamp(max=(min(height, width) + 1) // 2))
    anything = missing.flatten(1)
    return ((_hole_depth(missing, limit) >= deep_enough) & anything.any(1)
            & ~anything.all(1))


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

    Images whose holes fit a small window or are wide are solved exactly
    (:func:`_row_sweep`), the others by conjugate gradients to ``tol`` (see the module
    docstring for why).

    Args:
        images: ``(B, C, H, W)`` values; those at ``missing`` pixels are ignored.
        missing: ``(B, H, W)`` bool, the pixels to impute.
        tol: conjugate gradients stops when every ``(image, channel)`` system's residual
            is at most ``tol`` times its right-hand side's (2-norms, in float64).
        max_iter: at most this many conjugate-gradient iterations in all its float32
            rounds (default ``4 H W``).
    Returns:
        ``(B, C, H, W)`` float64: kept pixels unchanged, missing ones imputed. An image with
        no kept pixel has nothing to average and gets 0 there (the reference's matrix is
        singular then).
    """
    with one_cpu_thread(images.device):
        return _imputation(images, missing, tol, max_iter)


def _imputation(images: Tensor, missing: Tensor, tol: float, max_iter: int | None) -> Tensor:
    """:func:`linear_imputation`'s body: each image to its solver."""
    images = images.to(torch.float64)
    across, down = _solid_rectangles(missing)
    sweep = _prefers_sweep(missing, images.shape[1]) & ~across & ~down
    solvers = (
        (across, _rectangles),
        (down, lambda x, m: _rectangles(x.transpose(2, 3), m.transpose(1, 2)).transpose(2, 3)),
        (sweep, _direct),
        (~(across | down | sweep), lambda x, m: _conjugate_gradients(x, m, tol, max_iter)),
    )
    out = torch.empty_like(images)
    for chosen, solve in solvers:
        if bool(chosen.all()):
            return solve(images, missing)
        if bool(chosen.any()):
            out[chosen] = solve(images[chosen], missing[chosen])
    return out


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
