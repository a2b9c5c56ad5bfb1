"""Time a plain training step against the SGT step: ``python -m experiments.benchmark``.

Every variant runs the product's own code (``SaliencyGuidedModule.sgt_forward``, then
backward and an optimizer step, as Lightning's loop does) on the same batches, from the
same initial weights, in one process: plain (k = 0), SGT with eval-mode saliency (the
default), train-mode saliency and the concatenated clean+masked forward. ``paper_code``
is the original implementation's SGT step, reimplemented here for timing only (PAPER.md
§1.2/§1.4): captum saliency moved to the CPU, then a Python loop over samples and
channels with ``.item()`` syncs and numpy random fills copied back to the device.

Examples::

    python -m experiments.benchmark                      # GPU, batch 512, fp32 and bf16
    python -m experiments.benchmark --device cpu --batch-size 32 --iters 3 --precision fp32
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import Tensor, nn

from experiments.runs.files import write_json_atomic
from sgt.models import MNISTNet, resnet18
from sgt.module import SaliencyGuidedModule

MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "mnist_cnn": (MNISTNet, (1, 28, 28)),
    "resnet18": (resnet18, (3, 32, 32)),
}
# Our variants: SaliencyGuidedModule settings. ``paper_code`` is added separately.
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {"k": 0.0},
    "sgt": {"k": 0.5},
    "sgt_train_sal": {"k": 0.5, "saliency_mode": "train"},
    "sgt_concat": {"k": 0.5, "concat_forward": True},
}
PAPER = "paper_code"
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
Step = Callable[[Tensor, Tensor], None]


@dataclass
class Row:
    model: str
    precision: str
    variant: str
    ms_per_step: float
    images_per_s: float
    peak_mem_mb: float | None
    vs_plain: float | None = None
    vs_paper_code: float | None = None


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def module_step(module: SaliencyGuidedModule, device: torch.device, precision: str) -> Step:
    """One training step of the real module: forward under autocast, backward, SGD step."""
    optimizer = torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9)

    def step(x: Tensor, y: Tensor) -> None:
        with autocast(device, precision):
            loss = module.sgt_forward(x, y).objective.loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def paper_code_step(net: nn.Module, device: torch.device, precision: str,
                    k: float = 0.5) -> Step:
    """The original's SGT step (interpretable.py + Helper.py), reimplemented for timing only."""
    from captum.attr import Saliency

    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    saliency = Saliency(net)

    def step(x: Tensor, y: Tensor) -> None:
        data = x.clone().requires_grad_(True)  # the original sets data.requires_grad = True
        net.eval()
        with autocast(device, precision):
            grads = saliency.attribute(data, target=y, abs=False)
        sal = grads.mean(1).detach().cpu()  # (B, H, W), on the host
        net.train()
        masked = data.detach().clone()
        count = max(1, int(sal[0].numel() * k))
        for i in range(len(masked)):  # per-sample loop, as the original
            idx = torch.topk(sal[i].flatten(), count, largest=False).indices
            mask = torch.zeros(sal[i].numel(), dtype=torch.bool)
            mask[idx] = True
            mask = mask.view_as(sal[i]).to(device)
            for c in range(masked.shape[1]):  # per channel: .item() syncs, numpy draws
                lo, hi = masked[i, c].min().item(), masked[i, c].max().item()
                fill = np.random.uniform(lo, hi, size=count)
                masked[i, c][mask] = torch.tensor(fill, dtype=masked.dtype).to(device)
        with autocast(device, precision):
            out, out_masked = net(data), net(masked)
            loss = F.cross_entropy(out, y) + F.kl_div(
                F.log_softmax(out_masked, 1), F.softmax(out, 1), reduction="batchmean")
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_step(step: Step, batches: list[tuple[Tensor, Tensor]], warmup: int, iters: int,
              device: torch.device) -> tuple[float, float | None]:
    """Seconds per step after ``warmup`` steps, and the peak GPU memory in MB."""

    def cycle() -> Iterator[tuple[Tensor, Tensor]]:
        while True:
            yield from batches

    source = cycle()
    for _ in range(warmup):
        step(*next(source))
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(iters):
        step(*next(source))
    synchronize(device)
    seconds = (time.perf_counter() - start) / iters
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return seconds, peak


