"""Evaluate a saved run with a configured evaluation (``configs/eval/<name>.yaml``).

The model and data are rebuilt from the run's saved ``.hydra/config.yaml`` and the
checkpoint's weights are loaded into them; the evaluation is instantiated from
``eval.metric`` and called on the test set. Results go to ``<run dir>/eval/``:
``<name>.json`` (the result, its settings and provenance), ``<name>.csv`` (its table),
``<name>.yaml`` (the evaluation config), figures and ``<name>_examples.pt`` (example maps
that ``experiments.report --view compare`` draws). A taken name gets a numbered suffix: nothing is
overwritten. Both ``experiments.evaluate`` and ``experiments.train ... eval=<name>`` use it.

Before any work: the run must not be training still, its ``eval/`` must be writable and every
setting valid. The files are written all or none (:func:`sgt.atomic.all_or_nothing`), and the
result records which checkpoint it saw (:mod:`experiments.runs.provenance`).
"""

from __future__ import annotations

import copy
import re
import sys
import warnings
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.loggers import Logger

from experiments.runs.build import load_module, pick_device
from experiments.runs.claim import check_not_training
from experiments.runs.cli import call_library
from experiments.runs.files import (
    EVAL_DIR,
    claim_stem,
    load_run_config,
    resolve_run,
    run_label,
    write_csv,
    write_json_atomic,
)
from experiments.runs.provenance import checkpoint_record
from sgt.atomic import all_or_nothing, atomic_write, check_writable, write_text
from sgt.checkpoint_io import read_checkpoint
from sgt.checks import check_int
from sgt.data import InMemoryDataModule
from sgt.errors import DatasetNotFoundError, SettingError
from sgt.evaluation import Evaluation, EvaluationResult
from sgt.evaluation.base import check_methods
from sgt.features import feature_saliency
from sgt.module import SaliencyGuidedModule
from sgt.saliency import (
    METHODS,
    Attribution,
    Explainer,
    ModalityForward,
    get_method,
    input_gradient,
)

# Files one evaluation writes, by suffix of its name; the first is claimed exclusively.
SUFFIXES = (".yaml", ".json", ".csv", "_examples.pt")


# ``eval.batch_size: auto``: test inputs per batch by device. On a CPU, 250 MNIST inputs
# through all seven methods peak at 6.2 GB of RAM (measured): the default fits 8 GB.
AUTO_BATCH_SIZE = {"cuda": 1000, "cpu": 250}


def eval_batch_size(cfg_eval: DictConfig, device: torch.device) -> int:
    size = cfg_eval.get("batch_size")
    return AUTO_BATCH_SIZE.get(device.type, 250) if size == "auto" else size


def make_methods(cfg_eval: DictConfig) -> dict[str, Attribution]:
    """The attribution methods ``eval.methods`` names, with ``eval.method_args``."""
    args = cfg_eval.get("method_args") or {}
    return {name: get_method(name, **args.get(name, {})) for name in cfg_eval.methods}


def make_evaluation(cfg_eval: DictConfig, output: str = "logit",
                    from_run: Mapping[str, Any] | None = None) -> Evaluation:
    """The configured evaluation. ``output`` fills ``eval.metric.output: null`` (the run's);
    ``from_run`` (:func:`run_settings`) fills the other settings the config leaves ``null``
    for the run to decide, in ``eval.metric`` or its ``fill_args``."""
    cfg_metric = cfg_eval.metric
    extra: dict[str, Any] = (
        {"output": output} if "output" in cfg_metric and not cfg_metric.output else {})
    fill_args = OmegaConf.to_container(cfg_metric.get("fill_args") or OmegaConf.create({}))
    for key, value in (from_run or {}).items():
        if key in cfg_metric and cfg_metric[key] is None:
            extra[key] = value
        if key in fill_args and fill_args[key] is None:
            extra["fill_args"] = {**fill_args, **extra.get("fill_args", {}), key: value}
    return hydra.utils.instantiate(cfg_metric, **extra)


def run_settings(datamodule: InMemoryDataModule, net: torch.nn.Module) -> dict[str, Any]:
    """What an evaluation setting left ``null`` takes from the run: ``input_std``, the data's
    normalisation (ROAD's noise is in pixel units, docs/paper.md §3(f)), and ``random_key``,
    ``<dataset>/<model>`` (the time-series benchmark draws its random baseline afresh for
    each, §3(d))."""
    std = getattr(datamodule, "std", None)
    return {"input_std": None if std is None else list(std),
            "random_key": f"{datamodule.name}/{type(net).__name__}"}


