"""The HTML report of a real tiny run and of a sweep made from it, opened in headless
Chromium: the page loads without a console message, every figure is drawn, and a click on a
column header sorts the sweep's table.

The browser checks run in a test-only copy of the page with a script appended that writes
what it finds into the DOM, which ``chromium --dump-dom`` prints; console messages (errors,
uncaught exceptions) come from Chromium's log on stderr.
"""

from __future__ import annotations

import contextlib
import csv
import html
import io
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from experiments.report import main as report_main
from experiments.report import write_run_report
from experiments.runs.collect import collect, rows
from experiments.runs.files import read_metrics
from experiments.runs.history import read_history
from experiments.runs.pages import best_and_worst, value_cell
from experiments.runs.views import Options
from experiments.runs.views.sweep import show as sweep_view
from experiments.train import train
from tests.conftest import CPU_TEST_OVERRIDES, compose_config, needs_mnist

CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium"),
                             shutil.which("chromium-browser")) if p and Path(p).is_file()), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium binary (/usr/bin/chromium): apt-get install -y chromium")
QUICK_EVAL = ["eval=accuracy_drop", "eval.methods=[grad,random]", "eval.batch_size=32",
              "eval.metric.limit_batches=1", "eval.num_examples=2", "eval.metric.progress=false"]
# job -> (k, test accuracy, AUC of grad): a sweep made of copies of the real run; job 2 has
# neither test accuracy nor evaluation (a failed job)
SWEEP = {"0": (0.0, 0.91, 0.40), "1": (0.5, 0.95, 0.45), "2": (0.3, None, None),
         "10": (0.1, 0.90, 0.30)}

# Appended to a copy of the page: on load, record every image's drawn size and the job order
# after one and two clicks on each sortable header, as JSON in <pre id="checks">.
CHECKS = """<script>
window.addEventListener("load", function () {
  var out = {images: [], sorts: {}};
  document.querySelectorAll("img").forEach(function (img) {
    out.images.push({alt: img.alt, complete: img.complete, width: img.naturalWidth,
                     height: img.naturalHeight});
  });
  var table = document.querySelector("table.sortable");
  var jobs = function () {
    return Array.from(table.tBodies[0].rows).map(function (r) { return r.cells[0].dataset.sort; });
  };
  out.initial = jobs();
  out.overrides = Array.from(table.tBodies[0].rows).map(function (r) {
    return r.cells[1].textContent; });
  out.bold = table.querySelectorAll("b").length;
  Array.from(table.tHead.rows[0].cells).forEach(function (th) {
    var name = th.textContent.trim();
    th.querySelector("button").click();
    var first = jobs();
    th.querySelector("button").click();
    out.sorts[name] = [first, jobs(), th.getAttribute("aria-sort")];
  });
  var pre = document.createElement("pre");
  pre.id = "checks";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run dir as `python -m experiments.train ... eval=accuracy_drop` leaves it: two short
    epochs of SGT on MNIST, then a quick evaluation with two saved examples."""
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    cfg = compose_config("train.yaml", [*CPU_TEST_OVERRIDES, "trainer.max_epochs=2",
                                        "sgt.k=0.5", *QUICK_EVAL], run_dir)
    train(cfg)
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")  # Hydra's copy, made by the CLI
    OmegaConf.save(OmegaConf.create(["sgt.k=0.5", "eval=accuracy_drop"]),
                   run_dir / ".hydra" / "overrides.yaml")
    return run_dir


@pytest.fixture(scope="module")
def sweep(run: Path) -> Path:
    """Jobs copied from the real run with their own k, test accuracy and AUC."""
    root = run.parent / "sweep"
    for job, (k, acc, auc) in SWEEP.items():
        shutil.copytree(run, root / job, ignore=shutil.ignore_patterns(
            "*.ckpt", "report*.html", *([] if auc else ["eval"])))
        if auc:
            result = root / job / "eval" / "accuracy_drop.json"
            data = json.loads(result.read_text())
            data["auc"]["grad"] = auc
            result.write_text(json.dumps(data))
        cfg = OmegaConf.load(root / job / ".hydra" / "config.yaml")
        cfg.sgt.k = k
        OmegaConf.save(cfg, root / job / ".hydra" / "config.yaml")
        markup = ["+note=<b>x</b>"] if job == "0" else []  # must show as text, not bold
        OmegaConf.save(OmegaConf.create([f"sgt.k={k}", "trainer.max_epochs=2", *markup]),
                       root / job / ".hydra" / "overrides.yaml")
        metrics = {**read_metrics(run), "test/acc": acc}
        (root / job / "metrics.json").write_text(json.dumps(metrics))
    return root


