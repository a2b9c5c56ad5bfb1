"""Time the SGT step, the training loop around it, start-up and evaluation:
``python -m experiments.benchmark [step|loop|startup|eval] [options]``.

Every model, optimizer and setting comes from the real configs (``train.yaml`` composed with
``dataset=<name>`` and its recipe, built with :func:`experiments.runs.build.build`), on the
dataset's real data when it is there, else random data of its shape (``--data``).

- ``step`` (default): one training step of the real module (``sgt_forward``, backward, the
  recipe's optimizer), plain (k = 0) against SGT variants, and ``paper_code``: the original
  implementation's SGT step, reimplemented for timing only (docs/paper.md §1.2/§1.4): captum
  saliency moved to the CPU, then a Python loop over samples and channels with ``.item()``
  syncs and numpy random fills copied back to the device.
- ``loop``: the time per step inside the real ``Trainer.fit`` (callbacks, loggers, progress
  bar, data loading) next to the bare step of the same config: loop ÷ step.
- ``startup``: a real ``python -m experiments.train … `` command up to its first step, split
  into imports, config/model/data, Lightning's set-up and the first step; plus in-process
  phase timings of the same config.
- ``eval``: the wall time of ``experiments.evaluate``'s work on a run, by phase (data, model,
  each method's attributions, the evaluation's forwards, examples, figures, writing).

Examples::

    python -m experiments.benchmark                                  # GPU, batch 512, fp32 + bf16
    python -m experiments.benchmark --device cpu --batch-size 32 --iters 3 --precision fp32
    python -m experiments.benchmark loop --datasets mnist -o sgt.compile=reduce-overhead
    python -m experiments.benchmark startup --datasets mnist,cifar10
    python -m experiments.benchmark eval --run outputs/mnist/runs/<time>
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock

import hydra
import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks.progress import ProgressBar
from rich.console import Console
from rich.table import Table
from torch import Tensor, nn

from experiments.runs import evaluation as run_evaluation
from experiments.runs.build import build, instantiate_list
from experiments.runs.compose import compose_config
from experiments.runs.files import resolve_run, write_json_atomic
from experiments.runs.timing import Phases, StepWindow, import_seconds, synchronize
from sgt.data import InMemoryDataModule
from sgt.errors import DatasetNotFoundError, SettingError
from sgt.module import SaliencyGuidedModule
from sgt.saliency import Explainer

ROOT = Path(__file__).resolve().parents[1]
MODES = ("step", "loop", "startup", "eval")
DEFAULT_DATASETS = {"step": ["mnist", "cifar10"], "loop": ["mnist", "cifar10"],
                    "startup": ["mnist"], "eval": ["mnist"]}
# SGT variants: overrides of the composed config. ``paper_code`` is added separately.
VARIANTS: dict[str, list[str]] = {
    "plain": ["sgt.k=0"],
    "sgt": ["sgt.k=0.5"],
    "sgt_train_sal": ["sgt.k=0.5", "sgt.saliency_mode=train"],
    "sgt_concat": ["sgt.k=0.5", "sgt.concat_forward=true", "sgt.masked_bn_stats=true"],
}
LOOP_VARIANTS = ["plain", "sgt"]
PAPER = "paper_code"
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
TRAINER_PRECISIONS = {"32-true": "fp32", "32": "fp32", "bf16-mixed": "bf16",
                      "16-mixed": "fp16"}
# Stored input shapes of random stand-in data (uint8 images), when the real data is absent.
SYNTHETIC_SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
# Packages whose import time start-up reports (heavy ones training should not need).
# (torchvision, scipy and matplotlib come with pytorch_lightning, via torchmetrics.)
WATCHED_IMPORTS = ("torch", "pytorch_lightning", "torchvision", "scipy", "matplotlib", "hydra",
                   "captum", "wandb")
Step = Callable[[Tensor, Tensor], None]
Batches = list[tuple[Tensor, Tensor]]


@dataclass
class StepRow:
    dataset: str
    model: str
    precision: str
    variant: str
    ms_per_step: float
    images_per_s: float
    peak_mem_mb: float | None
    vs_plain: float | None = None
    vs_paper_code: float | None = None


@dataclass
class LoopRow:
    dataset: str
    model: str
    precision: str
    variant: str
    batch_size: int
    data: str
    loop_ms_per_step: float
    step_ms_per_step: float
    loop_vs_step: float


@dataclass
class PhaseRow:
    dataset: str
    source: str  # "command" (a fresh process), "in-process" or "evaluation"
    phase: str
    seconds: float


# -- configs, data and modules from the real configs ---------------------------------------
def device_overrides(device: torch.device) -> list[str]:
    return ["trainer.accelerator=" + ("gpu" if device.type == "cuda" else "cpu"),
            "trainer.devices=1"]


def train_config(dataset: str, args: argparse.Namespace, *extra: str, run: str = "run"
                 ) -> DictConfig:
    """``train.yaml`` with ``dataset`` (and its recipe), the device, ``--batch-size``, the
    ``-o`` overrides, then ``extra``; the run writes to ``<--work>/<dataset>_<run>``."""
    batch = [f"dataset.batch_size={args.batch_size}"] if args.batch_size else []
    return compose_config("train.yaml", [
        f"dataset={dataset}", *device_overrides(args.torch_device), *batch, *args.override,
        *extra, f"paths.output_dir={args.work / f'{dataset}_{run}'}"])


def use_random_data(datamodule: InMemoryDataModule, train_size: int) -> None:
    """Replace the data files by random uint8 images of the dataset's shape (read by the
    real ``setup``, loaders and transforms)."""
    shape = SYNTHETIC_SHAPES.get(datamodule.name)
    if shape is None:
        raise SettingError(f"no random stand-in for {datamodule.name}'s data; give its real "
                           f"data (paths.data_dir) or one of {', '.join(SYNTHETIC_SHAPES)}")

    def load_split(train: bool) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(int(train))
        n = train_size + datamodule.val_size if train else datamodule.eval_batch_size
        return (torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g),
                torch.randint(0, datamodule.num_classes, (n,), generator=g))

    datamodule.prepare_data = lambda: None  # type: ignore[method-assign]
    datamodule.load_split = load_split  # type: ignore[method-assign]


def read_data(datamodule: InMemoryDataModule, source: str, train_size: int,
              splits: dict[str, tuple[Tensor, ...]] | None = None) -> str:
    """Fill ``datamodule`` with its data (``splits`` read before, the real files, or random
    stand-ins: ``source`` is real, random or auto); returns which it used."""
    if splits is not None:
        datamodule.splits = splits
        return source
    used = source
    if source == "auto":
        datamodule.download = False
        try:
            datamodule.prepare_data()
            used = "real"
        except DatasetNotFoundError:
            used = "random"
    if used == "random":
        datamodule.val_size = datamodule.eval_batch_size
        use_random_data(datamodule, train_size)
    datamodule.setup("fit")
    return used


def first_batches(datamodule: InMemoryDataModule, device: torch.device, count: int = 2
                  ) -> Batches:
    """The first ``count`` training batches ``(x, y)`` on ``device``, transforms applied."""
    batches = []
    for batch in datamodule.train_dataloader():
        batches.append((batch[0].to(device), batch[1].to(device)))
        if len(batches) == count:
            break
    return batches


def ready_module(cfg: DictConfig, device: torch.device,
                 weights: dict[str, Tensor] | None = None) -> SaliencyGuidedModule:
    """The config's module on ``device`` with its speed options applied (and ``weights``)."""
    module = build(cfg)[1]
    if weights is not None:
        module.net.load_state_dict(weights)
    module.to(device)
    module.configure_model()
    return module


