"""Objects a run's config describes: data, network, SGT module, callbacks and loggers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from sgt.checkpoint_io import check_fits, read_checkpoint
from sgt.data import InMemoryDataModule
from sgt.errors import SettingError
from sgt.features import get_modality
from sgt.module import SaliencyGuidedModule

SETTING_KEYS_OF_HYDRA = ("_target_", "_partial_", "_convert_", "_recursive_", "_args_")


def sgt_settings(cfg_sgt: DictConfig) -> dict[str, Any]:
    """The ``sgt`` group's settings (its keys without Hydra's own)."""
    return {k: v for k, v in cfg_sgt.items() if k not in SETTING_KEYS_OF_HYDRA}


def build(cfg: DictConfig) -> tuple[InMemoryDataModule, SaliencyGuidedModule]:
    """The DataModule and the SGT module a config describes (no data is read yet)."""
    datamodule = hydra.utils.instantiate(cfg.dataset)
    net = hydra.utils.instantiate(cfg.model, **datamodule.model_kwargs())
    optimizer = hydra.utils.instantiate(cfg.optimizer) if cfg.get("optimizer") else None
    scheduler = hydra.utils.instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    module = hydra.utils.instantiate(cfg.sgt)(
        net=net,
        optimizer=optimizer,
        scheduler=scheduler,
        num_classes=datamodule.num_classes,
        modality=get_modality(datamodule.modality, **datamodule.modality_kwargs()),
        seed=cfg.seed,
    )
    return datamodule, module


def load_module(run_cfg: DictConfig, ckpt: Path, device: torch.device,
                checkpoint: dict[str, Any] | None = None
                ) -> tuple[InMemoryDataModule, SaliencyGuidedModule]:
    """The run's DataModule and its module with the checkpoint's weights (``checkpoint``,
    when the caller has read ``ckpt`` already), in eval mode."""
    datamodule, module = build(run_cfg)
    if checkpoint is None:
        # Lightning checkpoints hold more than tensors (hyperparameters): the user's own file.
        checkpoint = read_checkpoint(ckpt, weights_only=False)
    check_fits(checkpoint, module, ckpt)
    module.load_state_dict(checkpoint["state_dict"])
    return datamodule, module.to(device).eval()


def instantiate_list(cfg: DictConfig | None) -> list[Any]:
    """Objects of every entry with a ``_target_`` (callbacks, loggers); others are skipped."""
    if not cfg:
        return []
    return [hydra.utils.instantiate(c) for c in cfg.values()
            if isinstance(c, DictConfig) and "_target_" in c]


def pick_device(name: str) -> torch.device:
    """``eval.device``: ``auto`` is the GPU when there is one; a GPU this machine lacks is a
    setting error, found before any work."""
    key = "eval.device"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise SettingError(f"{key}={name!r} is not a device; use auto, cpu, cuda or "
                           "cuda:<index>") from None
    if device.type not in ("cpu", "cuda"):
        raise SettingError(f"{key}={name!r}: sgt evaluates on auto, cpu, cuda or cuda:<index>")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.type == "cuda" and (device.index or 0) >= count:
        has = f"{count} CUDA GPU(s)" if count else "no CUDA GPU"
        raise SettingError(f"{key}={name} but this machine has {has}; use {key}=auto (the GPU "
                           "when there is one) or cpu")
    return device
