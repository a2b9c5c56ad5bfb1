"""The synthetic time-series interpretability benchmark of Ismail et al. (NeurIPS 2020).

Every sample is a ``(T, F)`` series (T = F = 50 by default) of a background *process* with
one informative *box* of h time steps × w features shifted by ±1; the box's place and size
follow the *layout* (docs/paper.md §5). The truth is known, so saliency can be scored
against it. 10 layouts × 7 processes = 70 datasets, named ``<layout>_<process>``.

Everything is drawn with seeded ``torch.Generator``s, whole splits at once: the train split,
the test split and the no-box background sample (masked accuracy) each have their own stream,
derived from the seed and the dataset's name. Inputs are min-max scaled per cell with the
training split's extremes, as the benchmark does. ``cached_dataset`` stores the result
under a key of every setting, so the same settings give the same tensors without redrawing.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import astuple, dataclass
from pathlib import Path

import torch
from torch import Tensor

from sgt.checks import check_choice, check_int
from sgt.data.cache import cached_split, fingerprint
from sgt.registry import Registry

REFERENCE = 50  # the benchmark's T = F = 50: layouts are given at this size and scaled
MIN_SIZE = 10  # every layout's box still fits (and moves) from 10 steps/features up
GENERATOR_VERSION = 1  # part of the cache key: bump when a drawn value changes

# -- layouts: where the informative box lies --------------------------------------------


@dataclass(frozen=True)
class Layout:
    """A box of ``height`` time steps × ``width`` features, given at the 50 × 50 reference.

    Attributes:
        start: fixed ``(t0, f0)``; ``None`` draws both per sample, uniform over the
            positions that leave one step spare (numpy ``randint(T - h)``, as the benchmark).
        class_axis: positional layouts: the axis (0 time, 1 feature) whose start encodes
            the class (class 1 at 1, class 0 at ``size - extent - 1``, i.e. 29); the other
            axis is random and both classes get +1.
    """

    height: int
    width: int
    start: tuple[int, int] | None = None
    class_axis: int | None = None


# docs/paper.md §5's table. PositionalTime fixes the feature start per class and
# PositionalFeature the time start (the benchmark's "PostionalTime"/FreezeType "Feature").
LAYOUTS: dict[str, Layout] = {
    "Middle": Layout(30, 30, (10, 10)),
    "SmallMiddle": Layout(14, 14, (18, 18)),
    "Moving_Middle": Layout(30, 30),
    "Moving_SmallMiddle": Layout(15, 15),
    "RareTime": Layout(6, 40, (22, 5)),
    "Moving_RareTime": Layout(6, 40),
    "RareFeature": Layout(40, 6, (5, 22)),
    "Moving_RareFeature": Layout(40, 6),
    "PositionalTime": Layout(20, 20, class_axis=1),
    "PositionalFeature": Layout(20, 20, class_axis=0),
}


def _scaled(value: int, size: int) -> int:
    """A reference length at ``size`` (half rounds up, at least 1); exact at 50."""
    return max(1, math.floor(value * size / REFERENCE + 0.5))


def sample_boxes(layout: Layout, labels: Tensor, time_steps: int, num_features: int,
                 generator: torch.Generator) -> Tensor:
    """``(N, 4)`` long boxes ``(t_start, t_end, f_start, f_end)``, ends exclusive."""
    n = labels.shape[0]
    sizes = (time_steps, num_features)
    extents = (_scaled(layout.height, time_steps), _scaled(layout.width, num_features))
    starts = []
    for axis, (size, extent) in enumerate(zip(sizes, extents, strict=True)):
        if layout.class_axis == axis:
            start = torch.where(labels == 1, 1, size - extent - 1)
        elif layout.start is not None:
            start = torch.full((n,), min(_scaled(layout.start[axis], size), size - extent))
        else:
            start = torch.randint(size - extent, (n,), generator=generator)
        starts.append(start)
    (t0, f0), (h, w) = starts, extents
    return torch.stack([t0, t0 + h, f0, f0 + w], dim=1)


def box_mask(boxes: Tensor, time_steps: int, num_features: int) -> Tensor:
    """``(N, T, F)`` bool: the cells inside each sample's box."""
    t = torch.arange(time_steps, device=boxes.device)[None, :, None]
    f = torch.arange(num_features, device=boxes.device)[None, None, :]
    b = boxes[:, :, None, None]  # (N, 4, 1, 1)
    return (t >= b[:, 0]) & (t < b[:, 1]) & (f >= b[:, 2]) & (f < b[:, 3])