def make_trainer(cfg: DictConfig, *callbacks: pl.Callback) -> pl.Trainer:
    """The run's trainer as ``experiments.train`` builds it, plus ``callbacks``."""
    configured = instantiate_list(cfg.get("callbacks"))
    if OmegaConf.select(cfg, "trainer.enable_progress_bar") is False:
        configured = [c for c in configured if not isinstance(c, ProgressBar)]
    loggers = instantiate_list(cfg.get("logger"))
    return hydra.utils.instantiate(cfg.trainer, callbacks=[*configured, *callbacks],
                                   logger=loggers or False)


# -- one training step ----------------------------------------------------------------
def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def trainer_precision(cfg: DictConfig) -> str:
    """The autocast a config's ``trainer.precision`` means (fp32, bf16, fp16)."""
    value = str(cfg.trainer.precision)
    if value not in TRAINER_PRECISIONS:
        raise SettingError(f"the benchmark times trainer.precision "
                           f"{', '.join(TRAINER_PRECISIONS)}; got {value!r}")
    return TRAINER_PRECISIONS[value]


def module_step(module: SaliencyGuidedModule, device: torch.device, precision: str) -> Step:
    """One training step of the real module: forward under autocast, backward, the recipe's
    optimizer step (as Lightning's loop does, without the loop)."""
    optimizer = module.optimizer_factory(params=module.parameters())

    def step(x: Tensor, y: Tensor) -> None:
        with autocast(device, precision):
            loss = module.sgt_forward(x, y).objective.loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def paper_code_step(net: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device,
                    precision: str, k: float = 0.5) -> Step:
    """The original's SGT step (interpretable.py + Helper.py), reimplemented for timing only."""
    from captum.attr import Saliency

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


