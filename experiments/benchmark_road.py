"""Time ROAD's noisy linear imputation: ``python -m experiments.benchmark_road``.

Seconds per 10 000 images of the ``noisy_linear`` fill (:mod:`sgt.imputation`) for
CIFAR-10- and MNIST-sized images at given removed fractions, with two mask layouts:
``scattered`` (pixels removed independently, like a noisy saliency map) and ``clustered``
(the top of a smooth random field, like a map that marks an object: larger holes, which
need more solver iterations). Images are uniform noise; the solver's iteration count
depends on the holes, not on the values.

Besides wall time, the table gives the process's CPU time (all threads): on a shared CPU
the wall time also counts other jobs' turns, the CPU time only this one's work.

Examples::

    python -m experiments.benchmark_road                         # GPU if any, 10 000 images
    python -m experiments.benchmark_road --device cpu --count 500 --batch-size 250
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import Tensor

from sgt.imputation import NoisyLinearFill
from sgt.masking import select_features

SIZES: dict[str, tuple[int, int, int]] = {"cifar10": (3, 32, 32), "mnist": (1, 28, 28)}
LAYOUTS = ("scattered", "clustered")


@dataclass
class Row:
    size: str
    layout: str
    removed: float
    images: int
    seconds: float
    cpu_seconds: float  # this process's CPU time, all threads

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds

    @property
    def s_per_10k(self) -> float:
        return 10_000 * self.seconds / self.images

    @property
    def cpu_s_per_10k(self) -> float:
        return 10_000 * self.cpu_seconds / self.images


def removal_masks(count: int, grid: tuple[int, int], fraction: float, layout: str,
                  generator: torch.Generator) -> Tensor:
    """``(count, H * W)`` bool: the top ``fraction`` of random (``clustered``: smoothed)
    scores, selected as the evaluation selects them."""
    device = generator.device
    scores = torch.rand(count, 1, *grid, generator=generator, device=device)
    if layout == "clustered":
        for _ in range(2):
            scores = F.avg_pool2d(scores, 7, stride=1, padding=3, count_include_pad=False)
    return select_features(scores.flatten(1), fraction, lowest=False)


def time_imputation(size: str, fraction: float, layout: str, count: int, batch_size: int,
                    device: torch.device, seed: int = 0) -> Row:
    """Impute ``count`` images, ``batch_size`` per fill call (after one untimed call)."""
    channels, height, width = SIZES[size]
    generator = torch.Generator(device=device).manual_seed(seed)
    fill = NoisyLinearFill()
    batches = []
    for start in range(0, count, batch_size):
        n = min(batch_size, count - start)
        features = torch.rand(n, height * width, channels, generator=generator, device=device)
        batches.append((features, removal_masks(n, (height, width), fraction, layout,
                                                generator)))

    def run(features: Tensor, selected: Tensor) -> Tensor:
        return fill(features, selected=selected, valid=None, generator=generator,
                    grid=(height, width))

    run(*batches[0])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    for features, selected in batches:
        run(features, selected)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return Row(size, layout, fraction, count, time.perf_counter() - start,
               time.process_time() - cpu_start)


def table(rows: Sequence[Row], device: torch.device) -> Table:
    out = Table(title=f"noisy_linear imputation on {device}")
    for column in ("size", "masks", "removed", "images", "images/s", "s per 10k",
                   "CPU s per 10k"):
        out.add_column(column, justify="left" if column in ("size", "masks") else "right")
    for r in rows:
        out.add_row(r.size, r.layout, f"{100 * r.removed:g} %", str(r.images),
                    f"{r.images_per_s:,.0f}", f"{r.s_per_10k:.2f}", f"{r.cpu_s_per_10k:.2f}")
    return out


def main(argv: Sequence[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--count", type=int, default=10_000, help="images per setting")
    parser.add_argument("--batch-size", type=int, default=1000, help="images per fill call")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.5, 0.9])
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS))
    args = parser.parse_args(argv)
    if args.count < 1 or args.batch_size < 1:
        parser.error(f"--count and --batch-size must be positive, got {args.count} and "
                     f"{args.batch_size}")
    device = torch.device(args.device)
    rows = [time_imputation(size, fraction, layout, args.count, args.batch_size, device)
            for size in args.sizes for fraction in args.fractions for layout in args.layouts]
    Console().print(table(rows, device))
    return rows


if __name__ == "__main__":
    main()