# -- background processes ---------------------------------------------------------------

Signal = Callable[[int, int, int, torch.Generator], Tensor]  # (N, T, F) -> noiseless float64


@dataclass(frozen=True)
class Process:
    """A background: a noiseless ``signal(N, T, F, generator)`` plus white noise."""

    signal: Signal
    noise_std: float = 0.3  # the benchmark's GaussianNoise(std=0.3), on by default


PROCESSES: Registry[Process] = Registry("background process")


def process(name: str, noise_std: float = 0.3) -> Callable[[Signal], Signal]:
    """Register ``signal`` as the background process ``name``."""

    def add(signal: Signal) -> Signal:
        PROCESSES.register(name)(Process(signal, noise_std))
        return signal

    return add


def irregular_times(n: int, time_steps: int, generator: torch.Generator,
                    stop: float = 20.0) -> Tensor:
    """``(N, T)`` sorted time stamps, one grid per sample (timesynth's irregular sampler):
    keep a random half of ``2T`` equispaced points on ``[0, stop]``, jitter each by
    N(0, resolution²) with resolution = stop / 2T, sort again."""
    points = 2 * time_steps
    grid = torch.linspace(0.0, stop, points, dtype=torch.float64)
    kept = torch.rand(n, points, generator=generator).argsort(1)[:, :time_steps].sort(1).values
    jitter = (stop / points) * torch.randn(n, time_steps, generator=generator,
                                           dtype=torch.float64)
    return (grid[kept] + jitter).sort(1).values


def linear_recurrence(log_decay: Tensor, innovations: Tensor) -> Tensor:
    """``x_t = a_t x_{t-1} + e_t`` (``x_{-1} = 0``) for every sample and feature at once.

    Args:
        log_decay: ``(N, T)`` (or ``(1, T)`` shared) cumulative ``Σ_{r≤t} log a_r``, up to
            an offset per sample.
        innovations: ``(N, T, F)`` the ``e_t``.
    The solution ``x_t = Σ_{s≤t} (Π_{s<r≤t} a_r) e_s`` is one causal kernel matmul.
    """
    steps = log_decay.shape[1]
    causal = torch.ones(steps, steps, dtype=torch.bool).tril()
    diff = log_decay[:, :, None] - log_decay[:, None, :]  # (N, T, T): t minus s
    kernel = torch.where(causal, diff, -math.inf).exp()
    return kernel @ innovations


def _randn(n: int, time_steps: int, num_features: int, generator: torch.Generator) -> Tensor:
    return torch.randn(n, time_steps, num_features, generator=generator, dtype=torch.float64)


@process("Gaussian", noise_std=1.0)
def gaussian(n: int, time_steps: int, num_features: int, generator: torch.Generator) -> Tensor:
    """The benchmark's "Box": i.i.d. N(0, 1) cells (all of it is the noise). Its box cells
    are redrawn from N(±1, 1) there, which has the same law as adding ±1 here."""
    return torch.zeros(n, time_steps, num_features, dtype=torch.float64)


@process("Harmonic")
def harmonic(n: int, time_steps: int, num_features: int, generator: torch.Generator) -> Tensor:
    """sin(2π · 2 · t), amplitude 1, on the sample's irregular grid (all features alike)."""
    t = irregular_times(n, time_steps, generator)
    return torch.sin(2 * math.pi * 2.0 * t)[:, :, None].expand(n, time_steps, num_features)


@process("GaussianProcess")
def gaussian_process(n: int, time_steps: int, num_features: int,
                     generator: torch.Generator) -> Tensor:
    """Matern ν = 3/2 (lengthscale 1, variance 1, mean 0): k(r) = (1 + √3 r) e^{−√3 r}; one
    covariance per sample's grid, an independent draw per feature. Sampled through a
    Cholesky factor with 1e-9 on the diagonal (timesynth adds 1e-12 and uses numpy's SVD):
    that keeps nearly equal time stamps factorable and is far below the 0.3 noise."""
    t = irregular_times(n, time_steps, generator)
    r = math.sqrt(3.0) * (t[:, :, None] - t[:, None, :]).abs()  # (N, T, T)
    cov = (1 + r) * torch.exp(-r) + 1e-9 * torch.eye(time_steps, dtype=torch.float64)
    root = torch.linalg.cholesky(cov)  # root @ root.T = cov
    return root @ _randn(n, time_steps, num_features, generator)