def time_step(step: Step, batches: Batches, warmup: int, iters: int,
              device: torch.device) -> tuple[float, float | None]:
    """Seconds per step after ``warmup`` steps, and the peak GPU memory in MB."""

    def cycle() -> Iterator[tuple[Tensor, Tensor]]:
        while True:
            yield from batches

    source = cycle()
    for _ in range(warmup):
        step(*next(source))
    synchronize()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(iters):
        step(*next(source))
    synchronize()
    seconds = (time.perf_counter() - start) / iters
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return seconds, peak


# -- step mode ------------------------------------------------------------------------
def step_rows(dataset: str, args: argparse.Namespace, console: Console) -> list[StepRow]:
    """Every variant of one dataset's recipe, from the same initial weights and batches."""
    device = args.torch_device
    base = train_config(dataset, args)
    pl.seed_everything(base.seed, verbose=False)
    datamodule, first = build(base)
    read_data(datamodule, args.data, 2 * args.batch_size_of(base))
    batches = first_batches(datamodule, device)
    weights = copy.deepcopy(first.net.state_dict())
    rows = []
    for precision in args.precision:
        for variant in args.variants:
            if variant == PAPER:
                net = copy.deepcopy(first.net).to(device)
                step = paper_code_step(net, first.optimizer_factory(params=net.parameters()),
                                       device, precision)
            else:
                module = ready_module(train_config(dataset, args, *VARIANTS[variant]), device,
                                      weights)
                step = module_step(module, device, precision)
            console.log(f"{dataset} {precision} {variant}")
            seconds, peak = time_step(step, batches, args.warmup, args.iters, device)
            rows.append(StepRow(dataset, type(first.net).__name__, precision, variant,
                                1000 * seconds, len(batches[0][1]) / seconds, peak))
    return rows


def add_ratios(rows: list[StepRow]) -> None:
    """``vs_plain``: time ÷ the plain step's; ``vs_paper_code``: our SGT time ÷ paper code's."""
    ms = {(r.dataset, r.precision, r.variant): r.ms_per_step for r in rows}
    for r in rows:
        plain = ms.get((r.dataset, r.precision, "plain"))
        paper = ms.get((r.dataset, r.precision, PAPER))
        r.vs_plain = r.ms_per_step / plain if plain else None
        if paper and r.variant not in ("plain", PAPER):
            r.vs_paper_code = r.ms_per_step / paper


def fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def render_steps(rows: list[StepRow], title: str) -> Table:
    table = Table(title=title)
    for column in ("dataset", "model", "precision", "variant"):
        table.add_column(column)
    for column in ("ms/step", "images/s", "peak MB", "÷ plain step (×, time)",
                   "ours ÷ original code (×, < 1 = ours faster)"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(r.dataset, r.model, r.precision, r.variant, fmt(r.ms_per_step, ".1f"),
                      fmt(r.images_per_s, ",.0f"), fmt(r.peak_mem_mb, ",.0f"),
                      fmt(r.vs_plain, ".2f"), fmt(r.vs_paper_code, ".3f"))
    return table


# -- loop mode ------------------------------------------------------------------------
def loop_rows(dataset: str, args: argparse.Namespace, console: Console) -> list[LoopRow]:
    """Per variant: seconds per step inside ``Trainer.fit`` (one epoch of ``warmup + iters``
    batches, a validation batch after the window) and the bare step of the same config."""
    device, steps = args.torch_device, args.warmup + args.iters
    rows, splits, used = [], None, args.data
    for variant in args.loop_variants:
        cfg = train_config(dataset, args, *VARIANTS[variant], "trainer.max_epochs=1",
                           f"trainer.limit_train_batches={steps}",
                           "trainer.limit_val_batches=1", "test=false", run=f"loop_{variant}")
        pl.seed_everything(cfg.seed, verbose=False)
        datamodule, module = build(cfg)
        used = read_data(datamodule, used, (steps + 1) * args.batch_size_of(cfg), splits)
        splits = datamodule.splits
        module.example_input_array = datamodule.example_input()  # as experiments.train does
        window = StepWindow(args.warmup, args.iters)
        console.log(f"{dataset} {variant}: Trainer.fit, {steps} steps")
        make_trainer(cfg, window).fit(module, datamodule=datamodule)
        if window.seconds_per_step is None:
            raise SettingError(f"Trainer.fit ran fewer than {steps} steps on {dataset}; give "
                               "more data or fewer --warmup/--iters")
        console.log(f"{dataset} {variant}: bare step")
        precision = trainer_precision(cfg)
        bare = ready_module(cfg, device)
        seconds, _ = time_step(module_step(bare, device, precision),
                               first_batches(datamodule, device), args.warmup, args.iters,
                               device)
        loop = window.seconds_per_step
        rows.append(LoopRow(dataset, type(module.net).__name__, precision, variant,
                            args.batch_size_of(cfg), used, 1000 * loop, 1000 * seconds,
                            loop / seconds))
    return rows


def render_loop(rows: list[LoopRow], title: str) -> Table:
    table = Table(title=title)
    for column in ("dataset", "model", "precision", "variant", "batch", "data",
                   "loop ms/step", "bare step ms", "loop ÷ step (×, lower is better)",
                   "steps/s in the loop"):
        table.add_column(column, justify="left" if column in (
            "dataset", "model", "precision", "variant", "data") else "right")
    for r in rows:
        table.add_row(r.dataset, r.model, r.precision, r.variant, str(r.batch_size), r.data,
                      fmt(r.loop_ms_per_step, ".1f"), fmt(r.step_ms_per_step, ".1f"),
                      fmt(r.loop_vs_step, ".2f"), fmt(1000 / r.loop_ms_per_step, ".1f"))
    return table


# -- start-up mode --------------------------------------------------------------------
def run_train_command(dataset: str, args: argparse.Namespace, run_dir: Path,
                      stamps: Path) -> tuple[float, float, str]:
    """A real ``experiments.train`` run of one batch (and one validation batch) under
    ``python -X importtime``; returns its start and end wall-clock times and its stderr."""
    command = [sys.executable, "-X", "importtime", "-m", "experiments.train",
               f"dataset={dataset}", *device_overrides(args.torch_device), *args.override,
               "trainer.max_epochs=1", "trainer.limit_train_batches=1",
               "trainer.limit_val_batches=1", "test=false", "trainer.enable_progress_bar=false",
               f"hydra.run.dir={run_dir}",
               "+callbacks.startup_times._target_=experiments.runs.timing.StartupTimes",
               f"+callbacks.startup_times.path={stamps}"]
    start = time.time()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    end = time.time()
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if not line.startswith("import time")]
        raise RuntimeError(f"{' '.join(command)} failed (exit {done.returncode}):\n"
                           + "\n".join(errors[-20:]))
    return start, end, done.stderr


def command_phases(dataset: str, args: argparse.Namespace) -> tuple[list[PhaseRow], Path]:
    """Seconds from the command to its first step, by phase; and the run dir it made."""
    run_dir, stamps_file = args.work / f"run_{dataset}", args.work / f"startup_{dataset}.json"
    start, end, stderr = run_train_command(dataset, args, run_dir, stamps_file)
    t = json.loads(stamps_file.read_text())
    imports = import_seconds(stderr, WATCHED_IMPORTS)
    built = t["callbacks_built"] - start
    phases = {
        "imports (python -X importtime; all of the process's)": imports["total"],
        "config, checks, model, data read (to callbacks built)": built - imports["total"],
        "Trainer, Lightning set-up (to the first batch)": t["first_step_start"] - t[
            "callbacks_built"],
        "first step (incl. compile)": t["first_step_end"] - t["first_step_start"],
        "= command → first step done": t["first_step_end"] - start,
        "after it: validation batch, checkpoints, exit": end - t["first_step_end"],
    }
    phases |= {f"  of the imports: {name}": imports.get(name, 0.0) for name in WATCHED_IMPORTS}
    return [PhaseRow(dataset, "command", k, v) for k, v in phases.items()], run_dir


def inprocess_phases(dataset: str, args: argparse.Namespace) -> list[PhaseRow]:
    """The same start-up in this process (imports already done): compose, build, data,
    model to the device (and compile), first step."""
    device, phases = args.torch_device, Phases()
    with phases("compose the config"):
        cfg = train_config(dataset, args)
    with phases("build (network, module, datamodule object)"):
        pl.seed_everything(cfg.seed, verbose=False)
        datamodule, module = build(cfg)
    with phases("data (read, check, split)"):
        read_data(datamodule, args.data, 2 * args.batch_size_of(cfg))
        batches = first_batches(datamodule, device, count=1)
    with phases("model to the device, configure_model"):
        module.to(device)
        module.configure_model()
    with phases("first step (incl. compile)"):
        time_step(module_step(module, device, trainer_precision(cfg)), batches, 0, 1, device)
    return [PhaseRow(dataset, "in-process", k, v) for k, v in phases.seconds.items()]


