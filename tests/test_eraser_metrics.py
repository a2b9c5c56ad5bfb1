"""ERASER metrics: hand-computed on a bag-of-words model (whole and cut documents), then on
the planted-word corpus."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn
from torchmetrics.functional.classification import binary_precision_recall_curve
from torchmetrics.utilities.compute import auc

from sgt.data.eraser import EraserSplit
from sgt.errors import SettingError
from sgt.evaluation import RESULTS, EraserMetrics, EraserResult, result_from_dict
from sgt.evaluation.eraser import (
    auprc,
    bin_counts,
    delete_tokens,
    eraser_instances,
    rank_features,
    write_eraser_results,
)
from sgt.features import TextModality
from sgt.models import BiLSTM
from sgt.plots import result_figures
from sgt.plots.text import plot_token_highlights
from tests.eraser_corpus import datamodule, single_thread, trained_bilstm

# token id -> weight; 0 [PAD], 1 [UNK], 2 [SEP]; 3 and 14 are claims, the rest documents
DOC_A = [0.9, -0.1, 0.5, 0.05, -0.7, 0.3, 0.2, -0.02, 0.01, 0.4]  # ids 4 … 13
DOC_B = [-0.3, 0.6, 0.2, 0.1]  # ids 15 … 18
WEIGHTS = [0.0, 0.0, 0.0, 0.25, *DOC_A, -0.05, *DOC_B]


class Bag(nn.Module):
    """logits (s, −s), s = the summed weights of the tokens read: every answer is known."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(len(WEIGHTS), 1, padding_idx=0)
        with torch.no_grad():
            self.embedding.weight.copy_(torch.tensor(WEIGHTS)[:, None])

    def embed(self, ids: Tensor) -> Tensor:
        return self.embedding(ids)

    def classify(self, z: Tensor, tokens: Tensor | None = None) -> Tensor:
        s = (z[..., 0] * tokens).sum(1)
        return torch.stack([s, -s], 1)


def by_weight(forward, z, target, valid, generator):
    """Attribution = the embedding itself: tokens rank by |weight|."""
    return z


def _batch() -> tuple[Tensor, Tensor, Tensor]:
    # claim [SEP] document, padded: A has 10 document tokens, B 4
    a = [3, 2, *range(4, 14)]
    b = [14, 2, *range(15, 19)] + [0] * 6
    ids = torch.tensor([a, b])
    rationale = torch.zeros(2, 12, dtype=torch.bool)
    rationale[0, [2, 4]] = True  # A: document tokens 0 (0.9) and 2 (0.5)
    rationale[1, 3] = True  # B: document token 1 (0.6)
    return ids, torch.tensor([0, 1]), rationale


def p0(s: float) -> float:
    """p(class 0) of logits (s, −s)."""
    return 1 / (1 + math.exp(-2 * s))


FEVER = TextModality(pad_id=0, sep_id=2, has_query=True)


def _evaluate(**kwargs) -> EraserResult:
    return EraserMetrics(progress=False, **kwargs)(Bag(), [_batch()], {"weight": by_weight},
                                                    FEVER)


