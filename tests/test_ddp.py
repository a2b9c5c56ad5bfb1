"""SGT under DDP: a real 2-process CPU (gloo) run through the CLI, plus the per-rank parts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from sgt.data.tensor_loader import TensorLoader
from sgt.models import MNISTNet
from sgt.module import SaliencyGuidedModule
from tests.conftest import ROOT, SHARED_DATA, needs_mnist


@needs_mnist
def test_two_process_ddp_run_through_the_cli_writes_metrics(tmp_path):
    """Lightning re-launches ``python -m experiments.train`` for rank 1 with the same
    ``hydra.run.dir``; both ranks train, rank 0 writes the results."""
    run = tmp_path / "ddp"
    env = {**os.environ, "SGT_DATA_DIR": str(SHARED_DATA), "HYDRA_FULL_ERROR": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "experiments.train", "trainer=ddp", "trainer.accelerator=cpu",
         "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
         "trainer.limit_test_batches=1", "trainer.enable_progress_bar=false",
         "trainer.enable_model_summary=false", "~callbacks.rich_progress_bar",
         "dataset.batch_size=16", "dataset.eval_batch_size=32", f"hydra.run.dir={run}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in result.stderr + result.stdout
    assert (run / "train_ddp_process_1.log").exists()  # rank 1 ran inside the same run dir
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["test/acc"] <= 1.0 and metrics["train/kl"] > 0
    assert (run / "checkpoints" / "last.ckpt").is_file()


def test_each_rank_gets_a_disjoint_equal_share_of_every_epoch():
    x, y = torch.arange(103).view(-1, 1), torch.arange(103)
    shares = []
    for rank in (0, 1):
        loader = TensorLoader((x, y), batch_size=10, shuffle=True, seed=3, rank=rank, world_size=2)
        loader.set_epoch(4)
        shares.append(torch.cat([b for _, b in loader]))
    assert len(shares[0]) == len(shares[1]) == 51
    assert not set(shares[0].tolist()) & set(shares[1].tolist())


def test_each_rank_draws_its_own_masks(monkeypatch):
    draws = []
    for rank in (0, 1):
        monkeypatch.setattr(SaliencyGuidedModule, "global_rank", property(lambda self, r=rank: r))
        module = SaliencyGuidedModule(MNISTNet(), num_classes=10, seed=7)
        draws.append(torch.rand(5, generator=module.generator(torch.device("cpu"))))
    assert not torch.equal(draws[0], draws[1])
