"""Feature ranking for the removal evaluations: descending scores, exact ties by random keys."""

from __future__ import annotations

import pytest
import torch

from sgt.features import ImageModality, feature_scores
from sgt.saliency import (
    Explainer,
    ModalityForward,
    feature_ranks,
    least_relevant,
    most_relevant,
)
from tests.test_accuracy_drop import ThreePixels


def _explainer(seed: int = 0) -> Explainer:
    return Explainer(ModalityForward(ThreePixels(), ImageModality()), ["grad"], seed)


def test_ranks_follow_descending_scores_and_ties_follow_the_keys() -> None:
    scores = torch.tensor([[0.2, 0.9, 0.2, 0.5, 0.2]])
    keys = torch.tensor([0.0, 0.0, 3.0, 0.0, -1.0], dtype=torch.float64)
    # 0.9, 0.5, then the three 0.2s by descending key: position 2 (3.0), 0 (0.0), 4 (−1.0)
    assert feature_ranks(scores, keys).tolist() == [[3, 0, 2, 1, 4]]
    assert feature_ranks(scores).tolist() == [[2, 0, 3, 1, 4]]  # no keys: by position
    valid = torch.tensor([[True, False, True, True, True]])
    ranks = feature_ranks(scores, keys, valid)
    assert ranks[0, 1] == 4 and sorted(ranks[0, [0, 2, 3, 4]].tolist()) == [0, 1, 2, 3]


@pytest.mark.parametrize("n", [784, 1000, 37])
def test_most_and_least_relevant_counts(n: int) -> None:
    ranks = feature_ranks(torch.rand(3, n))
    for level in (0.1, 0.3, 0.5, 0.7, 0.9):
        top = most_relevant(ranks, level)
        assert top.sum(1).tolist() == [int(level * n)] * 3
        assert bool((ranks[top] < int(level * n)).all())
        kept = round(1 - level, 12)
        rest = least_relevant(ranks, kept)
        assert rest.sum(1).tolist() == [n - int(kept * n)] * 3
        assert not bool((rest & most_relevant(ranks, kept)).any())


def test_least_relevant_skips_padding() -> None:
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    valid = torch.tensor([[True, True, True, True, False, False]])
    ranks = feature_ranks(scores, valid=valid)
    assert least_relevant(ranks, 0.5, valid).tolist() == [[False, False, True, True, False,
                                                           False]]
    assert most_relevant(ranks, 0.5, valid).tolist() == [[True, True, False, False, False,
                                                          False]]


def test_an_all_tied_map_removes_no_rows() -> None:
    """``torch.topk`` on the CPU takes whole image rows for tied scores (p = 0.5 of a 28 × 28
    map: rows 14–27); the random keys scatter the removed pixels instead."""
    explainer = _explainer()
    scores = torch.zeros(4, 28 * 28)
    by_position = most_relevant(feature_ranks(scores), 0.5).view(4, 28, 28).sum(2)
    assert by_position[0].tolist() == [28] * 14 + [0] * 14  # what a sort's order does
    removed = most_relevant(feature_ranks(scores, explainer.tie_keys("grad", 784)), 0.5)
    per_row = removed.view(4, 28, 28).sum(2)  # removed pixels in each image row
    assert per_row.sum(1).tolist() == [392] * 4
    assert int(per_row.min()) >= 5 and int(per_row.max()) <= 23  # no full or empty row
    per_column = removed.view(4, 28, 28).sum(1)
    assert int(per_column.min()) >= 5 and int(per_column.max()) <= 23
    # one field for every sample and batch, as the reference's; another seed, another field
    assert torch.equal(removed[0], removed[3])
    assert torch.equal(explainer.tie_keys("grad", 784), _explainer().tie_keys("grad", 784))
    assert not torch.equal(explainer.tie_keys("grad", 784),
                           _explainer(seed=1).tie_keys("grad", 784))
    assert not torch.equal(explainer.tie_keys("grad", 784), explainer.tie_keys("random", 784))


def test_channel_reductions() -> None:
    # one 2 × 2 image, 3 channels; pixels: A (1, 1, 1), B (−3, −3, −3), C (2, −2, 0.6), D 0
    a = torch.tensor([[1.0, -3.0, 2.0, 0.0], [1.0, -3.0, -2.0, 0.0],
                      [1.0, -3.0, 0.6, 0.0]]).view(1, 3, 2, 2)
    m = ImageModality()
    assert feature_scores(m, a, "signed_sum")[0].tolist() == pytest.approx([3, -9, 0.6, 0])
    assert feature_scores(m, a, "abs_mean")[0].tolist() == pytest.approx([1, 3, 0.2, 0])
    assert feature_scores(m, a, "mean_abs")[0].tolist() == pytest.approx([1, 3, 4.6 / 3, 0])
    assert feature_scores(m, a, "mean")[0].tolist() == pytest.approx([1, -3, 0.2, 0])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_ties_break_the_same_on_the_gpu() -> None:
    cpu = _explainer()
    gpu = Explainer(ModalityForward(ThreePixels().cuda(), ImageModality()), ["grad"], 0)
    scores = (torch.rand(8, 784) * 4).round()  # few distinct values: many ties
    on_cpu = feature_ranks(scores, cpu.tie_keys("grad", 784))
    on_gpu = feature_ranks(scores.cuda(), gpu.tie_keys("grad", 784))
    assert torch.equal(on_gpu.cpu(), on_cpu)