def test_comprehensiveness_and_sufficiency_match_hand_computed_values() -> None:
    result = _evaluate()
    # removing / keeping the top tokens by |weight|; the claim's weight always stays
    # A: s = 0.25 + 1.54; ranked: 0.9, −0.7, 0.5, 0.4, 0.3, …; n = 10 -> bins remove
    # 1, 1, 1, 2, 5 tokens (n − int((1 − b) n)) and keep 0, 0, 1, 2, 5 (int(b n))
    full_a, full_b = p0(1.79), p0(0.55)
    comp_a = [0.89, 0.89, 0.89, 1.59, 0.39]
    suff_a = [0.25, 0.25, 1.15, 0.45, 1.65]
    # B: s = −0.05 + 0.6; ranked 0.6, −0.3, 0.2, 0.1; n = 4 -> remove 1, 1, 1, 1, 2; keep
    # 0, 0, 0, 0, 2
    comp_b = [-0.05, -0.05, -0.05, -0.05, 0.25]
    suff_b = [-0.05, -0.05, -0.05, -0.05, 0.25]
    comp = [full_a - p0(s) for s in comp_a] + [full_b - p0(s) for s in comp_b]
    suff = [full_a - p0(s) for s in suff_a] + [full_b - p0(s) for s in suff_b]
    assert result.comprehensiveness_aopc["weight"] == pytest.approx(sum(comp) / 10, abs=1e-6)
    assert result.sufficiency_aopc["weight"] == pytest.approx(sum(suff) / 10, abs=1e-6)
    assert result.comprehensiveness_aopc_bins["weight"] == pytest.approx(
        [(comp[i] + comp[5 + i]) / 2 for i in range(5)], abs=1e-6)
    # k = the rationale's length: A 2 (remove 0.9, −0.7 / keep them), B 1
    assert result.comprehensiveness_at_rationale["weight"] == pytest.approx(
        (full_a - p0(1.59) + full_b - p0(-0.05)) / 2, abs=1e-6)
    assert result.sufficiency_at_rationale["weight"] == pytest.approx(
        (full_a - p0(0.45) + full_b - p0(0.55)) / 2, abs=1e-6)
    # top-2 of A = {0.9, −0.7}: 1 of 2 in the rationale; top-1 of B = {0.6}: 1 of 1;
    # k is the rationale's length, so precision = recall = F1 per document
    for kind in ("precision", "recall", "f1"):
        assert result.__dict__[f"token_{kind}_macro"]["weight"] == pytest.approx(0.75)
        assert result.__dict__[f"token_{kind}_micro"]["weight"] == pytest.approx(2 / 3)
    # A's curve: (R ½, P 1), (½, ½), (1, ⅔), … -> ½ + ½ (½ + ⅔) / 2; B: 1
    assert result.token_auprc["weight"] == pytest.approx(
        (0.5 + 0.5 * (0.5 + 2 / 3) / 2 + 1) / 2)
    assert result.accuracy == 0.5 and result.num_samples == 2
    assert (result.num_documents, result.num_truncated, result.auprc_unscored) == (2, 0, 0)


def _cut_batch() -> tuple[Tensor, ...]:
    """``_batch`` plus a third review C, with the counts of what ``max_length`` cut: A's
    document has 12 tokens (10 encoded), its rationale a third token past the window; C's
    has 9 (4 encoded) and its whole rationale (2 tokens) lies past the window."""
    ids, labels, rationale = _batch()
    c = torch.tensor([[3, 2, 4, 5, 6, 7] + [0] * 6])
    ids = torch.cat([ids, c])
    rationale = torch.cat([rationale, torch.zeros(1, 12, dtype=torch.bool)])
    return (ids, torch.tensor([0, 1, 0]), rationale, torch.tensor([[12], [4], [9]]),
            torch.tensor([[3], [1], [2]]))


def _pr_area(scores: list[float], truth: list[bool]) -> float:
    """sklearn's precision-recall curve area, written out: a point per distinct score from
    the highest, then the trapezoid from (recall 0, precision 1)."""
    points, positives = [(0.0, 1.0)], sum(truth)
    for t in sorted(set(scores), reverse=True):
        hits = [h for s, h in zip(scores, truth, strict=True) if s >= t]
        points.append((sum(hits) / positives, sum(hits) / len(hits)))
    return sum((r1 - r0) * (pa + pb) / 2
               for (r0, pa), (r1, pb) in zip(points, points[1:], strict=False))


