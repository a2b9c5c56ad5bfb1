"""The ERASER tasks through the command line: Movies on the real data (the Table 1 grid as a
Hydra sweep, evaluate, the Table 1 view), FEVER and e-SNLI on small corpora written in
ERASER's layout, and a missing dataset. Tiny models and a few batches: these prove the
configs and the files, not the numbers."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from experiments import report
from experiments.evaluate import evaluate
from sgt.evaluation.eraser import BINS
from tests.conftest import ROOT, SHARED_DATA, compose_config
from tests.eraser_corpus import write_corpus

MOVIES = SHARED_DATA / "eraser" / "movies"
needs_movies = pytest.mark.skipif(not (MOVIES / "test.jsonl").is_file(),
                                  reason=f"ERASER Movies not found under {MOVIES}")

METHODS = ["grad", "integrated_gradients", "smoothgrad", "random"]
LENGTH = 64  # tokens per encoded Movies row (the documents are longer: the cut is tested too)
EVAL_ROWS = 4  # test instances evaluated: one batch
TINY_TRAIN = ["trainer.max_epochs=1", "trainer.limit_train_batches=2",
              "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
              "trainer.enable_model_summary=false", "dataset.batch_size=8",
              "model.embedding_dim=8", "model.hidden_size=8"]
# Movies: short rows, and a short vocabulary (a 37k-word list takes seconds to configure)
TINY_MOVIES = [f"dataset.max_length={LENGTH}", "dataset.max_vocab_size=500"]
TINY_EVAL = [f"eval.batch_size={EVAL_ROWS}", "eval.metric.limit_batches=1",
             "eval.num_examples=0", "+eval.method_args.integrated_gradients.n_steps=4"]
RECORD_KEYS = {"annotation_id", "classification", "classification_scores",
               "comprehensiveness_classification_scores", "sufficiency_classification_scores",
               "thresholded_scores", "rationales"}


def cli(script: str, *args: str, data_dir: Path, cache_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SGT_DATA_DIR": str(data_dir), "SGT_CACHE_DIR": str(cache_dir),
           "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", f"experiments.{script}", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def document_tokens(root: Path, docid: str) -> list[str]:
    return [t for line in (root / "docs" / docid).read_text().splitlines()
            for t in line.strip().split(" ") if t]


def check_records(records: list[dict], classes: set[str]) -> None:
    """The fields and invariants of ERASER's per-instance results (its ``metrics.py`` input)."""
    for r in records:
        assert set(r) == RECORD_KEYS
        for key in ("classification_scores", "comprehensiveness_classification_scores",
                    "sufficiency_classification_scores"):
            assert set(r[key]) == classes
            assert sum(r[key].values()) == pytest.approx(1.0, abs=1e-5)
        assert r["classification"] == max(r["classification_scores"],
                                          key=r["classification_scores"].get)
        assert [t["threshold"] for t in r["thresholded_scores"]] == list(BINS)
        for t in r["thresholded_scores"]:
            assert sum(t["sufficiency_classification_scores"].values()) == pytest.approx(
                1.0, abs=1e-5)


