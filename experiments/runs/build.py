"""Objects a run's config describes: data, network, SGT module, callbacks and loggers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from sgt.checkpoint_io import check_fits, read_checkpoint
from sgt.data import InMemoryDataModule
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


def load_module(run_cfg: DictConfig, ckpt: Path, device: torch.device
                ) -> tuple[InMemoryDataModule, SaliencyGuidedModule]:
    """The run's DataModule and its module with the checkpoint's weights, in eval mode."""
    datamodule, module = build(run_cfg)
    # Lightning checkpoints hold more than tensors (hyperparameters); this is the user's own.
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
    """``auto`` is the GPU when there is one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