def render_phases(rows: list[PhaseRow], title: str) -> Table:
    table = Table(title=title)
    for column in ("dataset", "measured in", "phase", "seconds", "share of the total"):
        table.add_column(column, justify="right" if column in ("seconds", "share of the total")
                         else "left")
    totals: dict[tuple[str, str], float] = {}
    for r in rows:
        if not r.phase.startswith(("=", " ")):
            totals[r.dataset, r.source] = totals.get((r.dataset, r.source), 0.0) + r.seconds
    for r in rows:
        total = totals.get((r.dataset, r.source))
        share = f"{100 * r.seconds / total:.0f} %" if total and r.phase[0] not in "= " else ""
        table.add_row(r.dataset, r.source, r.phase, f"{r.seconds:.2f}", share)
    return table


# -- eval mode ------------------------------------------------------------------------
def copy_run(run: Path, into: Path) -> Path:
    """A copy of the run's config and checkpoint: the evaluation writes there, not into the
    user's run."""
    ckpt, run_dir = resolve_run(run)
    shutil.copytree(run_dir / ".hydra", into / ".hydra")
    (into / "checkpoints").mkdir(parents=True)
    shutil.copy2(ckpt, into / "checkpoints" / ckpt.name)
    return into / "checkpoints" / ckpt.name


@contextlib.contextmanager
def timed_evaluation(phases: Phases) -> Iterator[None]:
    """Time the parts of :func:`experiments.runs.evaluation.evaluate_checkpoint` while it
    runs unchanged: its functions are wrapped for the duration."""
    import sgt.plots

    def make_evaluation(*args: Any, **kwargs: Any) -> Callable[..., Any]:
        evaluation = real_make_evaluation(*args, **kwargs)
        return phases.timed(evaluation, "evaluation: masking, forwards, counting")

    real_make_evaluation = run_evaluation.make_evaluation
    wrapped = [
        (run_evaluation, "load_module", "model: build, read checkpoint, to the device"),
        (InMemoryDataModule, "setup", "data: read, to the device"),
        (run_evaluation, "saliency_examples", "examples (attributions of a few inputs)"),
        (run_evaluation, "write_results", "writing files (json, csv, yaml, examples)"),
        (sgt.plots, "result_figures", "figures"),
        (sgt.plots, "plot_examples", "figures"),
        (sgt.plots, "plot_gradient_distributions", "figures"),
    ]
    with contextlib.ExitStack() as stack:
        for owner, name, phase in wrapped:
            stack.enter_context(mock.patch.object(owner, name,
                                                  phases.timed(getattr(owner, name), phase)))
        stack.enter_context(mock.patch.object(Explainer, "attribute", phases.timed(
            Explainer.attribute, lambda self, method, *a, **k: f"attribution: {method}")))
        stack.enter_context(mock.patch.object(run_evaluation, "make_evaluation",
                                              make_evaluation))
        yield


def eval_phases(dataset: str, run: Path, args: argparse.Namespace) -> list[PhaseRow]:
    """Wall seconds of one configured evaluation of ``run`` (``configs/evaluate.yaml`` with
    the ``-e`` overrides), by phase, as ``experiments.evaluate`` runs it."""
    phases = Phases()
    if args.import_time:
        done = subprocess.run([sys.executable, "-X", "importtime", "-c",
                               "import experiments.evaluate"], cwd=ROOT, capture_output=True,
                              text=True, check=True)
        phases.seconds["start-up: imports (fresh process)"] = import_seconds(done.stderr)["total"]
    ckpt = copy_run(run, args.work / f"eval_{dataset}")
    device = "cuda" if args.torch_device.type == "cuda" else "cpu"
    with phases("start-up: compose the config"):
        cfg = compose_config("evaluate.yaml", [f"ckpt_path={ckpt}", f"eval.device={device}",
                                               *args.eval_override,
                                               f"paths.output_dir={args.work / 'evaluate'}"])
    with timed_evaluation(phases), phases("other (checks, result, logging)"):
        run_evaluation.evaluate_checkpoint(cfg.eval, cfg.ckpt_path)
    return [PhaseRow(dataset, "evaluation", k, v) for k, v in phases.seconds.items()]