# -- Movies: the Table 1 grid trains both models, then the evaluate CLI -----------------
@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m experiments.train -m grid=eraser_table1`` on Movies, tiny: job 0 is the
    regular model (k = 0), job 1 the SGT one (k = 0.5), each evaluated with ``eval=eraser``."""
    sweep = tmp_path_factory.mktemp("table") / "sweep"
    done = cli("train", "-m", "grid=eraser_table1", *TINY_MOVIES, *TINY_TRAIN, *TINY_EVAL,
               f"hydra.sweep.dir={sweep}", data_dir=SHARED_DATA,
               cache_dir=tmp_path_factory.mktemp("cache"))
    assert done.returncode == 0, done.stderr[-3000:]
    return sweep


@needs_movies
def test_table1_view_writes_the_poster_table_beside_ours(table: Path, tmp_path: Path) -> None:
    report.main([str(table), "--view", "table1", "--out", str(tmp_path), "--html"])
    saved = json.loads((tmp_path / "table1_movies.json").read_text())
    rows = saved["rows"]
    assert [(r["method"], r["model"]) for r in rows] == [
        (m, k) for m in METHODS for k in ("regular", "sgt")]
    for model, job, k in (("regular", "0", 0.0), ("sgt", "1", 0.5)):
        run = table / job
        assert OmegaConf.load(run / ".hydra" / "config.yaml").sgt.k == k
        result = json.loads((run / "eval" / "eraser.json").read_text())
        test_acc = json.loads((run / "metrics.json").read_text())["test/acc"]
        for r in (r for r in rows if r["model"] == model):
            for key, field in (("comprehensiveness", "comprehensiveness_aopc"),
                               ("sufficiency", "sufficiency_aopc"),
                               ("token_f1", "token_f1_macro"), ("auprc", "token_auprc")):
                assert r[key] == result[field][r["method"]], (model, key)
            assert r["test_acc"] == test_acc and r["num_samples"] == EVAL_ROWS
    ig = {r["model"]: r for r in rows if r["method"] == "integrated_gradients"}
    assert (ig["regular"]["poster_comprehensiveness"], ig["sgt"]["poster_comprehensiveness"],
            ig["regular"]["poster_sufficiency"], ig["sgt"]["poster_sufficiency"]) == (
        0.265, 0.306, 0.054, 0.002)
    assert {r["poster_sufficiency"] for r in rows if r["method"] == "random"} == {0.294}
    with (tmp_path / "table1_movies.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 8
    md = [[c.strip() for c in line.strip().strip("|").split("|")]
          for line in (tmp_path / "table1_movies.md").read_text().splitlines()
          if line.startswith("| ")]
    header = md[0]
    cells = {row[0]: dict(zip(header, row, strict=True)) for row in md[1:]}
    assert list(cells) == ["Comprehensiveness", "Sufficiency", "Token F1", "AUPRC"]
    # the poster's layout: "ours (poster)" per method and model
    assert cells["Comprehensiveness"]["Integrated Gradients SGT"] == (
        f"{ig['sgt']['comprehensiveness']:.3f} (0.306)")
    assert cells["Sufficiency"]["Integrated Gradients Trad."] == (
        f"{ig['regular']['sufficiency']:.3f} (0.054)")
    # the 4 evaluated reviews are all NEG: no model beats always answering NEG, and the
    # table says that its numbers mean nothing
    assert (tmp_path / "table1_movies.md").read_text().count("**Warning**: ") == 2
    assert (tmp_path / "table1_movies.html").read_text().count("<tr>") == 5


@needs_movies
def test_movies_run_evaluates_again_with_eraser_files(table: Path, tmp_path: Path) -> None:
    """Training wrote eval/eraser* (``eval=eraser``); `experiments.evaluate ckpt_path=<run>
    eval=eraser` (here in this process) rebuilds the run from its saved config and adds
    eval/eraser_2*."""
    run = table / "0"  # the regular model
    evaluate(compose_config("evaluate.yaml", [f"ckpt_path={run}", "eval=eraser", *TINY_EVAL,
                                              "eval.metric.progress=false"], tmp_path / "job"))
    result = json.loads((run / "eval" / "eraser_2.json").read_text())
    assert set(result["comprehensiveness_aopc"]) == set(METHODS) and result["num_samples"] == 4
    # the rebuilt model is the trained one: the gradient (no random draw) scores the same
    first = json.loads((run / "eval" / "eraser.json").read_text())
    for key in ("comprehensiveness_aopc", "sufficiency_aopc", "token_auprc"):
        assert result[key]["grad"] == pytest.approx(first[key]["grad"], abs=1e-6), key
    annotations = jsonl(MOVIES / "test.jsonl")[:EVAL_ROWS]
    for name in (f"{stem}_{m}.jsonl" for stem in ("eraser", "eraser_2") for m in METHODS):
        records = jsonl(run / "eval" / name)
        check_records(records, {"NEG", "POS"})
        assert [r["annotation_id"] for r in records] == [a["annotation_id"] for a in
                                                         annotations]
        for r, a in zip(records, annotations, strict=True):
            (rationale,) = r["rationales"]
            docid = a["annotation_id"]
            assert rationale["docid"] == docid
            # soft scores cover the whole document; only the first LENGTH tokens are scored
            soft = rationale["soft_rationale_predictions"]
            assert len(soft) == len(document_tokens(MOVIES, docid))
            assert all(s == 0.0 for s in soft[LENGTH:])
            # the hard rationale is as long as the whole human one (ERASER's scorer reads
            # whole documents), as far as the encoded tokens go, and lies among them
            human = {t for group in a["evidences"] for ev in group
                     for t in range(ev["start_token"], ev["end_token"])}
            hard = [t for s in rationale["hard_rationale_predictions"]
                    for t in range(s["start_token"], s["end_token"])]
            assert len(hard) == min(len(human), LENGTH) and max(hard) < LENGTH


# -- FEVER and e-SNLI on generated corpora --------------------------------------------
def test_fever_and_esnli_train_and_evaluate_through_the_cli(tmp_path: Path) -> None:
    corpora = {task: write_corpus(tmp_path / "data" / "eraser" / task, task, (32, 8, 8))
               for task in ("fever", "esnli")}
    sweep = tmp_path / "sweep"
    # model=bilstm: Hydra composes the sweep's base config without the swept experiment,
    # and that config must take the model's sizes too
    done = cli("train", "-m", "experiment=fever,esnli", "model=bilstm", *TINY_TRAIN,
               "eval=eraser", *TINY_EVAL, "eval.metric.progress=false",
               "trainer.enable_progress_bar=false", f"hydra.sweep.dir={sweep}",
               data_dir=tmp_path / "data",
               cache_dir=tmp_path / "cache")
    assert done.returncode == 0, done.stderr[-3000:]
    classes = {"fever": {"SUPPORTS", "REFUTES"},
               "esnli": {"entailment", "neutral", "contradiction"}}
    for job, task in enumerate(("fever", "esnli")):
        run = sweep / str(job)
        assert OmegaConf.load(run / ".hydra" / "config.yaml").dataset.task == task
        result = json.loads((run / "eval" / "eraser.json").read_text())
        assert set(result["comprehensiveness_aopc"]) == set(METHODS)
        assert result["num_samples"] == EVAL_ROWS
        test = corpora[task]["test"][:EVAL_ROWS]
        for method in METHODS:
            records = jsonl(run / "eval" / f"eraser_{method}.jsonl")
            check_records(records, classes[task])
            assert [r["annotation_id"] for r in records] == [i.annotation_id for i in test]
            for r, instance in zip(records, test, strict=True):
                # premise first for e-SNLI; FEVER's claim is no document: never scored
                assert [d["docid"] for d in r["rationales"]] == instance.docids
                for d in r["rationales"]:
                    assert len(d["soft_rationale_predictions"]) == len(
                        instance.docs[d["docid"]])


# -- missing data -----------------------------------------------------------------------
def test_missing_dataset_is_one_error_line_and_no_run_folder(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    run = tmp_path / "run"
    done = cli("train", "experiment=fever", f"hydra.run.dir={run}", data_dir=empty,
               cache_dir=tmp_path / "cache")
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(empty / "eraser" / "fever") in errors[0], done.stderr
    assert not run.exists()


def test_a_grid_looks_for_its_data_before_any_job(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    sweep = tmp_path / "sweep"
    done = cli("train", "-m", "grid=eraser_table1", "experiment=esnli",
               f"hydra.sweep.dir={sweep}", data_dir=empty, cache_dir=tmp_path / "cache")
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: ERASER esnli not found")
    assert str(empty / "eraser" / "esnli") in errors[0]
    assert not sweep.exists()