def test_cut_documents_are_scored_whole_as_erasers_scorer_reads_them() -> None:
    """The scorer's truth is the whole rationale, cut tokens score 0 and are never
    predicted, and a review whose rationale lies past the window counts as 0."""
    result = EraserMetrics(progress=False)(Bag(), [_cut_batch()], {"weight": by_weight},
                                           FEVER)
    # k = whole rationale: A 3 -> top-3 {0.9, −0.7, 0.5}: 2 hits of 3 predicted, 3 true;
    # B as before (1 of 1); C 2 -> top-2 of {0.9, −0.1, 0.5, 0.05}: 0 hits of 2, 2 true
    hits, predicted, truth = [2, 1, 0], [3, 1, 2], [3, 1, 2]
    precision = [h / p for h, p in zip(hits, predicted, strict=True)]
    recall = [h / t for h, t in zip(hits, truth, strict=True)]
    f1 = [2 * p * r / (p + r) if p and r else 0.0 for p, r in zip(precision, recall,
                                                                  strict=True)]
    assert result.token_precision_macro["weight"] == pytest.approx(sum(precision) / 3)
    assert result.token_recall_macro["weight"] == pytest.approx(sum(recall) / 3)
    assert result.token_f1_macro["weight"] == pytest.approx(sum(f1) / 3)
    assert result.token_precision_micro["weight"] == pytest.approx(3 / 6)
    assert result.token_recall_micro["weight"] == pytest.approx(3 / 6)
    # AUPRC over whole documents, the cut tokens at score 0 (A: one of its two is rationale)
    doc_a = [abs(w) for w in DOC_A] + [0.0, 0.0]
    truth_a = [i in (0, 2) for i in range(10)] + [True, False]
    doc_c = [abs(w) for w in DOC_A[:4]] + [0.0] * 5
    truth_c = [False] * 4 + [True, True, False, False, False]
    expected = [_pr_area(doc_a, truth_a), 1.0, _pr_area(doc_c, truth_c)]
    assert result.token_auprc["weight"] == pytest.approx(sum(expected) / 3)
    assert (result.num_documents, result.num_truncated) == (3, 2)
    assert result.instances["rationale_length"] == [3, 1, 2]
    # AOPC bins are shares of the whole document by default. A: of 12 tokens, remove
    # 1, 1, 2, 3, 6 (of its 10 encoded: 1, 1, 1, 2, 5); B as before; C: of 9, remove
    # 1, 1, 1, 2, 5, i.e. all 4 encoded (0.9, 0.5, −0.1, 0.05 by |weight|)
    comp_a, comp_b, comp_c = ([0.89, 0.89, 1.59, 1.09, 0.19], [-0.05] * 4 + [0.25],
                              [0.7, 0.7, 0.7, 0.2, 0.25])
    expected = [p0(full) - p0(s) for full, scores in ((1.79, comp_a), (0.55, comp_b),
                                                     (1.6, comp_c)) for s in scores]
    assert result.comprehensiveness_aopc["weight"] == pytest.approx(sum(expected) / 15,
                                                                    abs=1e-6)
    encoded = EraserMetrics(progress=False, bins_of="encoded")(
        Bag(), [_cut_batch()], {"weight": by_weight}, FEVER)
    comp_a, comp_c = [0.89, 0.89, 0.89, 1.59, 0.39], [0.7, 0.7, 0.7, 0.7, 0.2]
    expected = [p0(full) - p0(s) for full, scores in ((1.79, comp_a), (0.55, comp_b),
                                                     (1.6, comp_c)) for s in scores]
    assert encoded.comprehensiveness_aopc["weight"] == pytest.approx(sum(expected) / 15,
                                                                     abs=1e-6)
    assert encoded.token_f1_macro == result.token_f1_macro


def test_deletion_closes_up_the_kept_tokens_in_order() -> None:
    ids = torch.tensor([[5, 6, 7, 8, 0], [9, 10, 11, 0, 0]])
    keep = torch.tensor([[True, False, True, True, False], [False, False, True, False, False]])
    assert delete_tokens(ids, keep).tolist() == [[5, 7, 8, 0, 0], [11, 0, 0, 0, 0]]


def test_ranking_breaks_ties_by_position_and_skips_non_features() -> None:
    scores = torch.tensor([[0.5, 0.9, 0.5, 2.0, 0.1]])
    features = torch.tensor([[True, True, True, False, True]])
    rank = rank_features(scores, features)
    assert rank[0, [1, 0, 2, 4]].tolist() == [0, 1, 2, 3] and rank[0, 3] >= 4


def test_bin_counts_follow_erasers_reference_code() -> None:
    removed, kept = bin_counts(torch.tensor([10, 4, 7, 0]), (0.01, 0.05, 0.1, 0.2, 0.5))
    for i, n in enumerate([10, 4, 7, 0]):
        for j, b in enumerate((0.01, 0.05, 0.1, 0.2, 0.5)):
            assert removed[j, i] == n - int((1 - b) * n) and kept[j, i] == int(b * n)


