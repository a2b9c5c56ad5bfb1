"""A second, independent check of ROAD: Quantus's ``ROAD`` (MoRF only) beside ours on a
briefly trained MNIST CNN, with the same attributions and the same ranking.

Quantus is not a dependency of sgt: this optional test (marked slow) is skipped when it is
not installed (``pip install quantus==0.6.0``; its 0.6 ROAD handles one-channel images only).
Quantus ranks ``argsort(-a)`` of the attributions it is given, so it gets the ranks of our
:meth:`~sgt.evaluation.Road.ranks` as values; with the noise off on both sides every
difference left would be the imputation's or the counting's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sgt.data import MNISTDataModule
from sgt.evaluation import Road
from sgt.features import ImageModality
from sgt.models import MNISTNet
from sgt.saliency import Explainer, ModalityForward
from tests.conftest import SHARED_DATA, needs_mnist

quantus = pytest.importorskip(
    "quantus", reason="quantus is not installed (pip install quantus==0.6.0): an optional "
    "cross-check of ROAD, not a dependency of sgt")
pytestmark = [pytest.mark.slow, needs_mnist]

PERCENTAGES = [10, 20, 30, 40, 50, 60, 70, 80, 90]
IMAGES = 200


@pytest.fixture(scope="module")
def model_and_data() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The MNIST CNN after 200 Adadelta steps and test images, normalised as in training."""
    torch.manual_seed(0)
    data = MNISTDataModule(data_dir=str(SHARED_DATA), batch_size=64, eval_batch_size=IMAGES,
                           on_device=False)
    data.setup()
    model = MNISTNet(num_classes=10)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    for step, (x, y, *_) in enumerate(data.train_dataloader()):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        if step == 200:
            break
    pixels, y = data.splits["test"][0][:IMAGES].float() / 255, data.splits["test"][1][:IMAGES]
    return model.eval(), (pixels - data.mean[0]) / data.std[0], y


def test_quantus_road_morf_curve_equals_ours(model_and_data) -> None:
    model, x, y = model_and_data
    road = Road(levels=[p / 100 for p in PERCENTAGES], fill_args={"noise": 0.0},
                random_baseline=False, progress=False)
    ours = road(model, [(x, y)], ["grad"]).morf["grad"]

    # the ranking Road used, built as its template builds it
    explainer = Explainer(ModalityForward(model, ImageModality(), road.output), ["grad"],
                          road.seed, road.feature_score)
    _, scores = explainer("grad", x, y)
    ranks = road.ranks(explainer, "grad", scores, None)  # (B, 784), 0 = the most relevant
    values = (784 - ranks).view(-1, 1, 28, 28).double().numpy()  # distinct: no ties to break

    metric = quantus.ROAD(percentages=PERCENTAGES, noise=0.0, normalise=False, abs=False,
                          disable_warnings=True, display_progressbar=False)
    theirs = metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=values,
                    device="cpu", batch_size=IMAGES, softmax=False)
    theirs = [float(theirs[p]) for p in PERCENTAGES]
    print("ours", ours, "quantus", theirs,
          "max diff", max(abs(a - b) for a, b in zip(ours, theirs, strict=True)))
    assert ours[0] > 0.5 > ours[-1]  # a model that reads the images; removal hurts it
    np.testing.assert_allclose(ours, theirs, atol=1.5 / IMAGES)  # at most one image apart
