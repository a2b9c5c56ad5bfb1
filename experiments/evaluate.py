"""Accuracy-drop evaluation of a saved run: ``python -m experiments.evaluate ckpt_path=...``.

The model and data are rebuilt from the run's saved ``.hydra/config.yaml`` (the run dir is
the checkpoint's grandparent, ``run_dir/checkpoints/x.ckpt``) and the checkpoint's weights
are loaded into them. Results go to ``run_dir/eval/``: ``<name>.json`` / ``.csv`` (the
table and areas), ``<name>.yaml`` (the settings), figures, and ``<name>_examples.pt`` (the
example maps ``experiments.compare`` draws); a taken name gets a suffix, never overwritten.
``python -m experiments.train ... eval=accuracy_drop`` runs the same on the best checkpoint.
"""

from __future__ import annotations

import copy
import csv
import json
import re
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.loggers import Logger

from experiments.utils import instantiate_list, report_user_errors, write_json_atomic
from experiments.validation import ConfigError
from sgt.attribution import (
    Attribution,
    ModalityForward,
    explain,
    feature_scores,
    get_method,
    method_generator,
)
from sgt.checkpoint_io import check_fits, read_checkpoint
from sgt.evaluation import AccuracyDrop, AccuracyDropResult
from sgt.features import feature_saliency
from sgt.module import SaliencyGuidedModule
from sgt.plots import plot_accuracy_drop, plot_gradient_distributions, plot_saliency_examples
from sgt.saliency import input_gradient

EVAL_DIR = "eval"
# Every file one evaluation writes, by suffix of its name: claimed together.
SUFFIXES = (".yaml", ".json", ".csv", "_curves.png", "_examples.png", "_gradients.png",
            "_examples.pt")


# -- settings and paths -------------------------------------------------------------------
def make_methods(cfg_eval: DictConfig) -> dict[str, Attribution]:
    args = cfg_eval.get("method_args") or {}
    return {name: get_method(name, **args.get(name, {})) for name in cfg_eval.methods}


def make_metric(cfg_eval: DictConfig, output: str) -> AccuracyDrop:
    return AccuracyDrop(levels=list(cfg_eval.levels), fill=cfg_eval.fill,
                        fill_args=dict(cfg_eval.get("fill_args") or {}), seed=cfg_eval.seed,
                        output=output, limit_batches=cfg_eval.get("limit_batches"),
                        progress=cfg_eval.get("progress", True))


def check_eval(cfg_eval: DictConfig) -> None:
    """Reject bad evaluation settings before any work, in one line naming the value."""
    for key, least in (("batch_size", 1), ("num_examples", 0)):
        value = cfg_eval.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ConfigError(f"eval.{key} must be an integer >= {least}, got {value!r}")
    try:
        make_methods(cfg_eval)
        make_metric(cfg_eval, cfg_eval.get("output") or "logit")
    except (KeyError, ValueError, TypeError) as err:
        raise ConfigError(f"eval: {err.args[0]}") from None


def resolve_run(ckpt_path: str | Path) -> tuple[Path, Path]:
    """``(checkpoint, run dir)`` for a ``.ckpt`` file or a run dir.

    A run dir's checkpoint is metrics.json's ``best_ckpt_path`` (looked up in the run's own
    ``checkpoints/``, so a moved run still works), else ``checkpoints/last.ckpt``.
    """
    path = Path(str(ckpt_path))
    if path.is_file():
        return path, path.parent.parent
    if not path.is_dir():
        raise ConfigError(f"ckpt_path={str(ckpt_path)!r} is neither a checkpoint file nor a run "
                          "dir; give <run dir> or <run dir>/checkpoints/<name>.ckpt")
    candidates = []
    metrics = path / "metrics.json"
    if metrics.is_file():
        best = json.loads(metrics.read_text()).get("best_ckpt_path") or ""
        if best:
            candidates += [path / "checkpoints" / Path(best).name, Path(best)]
    candidates.append(path / "checkpoints" / "last.ckpt")
    for candidate in candidates:
        if candidate.is_file():
            return candidate, path
    raise ConfigError(f"run dir {path} has no checkpoint: looked for metrics.json's "
                      "best_ckpt_path and checkpoints/last.ckpt")