def check_eval(cfg_eval: DictConfig) -> None:
    """Reject bad evaluation settings before any work, in one line naming the value."""
    name = cfg_eval.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise SettingError(f"eval.name names files inside <run dir>/eval/: use letters, digits, "
                           f"'_', '-' and '.', no path; got {name!r}")
    if cfg_eval.get("batch_size") != "auto":
        check_int(cfg_eval.get("batch_size"), "eval.batch_size")
    check_int(cfg_eval.get("num_examples"), "eval.num_examples", low=0)
    check_methods(cfg_eval.get("methods") or [])
    for name in cfg_eval.methods:
        call_library("eval.methods", lambda name=name: METHODS.get(name))
    unknown = sorted(set(cfg_eval.get("method_args") or {}) - set(METHODS))
    if unknown:
        raise SettingError(f"eval.method_args names {unknown}, which are not attribution "
                           f"methods; use the names of {METHODS.names()}")
    call_library("eval.method_args", lambda: make_methods(cfg_eval))
    call_library("eval.metric", lambda: make_evaluation(cfg_eval))
    pick_device(cfg_eval.get("device", "auto"))


def usable_methods(module: SaliencyGuidedModule, methods: Mapping[str, Attribution],
                   batch: Sequence[torch.Tensor], output: str
                   ) -> tuple[dict[str, Attribution], dict[str, str]]:
    """The methods that can explain this model, tried on two test inputs first; one that
    fails (captum's DeepLift on a network that reuses an activation module, say) is left out
    with a warning and its reason, so the others' results are kept."""
    explainer = Explainer(ModalityForward(module.net, module.modality, output), methods)
    x, y = (t[:2].to(explainer.device) for t in batch[:2])
    usable, skipped = {}, {}
    for name, method in methods.items():
        try:
            explainer(name, x, y)
            usable[name] = method
        except Exception as err:  # captum raises assertion, runtime and type errors
            skipped[name] = f"{type(err).__name__}: {str(err).strip().splitlines()[0]}"
            warnings.warn(f"attribution method {name} cannot explain this model, left out: "
                          f"{skipped[name]}", stacklevel=2)
    if not usable:
        raise SettingError(f"none of the attribution methods can explain this model: {skipped}")
    return usable, skipped


def saliency_examples(module: SaliencyGuidedModule, datamodule: InMemoryDataModule,
                      batch: Sequence[torch.Tensor], methods: Mapping[str, Attribution],
                      seed: int, output: str) -> dict[str, Any]:
    """A few test examples (a batch's first rows), their per-method ranking maps ``(n, N)``
    and signed gradients ``(n, N)``, on the CPU: what the example figures (and ``compare``)
    draw. Text examples carry their token strings."""
    x, y, *extras = batch
    m = module.modality
    forward = ModalityForward(module.net, m, output)
    explainer = Explainer(forward, methods, seed)
    maps = {name: explainer(name, x, y)[1].cpu() for name in explainer.methods}
    z = m.embed(module.net, x).detach()
    grad = input_gradient(forward, z, y)  # forward already applies ``output``
    valid = m.valid_features(x)
    # clone: a slice of a batch would otherwise save the whole batch's storage
    examples = {"modality": m.name, "inputs": x.cpu().clone(), "labels": y.cpu().clone(),
                "extras": [e.cpu().clone() for e in extras], "maps": maps,
                "features": None if valid is None else valid.cpu(),
                "gradients": feature_saliency(m, grad).cpu()}
    if hasattr(datamodule, "decode"):
        examples["tokens"] = datamodule.decode(x.cpu(), skip_padding=False)
    return examples


def eraser_files(result: EvaluationResult, datamodule: InMemoryDataModule, directory: Path,
                 stem: str) -> dict[str, Path]:
    """ERASER's per-instance results, one ``<stem>_<method>.jsonl`` per method, which
    ERASER's own scorer reads."""
    from sgt.evaluation import write_eraser_results

    split = datamodule.eraser_split("test")
    return {f"jsonl_{method}": write_eraser_results(result, split, method,
                                                    directory / f"{stem}_{method}.jsonl")
            for method in result.methods}


# Result kinds whose evaluation writes files that need the data (beyond json/csv/figures).
RESULT_FILES = {"eraser": eraser_files}


def write_results(directory: Path, stem: str, cfg_eval: DictConfig, result: EvaluationResult,
                  examples: dict[str, Any] | None, label: str, info: dict[str, Any],
                  datamodule: InMemoryDataModule) -> dict[str, Path]:
    """All files of one evaluation under ``directory/<stem>*``; returns them by kind."""
    from sgt.plots import plot_examples, plot_gradient_distributions, result_figures

    files = {"config": directory / f"{stem}.yaml", "json": directory / f"{stem}.json",
             "csv": directory / f"{stem}.csv"}
    write_text(files["config"], OmegaConf.to_yaml(cfg_eval, resolve=True))
    write_csv(files["csv"], *result.table())
    files.update(result_figures({label: result}, directory / stem))
    if result.kind in RESULT_FILES:
        files.update(RESULT_FILES[result.kind](result, datamodule, directory, stem))
    if examples is not None:
        files["examples_pt"] = directory / f"{stem}_examples.pt"
        with atomic_write(files["examples_pt"]) as f:
            torch.save({**examples, "label": label}, f)
        files["examples"] = plot_examples(examples["modality"], examples, examples["maps"],
                                          directory / f"{stem}_examples.png")
        files["gradients"] = plot_gradient_distributions({label: examples["gradients"]},
                                                         directory / f"{stem}_gradients.png")
    write_json_atomic(files["json"], {**result.to_dict(), **info, "label": label,
                                      "files": {k: str(p) for k, p in files.items()}})
    return files