# -- command line ---------------------------------------------------------------------
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
    parser.add_argument("mode", nargs="?", choices=MODES, default="step",
                        help="step (default), loop, startup or eval")
    parser.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda")
    parser.add_argument("--datasets", type=lambda t: [s for s in t.split(",") if s],
                        default=None, help="configs/dataset names (default: mnist,cifar10 for "
                        "step and loop, mnist for startup and eval)")
    parser.add_argument("--data", choices=("auto", "real", "random"), default="auto",
                        help="the real data, random data of its shape, or real when present")
    parser.add_argument("-o", "--override", action="append", default=[],
                        help="a train-config override, e.g. -o sgt.compile=reduce-overhead")
    parser.add_argument("--variants", type=csv_list(variants), default=variants,
                        help="step mode's variants")
    parser.add_argument("--loop-variants", type=csv_list(list(VARIANTS)),
                        default=LOOP_VARIANTS, help="loop mode's variants")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="training batch (default: the recipe's)")
    parser.add_argument("--iters", type=int, default=20, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--precision", type=csv_list(list(PRECISIONS)), default=["fp32", "bf16"],
                        help="step mode's autocast: fp32,bf16,fp16 (loop: the recipe's)")
    parser.add_argument("--run", type=Path, default=None,
                        help="eval mode: a run dir or .ckpt (default: a 1-step run of "
                        "the first dataset)")
    parser.add_argument("-e", "--eval-override", action="append", default=[],
                        help="eval mode: an evaluate.yaml override, e.g. -e eval=sanity")
    parser.add_argument("--no-import-time", dest="import_time", action="store_false",
                        help="eval mode: skip timing a fresh process's imports")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for the runs it makes (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON file (default outputs/benchmark/<mode>_<time>.json)")
    args = parser.parse_args(argv)
    for key in ("iters",) + (("batch_size",) if args.batch_size is not None else ()):
        if getattr(args, key) <= 0:
            parser.error(f"--{key.replace('_', '-')} must be positive")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.torch_device = torch.device(args.device)
    args.datasets = args.datasets or DEFAULT_DATASETS[args.mode]
    args.batch_size_of = lambda cfg: args.batch_size or int(cfg.dataset.batch_size)
    return args


def run_mode(args: argparse.Namespace, console: Console) -> tuple[list[Any], Table]:
    hardware = args.hardware
    if args.mode == "step":
        rows: list[Any] = [r for d in args.datasets for r in step_rows(d, args, console)]
        add_ratios(rows)
        return rows, render_steps(rows, f"training step, {hardware}, torch {torch.__version__}")
    if args.mode == "loop":
        rows = [r for d in args.datasets for r in loop_rows(d, args, console)]
        return rows, render_loop(rows, f"step inside Trainer.fit vs the bare step, {hardware}")
    if args.mode == "startup":
        rows = []
        for dataset in args.datasets:
            console.log(f"{dataset}: python -m experiments.train (1 step)")
            rows += command_phases(dataset, args)[0] + inprocess_phases(dataset, args)
        return rows, render_phases(rows, f"start-up to the first training step, {hardware}")
    dataset, run, rows = args.datasets[0], args.run, []
    if run is None:  # train one step with the real command (its start-up is reported too)
        console.log(f"{dataset}: python -m experiments.train (1 step), to evaluate")
        rows, run = command_phases(dataset, args)
    rows += eval_phases(dataset, run, args)
    return rows, render_phases(rows, f"evaluation wall time by phase, {hardware}")


def main(argv: list[str] | None = None) -> list[Any]:
    args = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 140)
    device = args.torch_device
    args.hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    with contextlib.ExitStack() as stack:
        if args.work is None:
            args.work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sgt-bench-")))
        rows, table = run_mode(args, console)
    console.print(table)
    stamp = f"{datetime.now():%Y-%m-%d_%H-%M-%S}"
    out = args.out or Path("outputs/benchmark") / f"{args.mode}_{stamp}.json"
    settings = {k: str(v) if isinstance(v, (Path, torch.device)) else v
                for k, v in vars(args).items() if not callable(v)}
    write_json_atomic(out, {"mode": args.mode, "hardware": args.hardware,
                            "torch": torch.__version__, "settings": settings,
                            "rows": [asdict(r) for r in rows]})
    console.print(f"written {out}")
    return rows


if __name__ == "__main__":
    main()