def load_run_config(run_dir: Path) -> DictConfig:
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{path} not found: the run's saved config is needed to rebuild its "
                          "model and data (is the checkpoint inside <run dir>/checkpoints/?)")
    return OmegaConf.load(path)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def run_label(run_cfg: DictConfig) -> str:
    """``regular`` for k = 0, else ``SGT k=… λ=…``: how figures name a run."""
    k, lam = OmegaConf.select(run_cfg, "sgt.k", default=0.0), OmegaConf.select(
        run_cfg, "sgt.lam", default=0.0)
    return "regular" if not k else f"SGT k={k:g} λ={lam:g}"


def claim_stem(directory: Path, name: str, suffixes: Sequence[str] = SUFFIXES) -> str:
    """The first of ``name``, ``name_2``, … with none of ``name + suffix`` existing, claimed
    by creating its first file exclusively (two jobs at once never share a name)."""
    directory.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        stem = name if n == 1 else f"{name}_{n}"
        if not any((directory / f"{stem}{s}").exists() for s in suffixes):
            try:
                (directory / f"{stem}{suffixes[0]}").open("x").close()
                return stem
            except FileExistsError:
                pass
        n += 1


def latest_result(run_dir: Path, name: str = "accuracy_drop") -> Path | None:
    """The newest ``eval/<name>[_n].json`` of a run (highest ``n``), or ``None``."""
    pattern = re.compile(rf"{re.escape(name)}(?:_(\d+))?\.json")
    found = [(int(m.group(1) or 1), p) for p in (run_dir / EVAL_DIR).glob(f"{name}*.json")
             if (m := pattern.fullmatch(p.name))]
    return max(found)[1] if found else None


def load_module(run_cfg: DictConfig, ckpt: Path, device: torch.device
                ) -> tuple[Any, SaliencyGuidedModule]:
    """The run's DataModule and its module with the checkpoint's weights, in eval mode."""
    from experiments.train import build  # here: experiments.train imports this module

    datamodule, module = build(run_cfg)
    # Lightning checkpoints hold more than tensors (hyperparameters); this is the user's own.
    checkpoint = read_checkpoint(ckpt, weights_only=False)
    check_fits(checkpoint, module, ckpt)
    module.load_state_dict(checkpoint["state_dict"])
    return datamodule, module.to(device).eval()


# -- the evaluation -------------------------------------------------------------------------
def saliency_examples(module: SaliencyGuidedModule, x: torch.Tensor, y: torch.Tensor,
                      methods: dict[str, Attribution], seed: int, output: str
                      ) -> dict[str, Any]:
    """Inputs, per-method ranking maps ``(n, N)`` and signed gradients ``(n, N)`` of a few
    examples, on the CPU: what the example figures (and ``compare``) draw."""
    forward = ModalityForward(module.net, module.modality, output)
    maps = {}
    for name, method in methods.items():
        _, attribution = explain(method, forward, x, y,
                                 method_generator(seed, name, x.device))
        maps[name] = feature_scores(module.modality, attribution).cpu()
    z = module.modality.embed(module.net, x).detach()
    grad = input_gradient(forward, z, y)  # forward already applies ``output``
    # clone: a slice of a batch would otherwise save the whole batch's storage
    return {"inputs": x.cpu().clone(), "labels": y.cpu().clone(), "maps": maps,
            "gradients": feature_saliency(module.modality, grad).cpu()}


def write_results(directory: Path, stem: str, cfg_eval: DictConfig, result: AccuracyDropResult,
                  examples: dict[str, Any] | None, label: str, info: dict[str, Any]
                  ) -> dict[str, Path]:
    """All files of one evaluation under ``directory/<stem>*``; returns them by kind."""
    files = {"config": directory / f"{stem}.yaml", "json": directory / f"{stem}.json",
             "csv": directory / f"{stem}.csv"}
    OmegaConf.save(cfg_eval, files["config"], resolve=True)
    columns, rows = result.table()
    with files["csv"].open("w", newline="") as f:
        csv.writer(f).writerows([columns, *rows])
    files["curves"] = plot_accuracy_drop({label: result}, directory / f"{stem}_curves.png")
    if examples is not None:
        files["examples_pt"] = directory / f"{stem}_examples.pt"
        torch.save({**examples, "label": label}, files["examples_pt"])
        files["examples"] = plot_saliency_examples(examples["inputs"], examples["maps"],
                                                   directory / f"{stem}_examples.png")
        files["gradients"] = plot_gradient_distributions({label: examples["gradients"]},
                                                         directory / f"{stem}_gradients.png")
    write_json_atomic(files["json"], {**result.to_dict(), **info, "label": label,
                                      "files": {k: str(p) for k, p in files.items()}})
    return files


