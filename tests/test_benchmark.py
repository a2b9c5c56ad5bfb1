"""The step benchmark: a tiny CPU run of every variant through the real module."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from experiments import benchmark
from sgt.models import MNISTNet
from sgt.module import SaliencyGuidedModule


def test_benchmark_times_every_variant_through_the_module_and_writes_json(tmp_path,
                                                                         monkeypatch):
    calls = []
    real = SaliencyGuidedModule.sgt_forward

    def spy(self, x, y, masked=True):
        calls.append(self.k)
        return real(self, x, y, masked)

    monkeypatch.setattr(SaliencyGuidedModule, "sgt_forward", spy)
    out = tmp_path / "bench.json"
    rows = benchmark.main(["--device", "cpu", "--models", "mnist_cnn", "--batch-size", "8",
                           "--iters", "2", "--warmup", "1", "--precision", "fp32",
                           "--out", str(out)])
    assert [r.variant for r in rows] == ["plain", "sgt", "sgt_train_sal", "sgt_concat",
                                         "paper_code"]
    assert calls.count(0.0) == 3 and calls.count(0.5) == 9  # (warmup + iters) per variant
    saved = json.loads(out.read_text())
    assert saved["hardware"] == "cpu" and len(saved["rows"]) == 5
    by_variant = {r["variant"]: r for r in saved["rows"]}
    assert by_variant["plain"]["vs_plain"] == 1.0
    assert by_variant["paper_code"]["vs_paper_code"] is None
    for row in saved["rows"]:
        assert row["ms_per_step"] > 0 and row["images_per_s"] == pytest.approx(
            8000 / row["ms_per_step"])
    sgt = by_variant["sgt"]
    assert sgt["vs_paper_code"] == pytest.approx(
        sgt["ms_per_step"] / by_variant["paper_code"]["ms_per_step"])


def test_paper_code_step_masks_the_same_count_with_the_originals_rng(monkeypatch):
    """The baseline really is the original's algorithm: numpy fills, k·H·W pixels."""
    draws = []
    real_uniform = np.random.uniform

    def spy(lo, hi, size):
        draws.append(size)
        return real_uniform(lo, hi, size)

    monkeypatch.setattr(np.random, "uniform", spy)
    torch.manual_seed(0)
    net = MNISTNet()
    before = [p.detach().clone() for p in net.parameters()]
    step = benchmark.paper_code_step(net, torch.device("cpu"), "fp32")
    step(torch.randn(3, 1, 28, 28), torch.tensor([1, 2, 3]))
    assert draws == [392] * 3  # one draw per sample and channel: 50 % of 28 × 28
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_bad_flags_are_refused():
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--models", "alexnet"])
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--batch-size", "0"])