def open_in_chromium(page: Path) -> tuple[dict[str, Any], list[str]]:
    """What the checks script found in a test copy of ``page``, and the console lines."""
    check = page.with_name(f"check_{page.name}")
    check.write_text(page.read_text(encoding="utf-8").replace("</body>", f"{CHECKS}</body>"),
                     encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        done = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", "--enable-logging=stderr",
             "--v=0", "--virtual-time-budget=10000", "--dump-dom", check.as_uri()],
            capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="checks">(.*?)</pre>', done.stdout, re.S)
    assert found, f"the page's checks did not run: {done.stderr[-2000:]}"
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return json.loads(html.unescape(found.group(1))), console


def assert_self_contained(page: str) -> None:
    """Nothing to fetch: every src is an inline PNG, every link an anchor in the page."""
    sources = re.findall(r'\bsrc="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert all(h.startswith("#") for h in re.findall(r'\bhref="([^"]*)"', page))
    assert "<link" not in page and "url(" not in page


def assert_drawn(images: list[dict[str, Any]], captions: list[str]) -> None:
    assert [image["alt"] for image in images] == captions
    assert all(i["complete"] and i["width"] > 100 and i["height"] > 100 for i in images), images


@pytest.fixture(scope="module")
def run_report(run: Path) -> Path:
    """The run's page, written beside an earlier report.html that must survive."""
    (run / "report.html").write_text("an earlier report")
    return write_run_report(run, run)


@pytest.fixture(scope="module")
def sweep_report(sweep: Path) -> tuple[Path, str]:
    """``python -m experiments.report <sweep> --html``: the page and what it printed."""
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        report_main([str(sweep), "--html"])
    return sweep / "report.html", printed.getvalue()


@needs_mnist
def test_run_report_shows_metrics_curves_evaluation_and_config(run: Path, run_report: Path
                                                               ) -> None:
    assert run_report == run / "report_2.html"  # the earlier report.html is kept
    assert (run / "report.html").read_text() == "an earlier report"
    page = run_report.read_text(encoding="utf-8")
    assert_self_contained(page)
    metrics = read_metrics(run)
    # real text with units: the test accuracy in %, the epoch times in s, k from the config
    test_acc = f"{100 * metrics['test/acc']:.2f} %"
    assert f'<div class="value">{test_acc}</div><div class="name">test accuracy</div>' in page
    acc_row = re.search(r'<tr><td data-sort="acc">acc</td>(.*?)</tr>', page).group(1)
    assert acc_row.endswith(f'<td class="num" data-sort="{metrics["test/acc"]}">{test_acc}</td>'
                            '<td data-sort="accuracy">accuracy</td>')
    times = metrics["epoch_time_s"]
    assert f"{sum(times):.1f} s ({len(times)} × {sum(times) / len(times):.1f} s)" in page
    assert "<title>Run report: SGT k=0.5 λ=1</title>" in page
    assert "<summary>sgt</summary>" in page and "k: 0.5" in page
    assert "<pre>sgt.k=0.5 eval=accuracy_drop</pre>" in page
    # the evaluation's summary per method: its AUC with 4 decimals
    auc = json.loads((run / "eval" / "accuracy_drop.json").read_text())["auc"]
    assert all(f">{auc[m]:.4f}</td>" in page for m in ("grad", "random"))


@needs_mnist
@needs_chromium
def test_run_report_opens_in_a_browser_with_every_figure_drawn(run_report: Path) -> None:
    checks, console = open_in_chromium(run_report)
    assert console == []
    assert_drawn(checks["images"], [
        "Per epoch: training (dashed) and validation (solid); accuracies in %",
        "accuracy_drop: curves",
        "Saliency maps of the first test examples",
        "Distribution of the input gradients of those examples"])


@needs_mnist
def test_sweep_report_marks_the_pareto_front(sweep: Path, sweep_report: tuple[Path, str]
                                             ) -> None:
    path, printed = sweep_report
    assert str(sweep / "report.csv") in printed and str(path) in printed
    assert path == sweep / "report.html"
    page = path.read_text(encoding="utf-8")
    assert_self_contained(page)
    # relative to random (same random area in every job): job 10 the most faithful, job 1
    # the most accurate, job 0 between them; job 2 has no evaluation and is on no front
    for job in ("0", "1", "10"):
        assert (f'<tr class="front"><td data-sort="{job}">{job} <span class="badge front">'
                in page)
    assert '<td data-sort="2">2</td>' in page
    assert ("Most faithful: job 10 (90.00 % test/acc); most accurate: job 1 (95.00 % "
            "test/acc).") in page
    assert (sweep / "report_tradeoff.png").stat().st_size > 0
    with (sweep / "report.csv").open() as f:
        fronts = {row["job"]: row["front"] for row in csv.DictReader(f)}
    assert fronts == {"0": "grad", "1": "grad", "2": "", "10": "grad"}
    assert '<div class="value">3 of 4</div><div class="name">evaluated</div>' in page