def log_results(loggers: Sequence[Logger], name: str, result: EvaluationResult,
                figures: dict[str, Path]) -> None:
    """Summary scalars to every logger; the table and figures where the logger takes them
    (W&B: a ``wandb.Table`` and ``wandb.Image``s)."""
    columns, rows = result.table()
    for logger in loggers:
        logger.log_metrics({f"{name}/{k}": v for k, v in result.summary().items()})
        if hasattr(logger, "log_table"):
            logger.log_table(key=f"{name}/table", columns=columns, data=rows)
        if hasattr(logger, "log_image"):
            for kind, path in figures.items():
                logger.log_image(key=f"{name}/{kind}", images=[str(path)])
        logger.save()


def evaluate_checkpoint(
    cfg_eval: DictConfig,
    ckpt_path: str | Path,
    run_cfg: DictConfig | None = None,
    loggers: Sequence[Logger] = (),
    data_dir: str | None = None,
    datamodule: InMemoryDataModule | None = None,
) -> dict[str, Any]:
    """Run the evaluation ``cfg_eval`` (``configs/eval/``) on a checkpoint.

    Args:
        ckpt_path: a ``.ckpt`` file or a run dir.
        run_cfg: the run's config (default: its saved ``.hydra/config.yaml``).
        loggers: also receive the summary, table and figures.
        data_dir: replaces the run's ``paths.data_dir``.
        datamodule: the run's data, already read (right after training): used instead of
            reading it again; its ``eval_batch_size`` becomes the evaluation's.
    Returns:
        ``eval/<name>/<summary key>`` scalars and ``eval/<name>/json`` (the result file).
    """
    check_eval(cfg_eval)
    ckpt, run_dir = resolve_run(ckpt_path)
    check_not_training(run_dir)
    directory = check_writable(run_dir / EVAL_DIR, "make the run folder writable (or copy "
                               "the run to a writable place) and evaluate again")
    run_cfg = copy.deepcopy(run_cfg or load_run_config(run_dir))  # the caller's stays as is
    device = pick_device(cfg_eval.get("device", "auto"))
    with open_dict(run_cfg):
        run_cfg.dataset.eval_batch_size = eval_batch_size(cfg_eval, device)
        if data_dir:
            run_cfg.paths.data_dir = data_dir
    output = (OmegaConf.select(cfg_eval, "metric.output")
              or OmegaConf.select(run_cfg, "sgt.saliency_output", default="logit"))
    checkpoint = read_checkpoint(ckpt, weights_only=False)  # the user's own file
    seen = checkpoint_record(ckpt, checkpoint)
    built, module = load_module(run_cfg, ckpt, device, checkpoint)
    del checkpoint
    if datamodule is None:
        datamodule = built
    datamodule.eval_batch_size = run_cfg.dataset.eval_batch_size
    try:
        datamodule.setup("test")
    except DatasetNotFoundError as err:  # the run's data moved: this script sets data_dir
        raise err.with_fix("pass data_dir=<a folder holding {holding}>") from None
    loader = datamodule.test_dataloader()
    methods, skipped = usable_methods(module, make_methods(cfg_eval), next(iter(loader)),
                                      output)
    result = make_evaluation(cfg_eval, output, run_settings(datamodule, module.net))(
        module.net, loader, methods, module.modality)

    examples = None
    if cfg_eval.num_examples:
        device = next(module.parameters()).device
        batch = [t[: cfg_eval.num_examples].to(device) for t in next(iter(loader))]
        examples = saliency_examples(module, datamodule, batch, methods,
                                     cfg_eval.metric.get("seed", 0), output)
    info = {**seen, "run_dir": str(run_dir), "output": output, "skipped_methods": skipped,
            "created": datetime.now().isoformat(timespec="seconds"),
            "settings": OmegaConf.to_container(cfg_eval, resolve=True)}
    with all_or_nothing(f"free space in {directory} and evaluate again"):
        stem = claim_stem(directory, cfg_eval.name, SUFFIXES)
        files = write_results(directory, stem, cfg_eval, result, examples, run_label(run_cfg),
                              info, datamodule)
    figures = {k: p for k, p in files.items() if p.suffix == ".png"}
    log_results(loggers, cfg_eval.name, result, figures)
    return {**{f"eval/{cfg_eval.name}/{k}": v for k, v in result.summary().items()},
            f"eval/{cfg_eval.name}/json": str(files["json"])}


def close_loggers(loggers: Sequence[Logger]) -> None:
    """Flush loggers this process made; a W&B run is finished so ``wandb sync`` takes it."""
    for logger in loggers:
        logger.finalize("success")
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()