def log_results(loggers: Sequence[Logger], name: str, result: AccuracyDropResult,
                figures: dict[str, Path]) -> None:
    """Areas as metrics to every logger; the table and figures where the logger takes them
    (W&B: a ``wandb.Table`` and ``wandb.Image``s)."""
    columns, rows = result.table()
    for logger in loggers:
        logger.log_metrics({f"{name}/auc/{m}": v for m, v in result.auc.items()})
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
) -> dict[str, Any]:
    """Run the accuracy-drop evaluation ``cfg_eval`` (``configs/eval/``) on a checkpoint.

    Args:
        ckpt_path: a ``.ckpt`` file or a run dir.
        run_cfg: the run's config (default: its saved ``.hydra/config.yaml``).
        loggers: also receive the areas, table and figures.
        data_dir: replaces the run's ``paths.data_dir``.
    Returns:
        ``eval/<name>/auc/<method>`` areas and ``eval/<name>/json`` (the result file).
    """
    check_eval(cfg_eval)
    ckpt, run_dir = resolve_run(ckpt_path)
    run_cfg = copy.deepcopy(run_cfg or load_run_config(run_dir))  # the caller's stays as is
    with open_dict(run_cfg):
        run_cfg.dataset.eval_batch_size = cfg_eval.batch_size
        if data_dir:
            run_cfg.paths.data_dir = data_dir
    output = cfg_eval.get("output") or OmegaConf.select(run_cfg, "sgt.saliency_output",
                                                        default="logit")
    datamodule, module = load_module(run_cfg, ckpt, pick_device(cfg_eval.get("device", "auto")))
    datamodule.setup("test")
    loader = datamodule.test_dataloader()
    methods = make_methods(cfg_eval)
    result = make_metric(cfg_eval, output)(module.net, loader, methods, module.modality)

    examples = None
    if cfg_eval.num_examples:
        x, y = next(iter(loader))
        device = next(module.parameters()).device
        n = cfg_eval.num_examples
        examples = saliency_examples(module, x[:n].to(device), y[:n].to(device), methods,
                                     cfg_eval.seed, output)
    directory = run_dir / EVAL_DIR
    stem = claim_stem(directory, cfg_eval.name)
    info = {"checkpoint": str(ckpt), "run_dir": str(run_dir), "output": output,
            "created": datetime.now().isoformat(timespec="seconds"),
            "settings": OmegaConf.to_container(cfg_eval, resolve=True)}
    files = write_results(directory, stem, cfg_eval, result, examples, run_label(run_cfg), info)
    figures = {k: p for k, p in files.items() if p.suffix == ".png"}
    log_results(loggers, cfg_eval.name, result, figures)
    return {**{f"eval/{cfg_eval.name}/auc/{m}": v for m, v in result.auc.items()},
            f"eval/{cfg_eval.name}/json": str(files["json"])}


def close_loggers(loggers: Sequence[Logger]) -> None:
    """Flush loggers this process made; a W&B run is finished so ``wandb sync`` takes it."""
    for logger in loggers:
        logger.finalize("success")
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """The CLI's work: check everything, then evaluate ``cfg.ckpt_path`` with ``cfg.eval``."""
    check_eval(cfg.eval)
    resolve_run(cfg.ckpt_path)  # a bad path fails before any logger starts
    loggers = instantiate_list(cfg.get("logger"))
    try:
        return evaluate_checkpoint(cfg.eval, cfg.ckpt_path, loggers=loggers,
                                   data_dir=cfg.get("data_dir"))
    finally:
        close_loggers(loggers)


def _job_dir(cfg: DictConfig) -> Path | None:
    return Path(cfg.paths.output_dir) if OmegaConf.select(cfg, "paths.output_dir") else None


@hydra.main(version_base="1.3", config_path="../configs", config_name="evaluate.yaml")
@report_user_errors(_job_dir)
def main(cfg: DictConfig) -> None:
    result = evaluate(cfg)
    print(f"results: {result[f'eval/{cfg.eval.name}/json']}")


if __name__ == "__main__":
    main()