@needs_mnist
def test_sweep_report_sorted_by_a_column_marks_best_and_worst(sweep: Path,
                                                              sweep_report: tuple[Path, str]
                                                              ) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        files = sweep_view(collect([sweep]), Options(sweep, html=True, sort_by="test/acc"))
    page = files["html"].read_text(encoding="utf-8")
    assert files["html"] == sweep / "report_2.html"  # the first page is kept
    assert '<tr class="best"><td data-sort="1">1 <span class="badge best">' in page
    assert '<tr class="worst"><td data-sort="10">10 <span class="badge worst">' in page
    assert "Best: job 1 (95.00 % test/acc); worst: job 10 (90.00 % test/acc)." in page
    assert '<td class="num" data-sort="0.9">90.00 %</td>' in page  # job 10's test accuracy
    # by another column: lower AUC = more faithful, so job 10 is best and job 1 worst
    best, worst = best_and_worst(rows(collect([sweep]), "accuracy_drop"), "auc/grad")
    assert (best["job"], worst["job"]) == ("10", "1")


@needs_mnist
@needs_chromium
def test_sweep_report_sorts_by_a_click_and_draws_every_figure(
        sweep_report: tuple[Path, str]) -> None:
    checks, console = open_in_chromium(sweep_report[0])
    assert console == []
    assert_drawn(checks["images"], [
        "Test accuracy against each method's faithfulness relative to random, one point per "
        "run; the Pareto front joined",
        "Every metric against k",
        "Training curves: training (dashed) and validation (solid)",
        "accuracy_drop: curves",
        "Saliency maps (grad) of the first test examples",
        "Distribution of the input gradients of those examples"])
    assert checks["initial"] == ["0", "1", "2", "10"]
    # an override holding markup shows as its text
    assert checks["overrides"][0] == "sgt.k=0.0 +note=<b>x</b>" and checks["bold"] == 0
    sorts = checks["sorts"]
    assert sorts["job"][:2] == [["0", "1", "2", "10"], ["10", "2", "1", "0"]]  # numbers
    # by test accuracy up, then down; job 2 has none and stays last
    assert sorts["test/acc"] == [["10", "0", "1", "2"], ["1", "0", "10", "2"], "descending"]
    assert sorts["k"][:2] == [["0", "10", "2", "1"], ["1", "2", "10", "0"]]


@needs_mnist
@pytest.mark.parametrize(("job", "options", "message"), [
    ("", ["--html", "--sort-by", "auc/gard"], "error: --sort-by 'auc/gard' is not a result "
     "column of this sweep; choose one of: test/acc, val/acc_best, relative_auc/grad, "
     "relative_auc/random, auc/grad, auc/random"),
    ("", ["--view", "table2"], "none of the 4 runs has a time-series evaluation"),
])
def test_report_errors_are_one_line_and_write_nothing(
        sweep: Path, capsys: pytest.CaptureFixture, job: str, options: list[str],
        message: str) -> None:
    before = sorted(sweep.rglob("*"))
    with pytest.raises(SystemExit) as exit_:
        report_main([str(sweep / job), *options])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err, err
    assert sorted(sweep.rglob("*")) == before


def test_history_reads_epoch_values_of_every_log_version(tmp_path: Path) -> None:
    """Epoch means per split, counted from 1; per-step values, running maxima and rows
    outside an epoch left out; a resumed run's newer log wins for a repeated epoch."""
    logs = {"version_0": "epoch,step,train/loss_step,train/loss,val/acc,val/acc_best,eval/x\n"
                         "0,4,0.9,,,,\n0,9,,,0.5,0.5,\n0,9,,0.8,,,\n1,19,,,0.6,0.6,\n"
                         ",0,,,,,0.3\n",
            "version_1": "epoch,step,train/loss,val/acc\n1,19,0.7,0.65\n2,29,0.6,0.7\n"}
    for version, text in logs.items():
        (tmp_path / "csv" / version).mkdir(parents=True)
        (tmp_path / "csv" / version / "metrics.csv").write_text(text)
    assert read_history(tmp_path) == {"train/loss": [(1, 0.8), (2, 0.7), (3, 0.6)],
                                      "val/acc": [(1, 0.5), (2, 0.65), (3, 0.7)]}
    assert read_history(tmp_path / "elsewhere") == {}


@pytest.mark.parametrize(("key", "value", "text"), [
    ("test/acc", 0.98765, "98.77 %"),
    ("accuracy", 0.5, "50.00 %"),
    ("epoch_time_s", [1.0, 2.5, 3.0], "6.5 s (3 × 2.2 s)"),
    ("auc/grad", 0.123456, "0.1235"),
    ("epochs", 4, "4"),
    ("stopped_early", False, "False"),
    ("test/acc", None, "—"),
])
def test_values_carry_their_unit(key: str, value: Any, text: str) -> None:
    assert value_cell(key, value).text == text
