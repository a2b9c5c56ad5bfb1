"""Structure: scripts never import scripts, no import cycle, one owner per setting."""

from __future__ import annotations

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import hydra
import pytest
from hydra import compose, initialize_config_dir

from experiments.runs.build import sgt_settings
from experiments.runs.config_store import DATA_GIVEN, model_defaults, signature_defaults
from sgt.errors import SettingError
from sgt.evaluation import AccuracyDrop, CascadingRandomization
from sgt.module import SaliencyGuidedModule
from tests.conftest import CONFIGS, ROOT

SCRIPTS = sorted(p.stem for p in (ROOT / "experiments").glob("*.py") if p.stem != "__init__")


def _imports(path: Path, package: str) -> set[str]:
    """First-party modules a file imports (absolute ``sgt``/``experiments`` imports)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m.split(".")[0] == package}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("package", ["sgt", "experiments"])
def test_no_import_cycle(package: str) -> None:
    files = {_module_name(p): p for p in (ROOT / package).rglob("*.py")}
    graph = {name: {m for m in _imports(path, package) if m in files and m != name}
             for name, path in files.items()}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import cycle: " + " -> ".join([*path, name]))
        if name in done:
            return
        for dep in graph[name]:
            visit(dep, [*path, name])
        done.add(name)

    for name in graph:
        visit(name, [])


def test_no_script_imports_another_script() -> None:
    for script in SCRIPTS:
        imported = _imports(ROOT / "experiments" / f"{script}.py", "experiments")
        assert not imported & {f"experiments.{s}" for s in SCRIPTS}, script


@pytest.mark.slow  # ~45 s: one interpreter per script
def test_each_script_imports_alone_in_a_fresh_interpreter() -> None:
    probe = ("import importlib, sys; importlib.import_module(sys.argv[1]); "
             "print(sorted(m for m in sys.modules if m.startswith('experiments.') "
             "and not m.startswith('experiments.runs')))")

    def load(script: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", probe, f"experiments.{script}"], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)

    with ThreadPoolExecutor(4) as pool:
        for script, done in zip(SCRIPTS, pool.map(load, SCRIPTS), strict=True):
            assert done.returncode == 0, done.stderr[-2000:]
            assert done.stdout.strip() == repr([f"experiments.{script}"]), script


def _compose(config: str, *overrides: str):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
        return compose(config, overrides=list(overrides))


def test_sgt_defaults_come_from_the_module_signature() -> None:
    """configs/sgt/default.yaml states no value: the composed ones are the library's."""
    composed = sgt_settings(_compose("train.yaml", "dataset=cifar10").sgt)
    defaults = SaliencyGuidedModule.settings_defaults()
    recipe = {"saliency_output", "masked_bn_stats", "channels_last"}  # the CIFAR recipe's
    assert set(composed) == set(defaults)
    assert {k: v for k, v in composed.items() if k not in recipe} == {
        k: dict(v) if k == "fill_args" else v for k, v in defaults.items() if k not in recipe}


@pytest.mark.parametrize(("name", "factory"), [("accuracy_drop", AccuracyDrop),
                                               ("sanity", CascadingRandomization)])
def test_evaluation_defaults_come_from_its_signature(name: str, factory: type) -> None:
    metric = _compose("evaluate.yaml", f"eval={name}").eval.metric
    assert metric._target_ == f"{factory.__module__.rsplit('.', 1)[0]}.{factory.__name__}"
    for key, value in signature_defaults(factory).items():
        if key not in ("seed", "output"):  # the CLI's: the job's seed, the run's output
            assert metric[key] == value, key


@pytest.mark.parametrize(("name", "dataset"), [("bilstm", "movies"), ("text_transformer", "movies"),
                                               ("tcn", "timeseries"), ("lstm", "timeseries"),
                                               ("vgg16", "mnist")])
def test_model_sizes_come_from_the_model_signature(name: str, dataset: str) -> None:
    """A model config states no size: each is the constructor's default, changeable on the
    command line, and what the data gives (classes, vocabulary) is not a config key."""
    model = _compose("train.yaml", f"dataset={dataset}", f"model={name}").model
    factory = hydra.utils.get_class(model._target_)
    settings = {k: v for k, v in model.items() if k != "_target_"}
    assert settings == model_defaults(factory) != {}
    assert DATA_GIVEN.isdisjoint(settings)
    changed = _compose("train.yaml", f"dataset={dataset}", f"model={name}", "model.dropout=0.3")
    assert changed.model.dropout == 0.3


@pytest.mark.parametrize(("settings", "message"), [
    ({"concat_forward": True, "saliency_mode": "train"}, "needs sgt.saliency_mode=eval"),
    ({"concat_forward": True, "masked_bn_stats": False}, "cannot be kept to clean ones"),
    ({"k": True}, r"sgt.k must be a fraction in \[0, 1\), got True"),
    ({"fill": "constant", "fill_args": {"vale": 1}}, "takes no argument 'vale'"),
])
def test_the_library_refuses_impossible_settings(settings: dict, message: str) -> None:
    from torch import nn

    with pytest.raises(SettingError, match=message):
        SaliencyGuidedModule.check_settings(**settings)
    with pytest.raises(SettingError, match=message):
        SaliencyGuidedModule(nn.Linear(2, 2), **settings)


def test_unknown_settings_are_named_with_the_allowed_ones() -> None:
    """What the CLI checks for ``+sgt.foo=1`` (Python itself refuses the keyword)."""
    with pytest.raises(SettingError, match="unknown setting sgt.foo; allowed: k, lam"):
        SaliencyGuidedModule.check_settings(foo=1)
