"""ROAD's fill against the reference's per-image sparse direct solve, and its throughput.

Per mask shape (50 % and 90 % scattered, one 25 % square, real MoRF masks of a trained
model, on real CIFAR-10 test images; and one 25 % square on four of them upsampled to
224 × 224): the time of :func:`sgt.imputation.linear_imputation`
for the batch, the time of the reference's way (``NoisyLinearImputer``: per image, assemble
the sparse system and ``scipy.sparse.linalg.spsolve`` it, in a Python loop; the assembly
here is vectorised numpy, faster than the reference's ``lil_matrix``, so the baseline is
the fairest one), their ratio (``x``: how many times faster ours is) with the largest
``|difference|`` in its note. The two are timed in alternating rounds, so a busy machine
slows both alike. Then the old ``benchmark_road`` figures: seconds per 10 000 images of the
``noisy_linear`` fill, scattered and clustered masks, CIFAR-10- and MNIST-sized.

The MoRF masks come from a small CNN trained in-process for a few hundred steps on the
first CIFAR-10 training sheet; its gradient's signed channel sum ranks the pixels as ROAD
does, and image ``i`` loses the top ``10 (1 + i mod 9) %``: spatially coherent holes, as
MoRF makes on real images. Without the CIFAR-10 PNGs in ``SGT_DATA_DIR``, the images are
uniform noise and the model is untrained (each figure's note says so).

Without scipy, the section yields every figure that needs none, then raises
:class:`ModuleNotFoundError` naming the skipped comparison, for the suite to report.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils import benchmark

from experiments.bench.measure import Context, Figure, figure, ratio, time_it
from sgt.data.cifar10 import SHEET_DIR, SHEET_LABELS, decode_sheets, read_labels
from sgt.evaluation.road import reference_scores
from sgt.imputation import NoisyLinearFill, linear_imputation
from sgt.masking import select_features
from sgt.saliency import feature_ranks, most_relevant

SECTION = "road"
SHAPES = ("50 % scattered", "90 % scattered", "one 25 % block", "MoRF masks",
          "224 × 224, one 25 % block")
LARGE = 224  # the side of the last shape's images: ImageNet-sized, upsampled CIFAR-10
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
# (the reference's weights in twelfths) row offset, column offset -> weight
OFFSETS = ((1, 1, 1), (0, 1, 2), (-1, 1, 1), (1, -1, 1), (0, -1, 2), (-1, -1, 1), (1, 0, 2),
           (-1, 0, 2))
THROUGHPUT_SIZES = {"cifar10": (3, 32, 32), "mnist": (1, 28, 28)}


def cifar_sheet(index: int) -> tuple[Tensor, Tensor] | None:
    """``(images (1000, 3, 32, 32) in [0, 1], labels)`` of ConvNetJS sheet ``index`` (50: the
    first 1000 test images), or ``None`` when the data folder lacks it."""
    folder = Path(os.environ.get("SGT_DATA_DIR", "data")) / SHEET_DIR
    sheet = folder / f"cifar10_batch_{index}.png"
    if not sheet.is_file() or not (folder / SHEET_LABELS).is_file():
        return None
    labels = read_labels(folder / SHEET_LABELS, 1000 * (index + 1))[1000 * index:]
    return decode_sheets([sheet]).float() / 255, labels


def normalise(x: Tensor) -> Tensor:
    return (x - x.new_tensor(MEAN)[:, None, None]) / x.new_tensor(STD)[:, None, None]


def small_cnn() -> nn.Module:
    """A CNN that trains in seconds on a CPU: two conv-pool stages and a linear head."""
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 8 * 8, 10))


def morf_masks(images: Tensor, labels: Tensor, steps: int, device: torch.device) -> Tensor:
    """``(B, 32, 32)`` bool: image ``i``'s top ``10 (1 + i mod 9) %`` pixels by the gradient
    of a small CNN trained ``steps`` steps on sheet 0, ranked as ROAD ranks them."""
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = small_cnn().to(device)
    train = cifar_sheet(0)
    if train is not None and steps:
        x, y = normalise(train[0]).to(device), train[1].to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
        for _ in range(steps):
            batch = torch.randint(0, len(x), (64,), generator=generator).to(device)
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    z = normalise(images).requires_grad_(True)
    (grad,) = torch.autograd.grad(model(z).gather(1, labels[:, None]).sum(), z)
    scores = grad.sum(1).flatten(1)  # the reference's signed channel sum: (B, H * W)
    keys = torch.randn(scores.shape[1], generator=generator).to(device)
    ranks = feature_ranks(reference_scores(scores, keys), keys)
    by_level = torch.stack([most_relevant(ranks, level / 10) for level in range(1, 10)])
    pick = torch.arange(len(images), device=device)
    return by_level[pick % 9, pick].view(-1, *images.shape[2:])  # (9, B, N) -> (B, H, W)


def masks(shape: str, images: Tensor, labels: Tensor, steps: int) -> Tensor:
    """``(B, H, W)`` bool, the pixels to remove for one of :data:`SHAPES`."""
    batch, _, height, width = images.shape
    generator = torch.Generator().manual_seed(1)
    if shape.endswith("scattered"):
        fraction = 0.5 if shape.startswith("50") else 0.9
        scores = torch.rand(batch, height * width, generator=generator)
        return select_features(scores, fraction, lowest=False).view(batch, height, width
                                                                    ).to(images.device)
    if shape.endswith("one 25 % block"):  # a square of half the side at a random place
        side_h, side_w = height // 2, width // 2
        top = torch.randint(0, height - side_h + 1, (batch, 1, 1), generator=generator)
        left = torch.randint(0, width - side_w + 1, (batch, 1, 1), generator=generator)
        rows, cols = torch.arange(height)[:, None], torch.arange(width)
        return ((rows >= top) & (rows < top + side_h) & (cols >= left)
                & (cols < left + side_w)).to(images.device)
    return morf_masks(images, labels, steps, images.device)


def spsolve_one(image: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """The reference's system for one image ``(C, H, W)`` and ``missing (H, W)``, built as
    its ``setup_sparse_system`` (vectorised) and solved by ``spsolve``: the image imputed."""
    import scipy.sparse
    import scipy.sparse.linalg

    channels, height, width = image.shape
    flat, miss = image.reshape(channels, -1), missing.reshape(-1)
    unknowns = np.flatnonzero(miss)
    n = len(unknowns)
    variable = np.full(miss.size, -1)
    variable[unknowns] = np.arange(n)
    row, col = np.divmod(unknowns, width)
    rows, cols, values = [np.arange(n)], [np.arange(n)], []
    diagonal = np.zeros(n)
    b = np.zeros((n, channels))
    for dr, dc, weight in OFFSETS:
        r, c = row + dr, col + dc
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        diagonal += weight * inside
        i, j = np.flatnonzero(inside), (r * width + c)[inside]
        unknown = miss[j]
        rows.append(i[unknown])
        cols.append(variable[j[unknown]])
        values.append(np.full(int(unknown.sum()), weight / 12))
        b[i[~unknown]] -= weight / 12 * flat[:, j[~unknown]].T
    matrix = scipy.sparse.csc_matrix(
        (np.concatenate([-diagonal / 12, *values]), (np.concatenate(rows),
                                                     np.concatenate(cols))), shape=(n, n))
    out = flat.copy()
    if n:
        out[:, unknowns] = scipy.sparse.linalg.spsolve(matrix, b).reshape(n, channels).T
    return out.reshape(channels, height, width)


def spsolve_all(images: Tensor, missing: Tensor) -> np.ndarray:
    """The reference's loop: one sparse solve per image, on the CPU in float64."""
    x, m = images.double().cpu().numpy(), missing.cpu().numpy()
    return np.stack([spsolve_one(i, k) for i, k in zip(x, m, strict=True)])


