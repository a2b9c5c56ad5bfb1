"""Configs as the CLI composes them, and what scripts that launch runs need around them:
a path as a Hydra override value, and a new dated folder for a batch of runs."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def compose_config(config_name: str, overrides: Sequence[str]) -> DictConfig:
    """``configs/<config_name>`` with ``overrides``, composed as the CLI composes it."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
            return compose(config_name, overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()


def hydra_value(path: Path) -> str:
    """``path`` as a Hydra override value, quoted (and escaped) where Hydra's grammar needs."""
    text = str(path)
    if re.fullmatch(r"[\w./-]+", text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def new_dated_folder(root: Path) -> Path:
    """``root/<time>`` (or ``<time>_2``, …): a folder no earlier invocation used, created."""
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    n = 1
    while True:
        path = root / (stamp if n == 1 else f"{stamp}_{n}")
        try:
            path.mkdir(parents=True)
            return path.resolve()
        except FileExistsError:
            n += 1
