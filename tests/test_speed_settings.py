"""Speed settings of the SGT module: ``sgt.compile`` modes (CUDA graphs need a GPU), lazy
imports (training loads no attribution library), and data decoded once per run."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from experiments.train import train
from sgt.data import MNISTDataModule
from sgt.errors import SettingError
from sgt.models import MNISTNet
from sgt.module import COMPILE_MODES, SaliencyGuidedModule
from tests.conftest import ROOT, needs_mnist


def test_compile_takes_true_false_or_a_torch_compile_mode():
    for value in (True, False, *COMPILE_MODES):
        SaliencyGuidedModule.check_settings(compile=value)
    with pytest.raises(SettingError) as err:
        SaliencyGuidedModule.check_settings(compile="fast")
    assert str(err.value) == ("sgt.compile must be true, false or a torch.compile mode "
                              "(default, reduce-overhead, max-autotune, "
                              "max-autotune-no-cudagraphs), got 'fast'")


def test_the_mode_reaches_torch_compile(monkeypatch):
    modes = []
    monkeypatch.setattr(nn.Module, "compile", lambda self, **kwargs: modes.append(kwargs))
    for value in (True, "max-autotune-no-cudagraphs", False):
        SaliencyGuidedModule(MNISTNet(), num_classes=10, compile=value).configure_model()
    assert modes == [{"mode": None}, {"mode": "max-autotune-no-cudagraphs"}]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a CPU")
@pytest.mark.parametrize("mode", ["reduce-overhead", "max-autotune"])
def test_cuda_graphs_are_refused_on_a_cpu_before_compiling(mode, monkeypatch):
    monkeypatch.setattr(nn.Module, "compile", lambda self, **kwargs: pytest.fail("compiled"))
    module = SaliencyGuidedModule(MNISTNet(), num_classes=10, compile=mode)
    with pytest.raises(SettingError) as err:
        module.configure_model()
    assert str(err.value) == (f"sgt.compile={mode} captures CUDA graphs, which need a GPU; "
                              "this run trains on cpu: use sgt.compile=true (or "
                              "max-autotune-no-cudagraphs) there")


def test_training_imports_no_attribution_library():
    """Importing sgt, its evaluation and the training script leaves captum unloaded until an
    attribution method runs; every exported name still resolves."""
    code = ("import sys, sgt, sgt.evaluation, experiments.train\n"
            "names = [getattr(sgt, n) for n in sgt.__all__]\n"
            "assert 'captum' not in sys.modules\n"
            "import torch\n"
            "from sgt.saliency import Explainer, ModalityForward\n"
            "net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))\n"
            "Explainer(ModalityForward(net, sgt.TimeSeriesModality()), ['grad'])("
            "'grad', torch.zeros(1, 2, 2), torch.zeros(1, dtype=torch.long))\n"
            "assert 'captum' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


@needs_mnist
def test_a_run_decodes_each_split_once(train_cfg, monkeypatch):
    """``train`` reads the data before fitting; Lightning's own ``setup`` calls (fit, test)
    must not decode it again."""
    reads = []
    real = MNISTDataModule.load_split
    monkeypatch.setattr(MNISTDataModule, "load_split",
                        lambda self, train: reads.append(train) or real(self, train))
    train(train_cfg())
    assert sorted(reads) == [False, True]  # the training file once, the test file once