def run_time(ctx: Context) -> float:
    """Seconds per timed figure: at most 0.05 when ``quick`` (the test suite's run)."""
    return min(ctx.min_run_time, 0.05) if ctx.quick else ctx.min_run_time


def alternating(fns: list[Callable[[], object]], ctx: Context, rounds: int
                ) -> list[benchmark.Measurement]:
    """Each of ``fns`` timed in ``rounds`` alternating turns (``min_run_time / rounds`` each),
    its blocks merged: a load that comes and goes falls on every contender."""
    turns: list[list[benchmark.Measurement]] = [[] for _ in fns]
    for _ in range(rounds):
        for fn, measured in zip(fns, turns, strict=True):
            measured.append(time_it(fn, run_time(ctx) / rounds, SECTION))
    return [benchmark.Measurement.merge(m)[0] for m in turns]


def comparison(ctx: Context, images: Tensor, labels: Tensor, steps: int, source: str,
               have_scipy: bool) -> Iterator[Figure]:
    """Per mask shape: ours, the per-image ``spsolve`` and their ratio."""
    for shape in SHAPES:
        if ctx.seconds_left() <= 0:
            return
        batch, described = images, f"{len(images)} {source} images"
        if shape.startswith(f"{LARGE} "):  # a few, upsampled: one spsolve takes ~0.1 s
            batch = F.interpolate(images[:1 if ctx.quick else 4], size=(LARGE, LARGE),
                                  mode="bilinear", align_corners=False)
            described = f"{len(batch)} {source} images upsampled to {LARGE} × {LARGE}"
        missing = masks(shape, batch, labels, steps)
        note = (f"{described}, {100 * missing.float().mean():.0f} % removed, "
                + ("one CPU thread each" if images.device.type == "cpu"  # SuperLU is serial
                   else f"ours on {images.device.type}, spsolve on one CPU thread"))
        ours = [lambda batch=batch, missing=missing: linear_imputation(batch, missing)]
        if not have_scipy:
            yield figure(SECTION, f"{shape}: ours", alternating(ours, ctx, 1)[0], note=note)
            continue
        ours_m, ref_m = alternating(
            [*ours, lambda batch=batch, missing=missing: spsolve_all(batch, missing)], ctx,
            1 if ctx.quick else 3)
        diff = np.abs(linear_imputation(batch, missing).cpu().numpy()
                      - spsolve_all(batch, missing)).max()
        yield figure(SECTION, f"{shape}: ours", ours_m, note=note)
        yield figure(SECTION, f"{shape}: spsolve per image", ref_m, note=note)
        yield ratio(SECTION, f"{shape}: ours vs spsolve", ref_m, ours_m,
                    note=f"times faster; max |difference| {diff:.1e}")