def test_auprc_is_sklearns_curve_area_per_row_with_ties_and_padding() -> None:
    g = torch.Generator().manual_seed(0)
    scores = (torch.rand(12, 30, generator=g) * 5).round() / 5  # many ties
    features = torch.rand(12, 30, generator=g) < 0.8
    truth = (torch.rand(12, 30, generator=g) < 0.3) & features
    truth[0] = False  # no rationale: undefined
    ours = auprc(scores, features, truth)
    assert ours[0].isnan()
    for i in range(1, 12):
        f = features[i]
        p, r, _ = binary_precision_recall_curve(scores[i][f], truth[i][f].long())
        assert ours[i].item() == pytest.approx(auc(r, p).item(), abs=1e-6)
    # tokens outside the input join as a group at score 0, as the zeros they are
    unseen = torch.randint(0, 6, (12,), generator=g)
    unseen_true = (unseen.float() * 0.5).floor().long()
    cut = auprc(scores, features, truth, unseen, unseen_true)
    for i in range(1, 12):
        f = features[i]
        whole_scores = torch.cat([scores[i][f], torch.zeros(int(unseen[i]))])
        whole_truth = torch.cat([truth[i][f].long(), torch.ones(int(unseen_true[i])),
                                 torch.zeros(int(unseen[i] - unseen_true[i]))]).long()
        p, r, _ = binary_precision_recall_curve(whole_scores, whole_truth)
        assert cut[i].item() == pytest.approx(auc(r, p).item(), abs=1e-6)


def test_the_result_round_trips_and_summarises() -> None:
    result = _evaluate()
    back = result_from_dict(json.loads(json.dumps(result.to_dict())))
    assert isinstance(back, EraserResult) and back == result
    assert RESULTS.get("eraser") is EraserResult
    assert set(result.summary()) == {"accuracy", "comprehensiveness_aopc/weight",
                                     "sufficiency_aopc/weight", "token_f1_macro/weight",
                                     "token_f1_micro/weight", "token_auprc/weight"}
    columns, rows = result.table()
    assert columns[0] == "method" and rows[0][0] == "weight" and len(rows[0]) == len(columns)
    old = {k: v for k, v in result.to_dict().items() if not k.endswith("_aopc")}
    with pytest.raises(SettingError, match="evaluate the run again"):
        result_from_dict(old)


def _split(ids: Tensor, labels: Tensor, rationale: Tensor) -> EraserSplit:
    # A's document has 12 tokens, 10 of them encoded; B's 4
    return EraserSplit(ids, labels, rationale, ["a", "b"], [["doc_a"], ["doc_b"]],
                       torch.tensor([[2], [2]]), torch.tensor([[10], [4]]),
                       torch.tensor([[12], [4]]), torch.tensor([[2], [1]]),
                       ("SUPPORTS", "REFUTES"))


def test_erasers_results_file_holds_what_its_scorer_reads(tmp_path: Path) -> None:
    result = _evaluate()
    split = _split(*_batch())
    path = write_eraser_results(result, split, "weight", tmp_path / "test_decoded.jsonl")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["annotation_id"] for r in records] == ["a", "b"]
    a, b = records
    assert a["classification"] == "SUPPORTS"
    assert sum(a["classification_scores"].values()) == pytest.approx(1.0)
    soft = a["rationales"][0]["soft_rationale_predictions"]
    assert a["rationales"][0]["docid"] == "doc_a" and len(soft) == 12
    assert soft == pytest.approx([abs(w) for w in DOC_A] + [0.0, 0.0])
    assert a["rationales"][0]["hard_rationale_predictions"] == [
        {"start_token": 0, "end_token": 1}, {"start_token": 4, "end_token": 5}]
    assert b["rationales"][0]["hard_rationale_predictions"] == [
        {"start_token": 1, "end_token": 2}]
    assert [t["threshold"] for t in a["thresholded_scores"]] == [0.01, 0.05, 0.1, 0.2, 0.5]
    # ERASER's _instances_aopc over this file gives the result's AOPC
    for key in ("comprehensiveness", "sufficiency"):
        deltas = [r["classification_scores"][r["classification"]]
                  - t[f"{key}_classification_scores"][r["classification"]]
                  for r in records for t in r["thresholded_scores"]]
        assert sum(deltas) / len(deltas) == pytest.approx(
            getattr(result, f"{key}_aopc")["weight"])
        rationale_k = [r["classification_scores"][r["classification"]]
                       - r[f"{key}_classification_scores"][r["classification"]] for r in records]
        assert sum(rationale_k) / 2 == pytest.approx(
            getattr(result, f"{key}_at_rationale")["weight"])


