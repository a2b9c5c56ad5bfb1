"""Same seed, same numbers: deterministic CPU runs write identical results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from experiments.train import train
from tests.conftest import needs_mnist

pytestmark = needs_mnist
VARYING = {"epoch_time_s", "best_ckpt_path"}  # wall time and paths differ from run to run


def results(run: Path) -> dict[str, Any]:
    """A run's metrics.json without its timings and paths."""
    metrics = json.loads((run / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if k not in VARYING}


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def test_same_seed_same_metrics_and_weights_other_seed_differs(train_cfg):
    runs = {}
    for name, seed in (("first", 7), ("again", 7), ("other", 8)):
        cfg = train_cfg("trainer.deterministic=true", f"seed={seed}", "trainer.limit_val_batches=1",
                        "trainer.limit_test_batches=1", run=name)
        train(cfg)
        runs[name] = Path(cfg.paths.output_dir)
    first, again, other = (results(run) for run in runs.values())
    assert first == again  # every loss and accuracy, to the last digit
    a, b = weights(runs["first"]), weights(runs["again"])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for key in ("train/loss_step", "train/kl", "test/loss"):
        assert first[key] != other[key], key