@process("PseudoPeriodic")
def pseudo_periodic(n: int, time_steps: int, num_features: int,
                    generator: torch.Generator) -> Tensor:
    """A · sin(f · t) with A ~ N(1, 0.5²) and f ~ N(2, 0.01²) redrawn at every cell (no 2π,
    as timesynth's PseudoPeriodic)."""
    t = irregular_times(n, time_steps, generator)[:, :, None]
    freq = 2.0 + 0.01 * _randn(n, time_steps, num_features, generator)
    amplitude = 1.0 + 0.5 * _randn(n, time_steps, num_features, generator)
    return amplitude * torch.sin(freq * t)


@process("AutoRegressive")
def auto_regressive(n: int, time_steps: int, num_features: int,
                    generator: torch.Generator) -> Tensor:
    """AR(1), φ = 0.9, innovations N(0, 0.5²), from 0; one step per sample index (the time
    stamps are ignored, as timesynth does)."""
    steps = torch.arange(time_steps, dtype=torch.float64)[None]  # (1, T): one kernel for all
    return linear_recurrence(steps * math.log(0.9),
                             0.5 * _randn(n, time_steps, num_features, generator))


@process("CAR")
def continuous_ar(n: int, time_steps: int, num_features: int,
                  generator: torch.Generator) -> Tensor:
    """Continuous-time AR(1) on the irregular grid, φ = 0.9, σ = 0.01, x_0 = 0.01:
    x_t = φ^Δt · x_{t−1} + σ √(1 − φ^Δt) · ε_t with Δt the gap between time stamps."""
    phi, sigma, start = 0.9, 0.01, 0.01
    t = irregular_times(n, time_steps, generator)
    gap = torch.diff(t, dim=1, prepend=t[:, :1])  # (N, T); the first step has no gap
    innovations = sigma * (1 - phi ** gap).sqrt()[:, :, None] * _randn(
        n, time_steps, num_features, generator)
    innovations[:, 0] = start
    return linear_recurrence(t * math.log(phi), innovations)


NARMA_SEED = 42  # timesynth's fixed internal seed: one signal for every feature and sample


@process("NARMA")
def narma(n: int, time_steps: int, num_features: int, generator: torch.Generator,
          order: int = 10, coefficients: tuple[float, ...] = (0.3, 0.05, 1.5, 0.1)) -> Tensor:
    """NARMA of order 10 (timesynth's defaults), from zeros, u ~ U(0, 0.5) drawn from a fixed
    seed, so the noiseless signal is the same for every feature and sample:
    y(k+1) = a0 y(k) + a1 y(k) Σ_{i<n} y(k−i) + a2 u(k−n+1) u(k) + a3.
    timesynth's code sums an empty slice (dropping the a1 term); this is the formula it
    documents. The recurrence runs over the T time steps only, on plain floats."""
    a0, a1, a2, a3 = coefficients
    u = (0.5 * torch.rand(order + time_steps, dtype=torch.float64,
                          generator=torch.Generator().manual_seed(NARMA_SEED))).tolist()
    y = [0.0] * order  # y(j) at list index j; u(j) likewise
    for j in range(order, order + time_steps):
        y.append(a0 * y[-1] + a1 * y[-1] * sum(y[-order:]) + a2 * u[j - order] * u[j - 1] + a3)
    signal = torch.tensor(y[order:], dtype=torch.float64)  # (T,)
    return signal[None, :, None].expand(n, time_steps, num_features)


def background(name: str, n: int, time_steps: int, num_features: int,
               generator: torch.Generator) -> Tensor:
    """``(N, T, F)`` float64 samples of process ``name`` without a box: signal + noise."""
    proc = PROCESSES.get(name)
    signal = proc.signal(n, time_steps, num_features, generator)
    return signal + proc.noise_std * _randn(n, time_steps, num_features, generator)


# -- datasets ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticSpec:
    """Everything that decides a dataset's tensors (the cache key).

    Args:
        layout: a :data:`LAYOUTS` name. process: a :data:`PROCESSES` name.
        num_train, num_test: samples per split (the benchmark: 1000 / 100).
        time_steps, num_features: T and F (at least 10; the benchmark: 50 × 50).
        seed: the generator seed (independent of the run's seed).
    """

    layout: str = "Middle"
    process: str = "Gaussian"
    num_train: int = 1000
    num_test: int = 100
    time_steps: int = 50
    num_features: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice(self.layout, "dataset.layout", list(LAYOUTS))
        check_choice(self.process, "dataset.process", PROCESSES.names())
        check_int(self.num_train, "dataset.num_train")
        check_int(self.num_test, "dataset.num_test")
        check_int(self.time_steps, "dataset.time_steps", low=MIN_SIZE)
        check_int(self.num_features, "dataset.num_features", low=MIN_SIZE)
        check_int(self.seed, "dataset.data_seed", low=0)

    @property
    def name(self) -> str:
        return f"{self.layout}_{self.process}"

    def generator(self, stream: str) -> torch.Generator:
        """The seeded stream ``stream`` (train, test, background) of this dataset."""
        key = zlib.crc32(f"{self.name}/{stream}".encode())
        return torch.Generator().manual_seed((self.seed * 1_000_003 + key) % 2**63)