def test_the_writer_refuses_a_result_of_other_rows() -> None:
    ids, labels, rationale = _batch()
    result = _evaluate()
    with pytest.raises(SettingError, match="not the first rows of this 2-instance split"):
        eraser_instances(result, _split(ids, labels.flip(0), rationale), "weight")
    with pytest.raises(SettingError, match="method 'grad' was not evaluated"):
        eraser_instances(result, _split(ids, labels, rationale), "grad")
    with pytest.raises(SettingError, match="keep_instances=true"):
        eraser_instances(_evaluate(keep_instances=False), _split(ids, labels, rationale),
                         "weight")


def test_bad_settings_and_batches_are_refused() -> None:
    with pytest.raises(SettingError, match=r"bins must list fractions in \(0, 1\)"):
        EraserMetrics(bins=(0.0, 0.5))
    with pytest.raises(SettingError, match="target must be one of"):
        EraserMetrics(target="true")
    with pytest.raises(SettingError, match=r"bins_of must be one of \['document', 'encoded'\]"):
        EraserMetrics(bins_of="tokens")
    ids, labels, _ = _batch()
    with pytest.raises(SettingError, match=r"need batches \(ids, labels, rationale"):
        EraserMetrics(progress=False)(Bag(), [(ids, labels)], {"weight": by_weight}, FEVER)


def test_saliency_beats_random_on_the_planted_word_corpus(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    net, dm, written = trained_bilstm(str(tmp_path_factory.getbasetemp() / "planted"))
    from sgt.saliency import get_method

    methods = {"grad": get_method("grad"), "random": get_method("random"),
               "integrated_gradients": get_method("integrated_gradients", n_steps=8),
               "smoothgrad": get_method("smoothgrad", stdevs=0.1)}
    with single_thread():
        result = EraserMetrics(progress=False)(net, dm.test_dataloader(), methods,
                                               TextModality(**dm.modality_kwargs()))
    assert result.num_samples == 48 and set(result.methods) == set(methods)
    for name in ("grad", "integrated_gradients", "smoothgrad"):
        assert (result.comprehensiveness_aopc[name]
                > result.comprehensiveness_aopc["random"] + 0.05), name
        assert result.sufficiency_aopc[name] < result.sufficiency_aopc["random"] - 0.05, name
    # each rationale also holds a two-word filler span no model needs, and blanks hold only
    # that: top-k overlap and AUPRC gain less than the AOPC scores
    assert result.token_f1_macro["grad"] > result.token_f1_macro["random"] + 0.05
    assert result.token_auprc["grad"] > result.token_auprc["random"] + 0.1
    path = write_eraser_results(result, dm.eraser_split("test"), "grad", tmp_path / "r.jsonl")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for record, inst in zip(records, written["test"], strict=True):
        (rationale,) = record["rationales"]
        assert rationale["docid"] == inst.docids[0]
        assert len(rationale["soft_rationale_predictions"]) == len(inst.docs[inst.docids[0]])
    paths = result_figures({"regular": result, "again": result}, tmp_path / "eraser")
    assert paths["aopc"].is_file()


def test_esnli_results_have_a_premise_and_a_hypothesis(tmp_path: Path) -> None:
    dm, written = datamodule(tmp_path, "esnli")
    dm.setup()
    torch.manual_seed(0)
    net = BiLSTM(**dm.model_kwargs(), embedding_dim=8, hidden_size=8)
    with single_thread():
        result = EraserMetrics(progress=False, limit_batches=1)(
            net, dm.test_dataloader(), ["grad"], TextModality(**dm.modality_kwargs()))
    records = eraser_instances(result, dm.eraser_split("test"), "grad")
    assert len(records) == 24 and set(records[0]["classification_scores"]) == {
        "entailment", "neutral", "contradiction"}
    for record, inst in zip(records, written["test"], strict=True):
        assert [r["docid"] for r in record["rationales"]] == inst.docids
        assert [len(r["soft_rationale_predictions"]) for r in record["rationales"]] == [
            len(inst.docs[d]) for d in inst.docids]
        hard = sum(s["end_token"] - s["start_token"] for r in record["rationales"]
                   for s in r["hard_rationale_predictions"])
        assert hard == sum(e - s for _, s, e in inst.evidence)
    x, _, rationale, *_ = dm.splits["test"]
    scores = {"random": torch.rand(x.shape), "grad": torch.rand(x.shape)}
    path = plot_token_highlights(dm.decode(x[:2]), rationale[:2], scores, tmp_path / "hl.png",
                                 features=TextModality(**dm.modality_kwargs()).valid_features(x[:2]))
    assert path.is_file() and path.stat().st_size > 0