def throughput(ctx: Context) -> Iterator[Figure]:
    """Seconds per 10 000 images of the ``noisy_linear`` fill (the old ``benchmark_road``):
    scattered masks, and clustered ones (the top of a smoothed random field)."""
    count = 4 if ctx.quick else (1000 if ctx.device.type == "cuda" else 200)
    fill = NoisyLinearFill()
    for size, (channels, height, width) in THROUGHPUT_SIZES.items():
        for fraction in (0.5, 0.9):
            for layout in ("scattered", "clustered"):
                if ctx.seconds_left() <= 0:
                    return
                generator = torch.Generator(device=ctx.device).manual_seed(0)
                features = torch.rand(count, height * width, channels, generator=generator,
                                      device=ctx.device)
                scores = torch.rand(count, 1, height, width, generator=generator,
                                    device=ctx.device)
                if layout == "clustered":
                    for _ in range(2):
                        scores = F.avg_pool2d(scores, 7, stride=1, padding=3,
                                              count_include_pad=False)
                selected = select_features(scores.flatten(1), fraction, lowest=False)

                def fill_batch(features: Tensor = features, selected: Tensor = selected,
                        grid: tuple[int, int] = (height, width),
                        noise: torch.Generator = generator) -> Tensor:
                    return fill(features, selected=selected, valid=None, generator=noise,
                                grid=grid)

                measured = time_it(fill_batch, run_time(ctx), SECTION)
                yield figure(SECTION, f"imputation per 10 000 {size} images, "
                             f"{100 * fraction:g} % {layout}", measured,
                             scale=10_000 / count, note=f"batches of {count}")


def run(ctx: Context) -> Iterator[Figure]:
    """The section's figures; see the module docstring."""
    try:
        import scipy.sparse.linalg  # noqa: F401
        have_scipy = True
    except ModuleNotFoundError:
        have_scipy = False
    count = 4 if ctx.quick else 100
    test = cifar_sheet(50)
    if test is None:
        generator = torch.Generator().manual_seed(0)
        images, labels = torch.rand(count, 3, 32, 32, generator=generator), torch.zeros(
            count, dtype=torch.long)
        source = "uniform-noise (no CIFAR-10 PNGs)"
    else:
        images, labels = test[0][:count], test[1][:count]
        source = "CIFAR-10 test"
    yield from comparison(ctx, images.to(ctx.device), labels.to(ctx.device),
                          5 if ctx.quick else 200, source, have_scipy)
    yield from throughput(ctx)
    if not have_scipy:
        raise ModuleNotFoundError("scipy is not installed: the ROAD section skipped the "
                                  "per-image spsolve baseline and its ratios "
                                  "(pip install scipy, part of the dev extra)")
