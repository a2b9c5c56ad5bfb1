"""Model randomisation test: Spearman per row (torchmetrics'), cascading behaviour."""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics.functional import spearman_corrcoef

from sgt.evaluation import CascadingRandomization, spearman
from sgt.evaluation.sanity import randomizable_layers


def test_spearman_matches_torchmetrics_row_by_row() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 6, (5, 40), generator=g).float()  # many ties
    b = a + torch.randn(5, 40, generator=g)
    expected = spearman_corrcoef(a.T, b.T)  # torchmetrics: one correlation per column
    assert torch.allclose(spearman(a, b), expected, atol=1e-4)
    assert torch.allclose(spearman(a, a), torch.ones(5))
    assert torch.allclose(spearman(b, -b), -torch.ones(5))


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 16),
                         nn.ReLU(), nn.Linear(16, 3))


def test_layers_are_randomised_from_the_top_and_the_model_is_untouched() -> None:
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 3, (6,))
    rows = CascadingRandomization(seed=0)(net, [(x, y)], ["grad", "random"]).rows
    assert [name for name, _ in randomizable_layers(net)] == ["0", "3", "5"]
    grad = [r for r in rows if r["method"] == "grad"]
    assert [r["layer"] for r in grad] == ["original", "5", "3", "0"]
    assert grad[0]["spearman"] == 1.0
    assert all(r["spearman"] < 0.9 for r in grad[1:])  # gradients follow the weights
    # a random "saliency" ignores the model: the check exposes it (correlation stays 1)
    assert all(abs(r["spearman"] - 1) < 1e-5 for r in rows if r["method"] == "random")
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert CascadingRandomization(seed=0)(net, [(x, y)], ["grad"]).rows == grad