@dataclass
class SyntheticSplit:
    """One split: scaled inputs ``x (N, T, F)`` float32, labels ``y (N,)``, ``boxes (N, 4)``
    ``(t_start, t_end, f_start, f_end)`` with exclusive ends."""

    x: Tensor
    y: Tensor
    boxes: Tensor

    def truth(self) -> Tensor:
        """``(N, T, F)`` bool ground truth: the informative box of every sample."""
        return box_mask(self.boxes, self.x.shape[1], self.x.shape[2])


@dataclass
class SyntheticDataset:
    """A generated dataset: train and test splits and the scaled background ``(T, F)``."""

    train: SyntheticSplit
    test: SyntheticSplit
    background: Tensor

    def tensors(self) -> tuple[Tensor, ...]:
        """Flat tuple for the cache file (inverse: :meth:`from_tensors`)."""
        train, test = self.train, self.test
        return (train.x, train.y, train.boxes, test.x, test.y, test.boxes, self.background)

    @classmethod
    def from_tensors(cls, tensors: tuple[Tensor, ...]) -> SyntheticDataset:
        return cls(SyntheticSplit(*tensors[:3]), SyntheticSplit(*tensors[3:6]), tensors[6])


def _raw_split(spec: SyntheticSpec, n: int, stream: str) -> tuple[Tensor, Tensor, Tensor]:
    """Unscaled ``(x float64, y, boxes)``: a fair coin per label, then boxes, background."""
    g = spec.generator(stream)
    layout, size = LAYOUTS[spec.layout], (spec.time_steps, spec.num_features)
    y = torch.randint(2, (n,), generator=g)
    boxes = sample_boxes(layout, y, *size, generator=g)
    x = background(spec.process, n, *size, generator=g)
    # class 1 -> +1, class 0 -> −1; positional layouts encode the class by place: +1 for both
    shift = torch.ones(n, dtype=torch.float64) if layout.class_axis is not None else 2.0 * y - 1
    return x + shift[:, None, None] * box_mask(boxes, *size), y, boxes


def generate(spec: SyntheticSpec) -> SyntheticDataset:
    """Draw ``spec``'s dataset and scale every cell to [0, 1] over the training split
    (sklearn ``MinMaxScaler`` on the flattened samples; a constant cell is only shifted)."""
    train_x, train_y, train_boxes = _raw_split(spec, spec.num_train, "train")
    test_x, test_y, test_boxes = _raw_split(spec, spec.num_test, "test")
    noise = background(spec.process, 1, spec.time_steps, spec.num_features,
                       spec.generator("background"))[0]
    low, high = train_x.amin(0), train_x.amax(0)  # (T, F) per cell
    span = torch.where(high > low, high - low, 1.0)

    def scale(x: Tensor) -> Tensor:
        return ((x - low) / span).float()

    return SyntheticDataset(SyntheticSplit(scale(train_x), train_y, train_boxes),
                            SyntheticSplit(scale(test_x), test_y, test_boxes), scale(noise))


def cached_dataset(spec: SyntheticSpec, cache_dir: str | Path | None) -> SyntheticDataset:
    """:func:`generate`, stored under ``cache_dir`` (``None``: no cache) keyed by ``spec``."""
    path = None
    if cache_dir is not None:
        key = fingerprint([], GENERATOR_VERSION, *astuple(spec))
        path = Path(cache_dir) / f"timeseries-{spec.name}-{key}.pt"
    return SyntheticDataset.from_tensors(cached_split(path, lambda: generate(spec).tensors()))


__all__ = [
    "LAYOUTS",
    "PROCESSES",
    "Layout",
    "Process",
    "SyntheticDataset",
    "SyntheticSpec",
    "SyntheticSplit",
    "background",
    "box_mask",
    "cached_dataset",
    "generate",
    "irregular_times",
    "linear_recurrence",
    "sample_boxes",
]
