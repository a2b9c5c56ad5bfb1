"""The benchmark: tiny CPU runs of every mode through the real configs, builders and module."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from experiments import benchmark
from experiments.runs.build import build
from sgt.errors import SettingError
from sgt.models import MNISTNet
from sgt.module import SaliencyGuidedModule
from tests.conftest import SHARED_DATA, needs_mnist

TINY = ["--device", "cpu", "--datasets", "mnist", "--data", "random", "--batch-size", "8",
        "--iters", "2", "--warmup", "1", "-o", "dataset.eval_batch_size=16"]


@pytest.fixture
def builds(monkeypatch) -> list[str]:
    """The model classes the benchmark builds, through the runs layer's ``build``."""
    built = []

    def spy(cfg):
        datamodule, module = build(cfg)
        built.append(type(module.net).__name__)
        return datamodule, module

    monkeypatch.setattr(benchmark, "build", spy)
    return built


def test_step_mode_times_every_variant_of_the_recipe_and_writes_json(tmp_path, monkeypatch,
                                                                     builds):
    calls = []
    real = SaliencyGuidedModule.sgt_forward

    def spy(self, x, y, masked=True):
        calls.append(self.k)
        return real(self, x, y, masked)

    monkeypatch.setattr(SaliencyGuidedModule, "sgt_forward", spy)
    out = tmp_path / "bench.json"
    rows = benchmark.main([*TINY, "--precision", "fp32", "--out", str(out)])
    assert [r.variant for r in rows] == ["plain", "sgt", "sgt_train_sal", "sgt_concat",
                                         "paper_code"]
    assert set(builds) == {"MNISTNet"}  # the MNIST recipe's model, from the configs
    assert calls.count(0.0) == 3 and calls.count(0.5) == 9  # (warmup + iters) per variant
    saved = json.loads(out.read_text())
    assert saved["mode"] == "step" and saved["hardware"] == "cpu" and len(saved["rows"]) == 5
    by_variant = {r["variant"]: r for r in saved["rows"]}
    assert by_variant["plain"]["vs_plain"] == 1.0
    assert by_variant["paper_code"]["vs_paper_code"] is None
    for row in saved["rows"]:
        assert row["ms_per_step"] > 0 and row["images_per_s"] == pytest.approx(
            8000 / row["ms_per_step"])
    sgt = by_variant["sgt"]
    assert sgt["vs_paper_code"] == pytest.approx(
        sgt["ms_per_step"] / by_variant["paper_code"]["ms_per_step"])


def test_loop_mode_times_the_step_inside_trainer_fit_against_the_bare_step(
        tmp_path, monkeypatch, capsys, builds):
    steps = []
    real = SaliencyGuidedModule.training_step
    monkeypatch.setattr(SaliencyGuidedModule, "training_step",
                        lambda self, batch, i: steps.append(i) or real(self, batch, i))
    out = tmp_path / "loop.json"
    rows = benchmark.main(["loop", *TINY, "-o", "trainer.enable_progress_bar=false",
                           "--loop-variants", "plain,sgt", "--out", str(out)])
    assert steps == [0, 1, 2] * 2  # Trainer.fit ran warmup + iters real steps per variant
    assert builds == ["MNISTNet"] * 4  # per variant: the fitted module and the bare one
    assert [(r.variant, r.data, r.batch_size, r.precision) for r in rows] == [
        ("plain", "random", 8, "fp32"), ("sgt", "random", 8, "fp32")]
    saved = json.loads(out.read_text())["rows"]
    for row in saved:
        assert row["loop_ms_per_step"] > 0 and row["step_ms_per_step"] > 0
        assert row["loop_vs_step"] == pytest.approx(
            row["loop_ms_per_step"] / row["step_ms_per_step"])
    printed = capsys.readouterr().out
    assert "step inside Trainer.fit vs the bare step, cpu" in printed
    assert all(f" {row['loop_vs_step']:.2f} " in printed for row in saved)  # the ratios


def test_inprocess_startup_phases_of_the_recipe(tmp_path):
    args = benchmark.parse_args(["startup", *TINY, "--work", str(tmp_path)])
    rows = benchmark.inprocess_phases("mnist", args)
    assert [r.phase for r in rows] == [
        "compose the config", "build (network, module, datamodule object)",
        "data (read, check, split)", "model to the device, configure_model",
        "first step (incl. compile)"]
    assert all(r.seconds >= 0 and r.source == "in-process" for r in rows)


@pytest.mark.slow  # ~16 s: a real evaluate command under the profiler
@needs_mnist
def test_eval_mode_splits_a_real_commands_start_up_and_the_evaluation(tmp_path):
    """One real ``experiments.train`` step in a fresh process, then the evaluation of it."""
    out = tmp_path / "eval.json"
    rows = benchmark.main([
        "eval", "--device", "cpu", "--datasets", "mnist", "-o", f"paths.data_dir={SHARED_DATA}",
        "-o", "dataset.batch_size=8", "-o", "dataset.eval_batch_size=16",
        "-e", "eval.methods=[grad,random]", "-e", "eval.metric.limit_batches=1",
        "-e", "eval.batch_size=8", "-e", "eval.num_examples=2", "--no-import-time",
        "--work", str(tmp_path / "work"), "--out", str(out)])
    command = {r.phase: r.seconds for r in rows if r.source == "command"}
    parts = ["imports (python -X importtime; all of the process's)",
             "config, checks, model, data read (to callbacks built)",
             "Trainer, Lightning set-up (to the first batch)", "first step (incl. compile)"]
    assert sum(command[p] for p in parts) == pytest.approx(
        command["= command → first step done"])
    assert command[parts[0]] > 0 and command[parts[3]] > 0
    assert command["  of the imports: torch"] > 0
    evaluation = {r.phase for r in rows if r.source == "evaluation"}
    assert evaluation == {
        "start-up: compose the config", "model: build, read checkpoint, to the device",
        "data: read, to the device", "attribution: grad", "attribution: random",
        "evaluation: masking, forwards, counting", "examples (attributions of a few inputs)",
        "writing files (json, csv, yaml, examples)", "figures",
        "other (checks, result, logging)"}
    assert len(json.loads(out.read_text())["rows"]) == len(rows)
    # the evaluation wrote into the benchmark's copy of the run, not into the run
    assert not (tmp_path / "work" / "run_mnist" / "eval").exists()
    assert (tmp_path / "work" / "eval_mnist" / "eval" / "accuracy_drop.json").is_file()


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
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    step = benchmark.paper_code_step(net, optimizer, torch.device("cpu"), "fp32")
    step(torch.randn(3, 1, 28, 28), torch.tensor([1, 2, 3]))
    assert draws == [392] * 3  # one draw per sample and channel: 50 % of 28 × 28
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_bad_flags_are_refused():
    for argv in (["--variants", "alexnet"], ["--batch-size", "0"], ["warp"],
                 ["loop", "--iters", "0"]):
        with pytest.raises(SystemExit):
            benchmark.parse_args(argv)


def test_random_data_is_refused_for_a_dataset_without_a_stand_in(tmp_path):
    args = benchmark.parse_args(["loop", *TINY, "--work", str(tmp_path)])
    datamodule, _ = build(benchmark.train_config("timeseries", args))
    with pytest.raises(SettingError, match="no random stand-in for"):
        benchmark.use_random_data(datamodule, 8)