def benchmark_model(name: str, args: argparse.Namespace, device: torch.device,
                    console: Console) -> list[Row]:
    build, shape = MODELS[name]
    torch.manual_seed(0)
    initial = build().to(device)
    g = torch.Generator(device=device).manual_seed(0)
    batches = [(torch.randn(args.batch_size, *shape, device=device, generator=g),
                torch.randint(0, 10, (args.batch_size,), device=device, generator=g))
               for _ in range(2)]
    rows = []
    for precision in args.precision:
        for variant in args.variants:
            net = copy.deepcopy(initial)
            if variant == PAPER:
                step = paper_code_step(net, device, precision)
            else:
                module = SaliencyGuidedModule(net, num_classes=10, **VARIANTS[variant],
                                              channels_last=args.channels_last,
                                              compile=args.compile)
                module.configure_model()
                step = module_step(module, device, precision)
            console.log(f"{name} {precision} {variant}")
            seconds, peak = time_step(step, batches, args.warmup, args.iters, device)
            rows.append(Row(name, precision, variant, 1000 * seconds,
                            args.batch_size / seconds, peak))
    return rows


def add_ratios(rows: list[Row]) -> None:
    """``vs_plain``: time / plain step's; ``vs_paper_code``: SGT time / paper-code step's."""
    ms = {(r.model, r.precision, r.variant): r.ms_per_step for r in rows}
    for r in rows:
        plain = ms.get((r.model, r.precision, "plain"))
        paper = ms.get((r.model, r.precision, PAPER))
        r.vs_plain = r.ms_per_step / plain if plain else None
        if paper and r.variant not in ("plain", PAPER):
            r.vs_paper_code = r.ms_per_step / paper


def render(rows: list[Row], title: str) -> Table:
    table = Table(title=title)
    for column in ("model", "precision", "variant", "ms/step", "images/s", "peak MB",
                   "× plain", "÷ paper-code"):
        table.add_column(column, justify="left" if column in ("model", "variant") else "right")

    def fmt(value: float | None, spec: str) -> str:
        return "–" if value is None else format(value, spec)

    for r in rows:
        table.add_row(r.model, r.precision, r.variant, fmt(r.ms_per_step, ".1f"),
                      fmt(r.images_per_s, ",.0f"), fmt(r.peak_mem_mb, ",.0f"),
                      fmt(r.vs_plain, ".2f"), fmt(r.vs_paper_code, ".2f"))
    return table


def csv_list(allowed: list[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"{bad or text!r}: choose from {allowed}")
        return items

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    variants = [*VARIANTS, PAPER]
    parser.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda")
    parser.add_argument("--models", type=csv_list(list(MODELS)), default=list(MODELS))
    parser.add_argument("--variants", type=csv_list(variants), default=variants)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--iters", type=int, default=20, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--precision", type=csv_list(list(PRECISIONS)),
                        default=list(PRECISIONS), help="fp32,bf16 (bf16 = autocast)")
    parser.add_argument("--compile", action="store_true", help="torch.compile our variants")
    parser.add_argument("--channels-last", action="store_true",
                        help="channels-last weights for our variants")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON file (default outputs/benchmark/<time>.json)")
    args = parser.parse_args(argv)
    for key in ("batch_size", "iters"):
        if getattr(args, key) <= 0:
            parser.error(f"--{key.replace('_', '-')} must be positive")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    return args


def main(argv: list[str] | None = None) -> list[Row]:
    args = parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    console = Console(width=None if sys.stdout.isatty() else 120)
    rows = [row for name in args.models for row in benchmark_model(name, args, device, console)]
    add_ratios(rows)
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    title = (f"training step, batch {args.batch_size}, {hardware}, torch {torch.__version__}"
             f"{', compiled' if args.compile else ''}"
             f"{', channels-last' if args.channels_last else ''}")
    console.print(render(rows, title))
    out = args.out or Path("outputs/benchmark") / f"{datetime.now():%Y-%m-%d_%H-%M-%S}.json"
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    write_json_atomic(out, {"hardware": hardware, "torch": torch.__version__,
                            "settings": settings, "rows": [asdict(r) for r in rows]})
    console.print(f"written {out}")
    return rows


if __name__ == "__main__":
    main()
