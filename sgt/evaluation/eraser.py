"""ERASER faithfulness of saliency on text (DeYoung et al. 2020, docs/paper.md §3(c)).

Every number equals what ERASER's official scorer (``rationale_benchmark/metrics.py``)
computes from this module's per-instance results file on the same instances. Per instance,
with ŷ the model's prediction on the full input and p(ŷ|·) its probability:

- **comprehensiveness** = p(ŷ|x) − p(ŷ|x without its most salient tokens) (higher = better);
- **sufficiency** = p(ŷ|x) − p(ŷ|only its most salient tokens) (lower = better);
- **AOPC** (``comprehensiveness_aopc``, ``sufficiency_aopc``): both at the bins
  B = {1, 5, 10, 20, 50} % of the tokens, averaged over instances × bins (the scorer's
  ``_instances_aopc``: the plain mean of the flattened array). As ERASER's reference code
  (``encode_attend.decode``), sufficiency keeps the top ``int(b·n)`` tokens and
  comprehensiveness keeps the ``int((1 − b)·n)`` least salient ones. ``n`` counts the whole
  document (``bins_of="document"``, the reference's, and the default) or only the tokens the
  model reads (``bins_of="encoded"``); either way only encoded tokens can be removed;
- the same two at k = the human rationale's length (``comprehensiveness_at_rationale``,
  ``sufficiency_at_rationale``: the scorer's non-AOPC ``comprehensiveness`` and
  ``sufficiency``);
- **token precision, recall and F1** (macro and micro) of the hard rationale, the top-k
  tokens with k = the human rationale's length in the whole document, scored as the
  scorer's ``token_prf``: per (instance, document) that has a rationale or a prediction,
  precision = hits / predicted and recall = hits / the whole human rationale (0 where
  undefined), the macro scores their means; micro pools the counts;
- **token AUPRC** of the soft scores against the human rationale per (instance, document):
  sklearn's ``precision_recall_curve`` (one point per distinct score, from the highest, plus
  recall 0 at precision 1) and ``auc``, averaged over documents, as the scorer's ``_auprc``.

**Documents cut at ``max_length``.** The scorer reads whole documents: a cut token has soft
score 0 in the results file, is never in the hard rationale, and its rationale tokens still
count in recall and AUPRC. So every rationale metric here uses the whole rationale
(``doc_rationale``) and puts the cut tokens in one group at score 0; a review whose
rationale lies wholly past the window scores 0, not nothing. The result reports how many
documents were cut (``num_truncated``). A document without any rationale token cannot be
scored by AUPRC (the scorer's pinned sklearn 0.20 returns NaN for it, and so a NaN mean;
newer versions 0.5); such documents are left out and counted (``auprc_unscored``).

Tokens are removed by *deleting* them: the remaining tokens close up in their original order
(ERASER's protocol; its reference code also reorders them by score, which is not kept
here). Only document tokens are ranked, counted and removed; the query and separators stay
(``TextModality.valid_features``). Exact score ties rank by position, as the results file's
stable sort does.

**Word pieces** (a pretrained tokenizer, ``model=hf``; docs/hf.md): the metrics stay in
ERASER's words. A word's score is the sum of its pieces' scores (:func:`to_words`), words
are ranked, counted and scored as above, and removing a word removes all its pieces. Batches
then carry each piece's word (``words (B, L)``) after ``doc_rationale``; without it each
document token is its own word, which gives the word-level models' numbers unchanged.

The full-input and removal probabilities come from the raw ids (``TextModality.logits``), so
the query is read even when every document token is deleted (FEVER's claim alone).

Batches are ``(ids (B, L), labels (B,), rationale (B, L) bool, doc_lengths (B, D),
doc_rationale (B, D))`` as :class:`sgt.data.EraserDataModule`'s val/test loaders yield them
(without the last two, the encoded tokens are taken as the whole documents).
:func:`write_eraser_results` writes ERASER's per-instance ``jsonl`` so ERASER's own
``metrics.py`` can score a run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from rich.progress import Progress
from torch import Tensor

from sgt.atomic import write_text
from sgt.checks import check_choice, check_flag
from sgt.errors import SettingError
from sgt.evaluation.base import Evaluation, Measure, Result, eval_mode, num_batches
from sgt.features import TextModality
from sgt.saliency import Explainer, ModalityForward, Output

if TYPE_CHECKING:
    from sgt.data.eraser import EraserSplit

BINS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.2, 0.5)  # ERASER's --aopc_thresholds
BINS_OF = ("document", "encoded")
TARGETS = ("predicted", "label")
TOKEN_SCORES = ("token_precision_macro", "token_recall_macro", "token_f1_macro",
                "token_precision_micro", "token_recall_micro", "token_f1_micro")


# -- the metrics on one batch (pure functions of tensors) -------------------------------


def delete_tokens(ids: Tensor, keep: Tensor, pad_id: int = 0) -> Tensor:
    """``(B, L)``: each row's kept tokens moved to the front in their order, then padding.

    A stable sort of "removed?" puts kept positions first without reordering them.
    """
    order = torch.sort((~keep).to(torch.uint8), dim=1, stable=True).indices
    closed = ids.gather(1, order)
    positions = torch.arange(ids.shape[1], device=ids.device)
    return torch.where(positions < keep.sum(1, keepdim=True), closed,
                       torch.full_like(closed, pad_id))


def word_columns(features: Tensor, words: Tensor | None = None) -> Tensor:
    """``(B, L)`` each position's column in the word layout: the index of its word among
    the row's document words (``words``, -1 for none), ``L`` (a spill column) for positions
    that are no feature. Without ``words`` each feature is its own word: the features,
    closed up in their order."""
    if words is None:
        words = features.long().cumsum(1) - 1
    return torch.where(features & (words >= 0), words, features.shape[1])


def to_words(values: Tensor, columns: Tensor, reduce: str = "sum") -> Tensor:
    """``(B, L)`` per position -> ``(B, L)`` per word (column ``w`` = word ``w``): the
    ``sum`` of its pieces' values (a word's score) or their ``amax``; 0 where no word."""
    out = torch.zeros(values.shape[0], values.shape[1] + 1, dtype=values.dtype,
                      device=values.device)
    return out.scatter_reduce_(1, columns, values, reduce=reduce)[:, :-1]


def rank_features(scores: Tensor, features: Tensor) -> Tensor:
    """``(B, L)`` place of each position in its row's ranking by descending score: the
    features get 0 … n−1 (ties: earlier position first), other positions n and above."""
    ranked = scores.masked_fill(~features, float("-inf"))
    order = torch.sort(ranked, dim=1, descending=True, stable=True).indices
    places = torch.arange(scores.shape[1], device=scores.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, places)


def bin_counts(num_tokens: Tensor, bins: Sequence[float]) -> tuple[Tensor, Tensor]:
    """Per bin and row ``(K, B)``: tokens comprehensiveness removes (``n − int((1−b)·n)``)
    and tokens sufficiency keeps (``int(b·n)``), as ERASER's reference code counts."""
    n = num_tokens.to(torch.float64)
    b = torch.tensor(list(bins), dtype=torch.float64, device=n.device)[:, None]
    rest = torch.tensor([1 - v for v in bins], dtype=torch.float64, device=n.device)[:, None]
    removed = num_tokens - torch.floor(rest * n).long()
    kept = torch.floor(b * n).long()
    return removed, kept


def top_tokens(rank: Tensor, features: Tensor, counts: Tensor) -> Tensor:
    """``(K, B, L)`` bool: each row's ``counts[k, b]`` highest-ranked features (all of them
    where the count is larger)."""
    return features & (rank < counts[:, :, None])


def per_document(mask: Tensor, documents: Tensor, num_documents: int) -> Tensor:
    """``(B, D)`` how many ``True`` positions of ``mask (B, L)`` each document holds
    (``documents``: each position's document, :meth:`TextModality.documents`)."""
    slot = documents.clamp(0, num_documents - 1)
    return torch.zeros(mask.shape[0], num_documents, dtype=torch.long,
                       device=mask.device).scatter_add_(1, slot, mask.long())


def token_prf(hits: Tensor, predicted: Tensor, truth: Tensor) -> dict[str, float]:
    """ERASER's ``token_prf`` from ``(N, D)`` counts per (instance, document): rationale
    tokens predicted, tokens predicted, and tokens of the whole human rationale.

    Macro: the mean over the (instance, document) pairs that have a prediction or a
    rationale of their precision, recall and F1 (0 where undefined); micro: from the summed
    counts. Returns the :data:`TOKEN_SCORES`.
    """
    hits, predicted, truth = hits.double(), predicted.double(), truth.double()
    keys = (predicted > 0) | (truth > 0)
    precision = torch.where(predicted > 0, hits / predicted.clamp_min(1), 0.0)[keys]
    recall = torch.where(truth > 0, hits / truth.clamp_min(1), 0.0)[keys]
    f1 = torch.where((precision > 0) & (recall > 0),
                     2 * precision * recall / (precision + recall).clamp_min(1e-300), 0.0)

    def mean(values: Tensor) -> float:
        return values.mean().item() if len(values) else 0.0

    micro_p = hits.sum().item() / predicted.sum().item() if predicted.sum() > 0 else 0.0
    micro_r = hits.sum().item() / truth.sum().item() if truth.sum() > 0 else 0.0
    micro_f1 = 2 * micro_p * micro_r / (micro_p + micro_r) if micro_p and micro_r else 0.0
    return dict(zip(TOKEN_SCORES, (mean(precision), mean(recall), mean(f1), micro_p, micro_r,
                                   micro_f1), strict=True))


def auprc(scores: Tensor, features: Tensor, rationale: Tensor, unseen: Tensor | None = None,
          unseen_rationale: Tensor | None = None) -> Tensor:
    """``(B,)`` area under each row's precision-recall curve over its features, NaN for rows
    without a rationale token.

    sklearn's ``precision_recall_curve`` (one point per distinct score, from the highest,
    plus recall 0 at precision 1) and ``auc`` (trapezoid over recall), as ERASER scores
    soft rationales; all rows at once: sort, cumulative counts, the last position of each
    run of equal scores is a curve point. ``unseen (B,)`` more tokens per row score 0 (a
    document's tokens cut at ``max_length``, scored 0 in the results file), of which
    ``unseen_rationale`` are rationale tokens: they join the curve as one group.

    Not torchmetrics' curve: its exact form (``thresholds=None``) loops over rows in Python
    and takes no counts for the cut tokens, and its binned form is not ERASER's number; the
    tests check this function against it row by row.
    """
    ranked = scores.double().masked_fill(~features, float("-inf"))
    count, positive = features.double(), (rationale & features).double()
    if unseen is not None:
        zero = torch.where(unseen > 0, 0.0, float("-inf")).to(ranked)
        ranked = torch.cat([ranked, zero[:, None]], 1)
        count = torch.cat([count, unseen.double()[:, None]], 1)
        positive = torch.cat([positive, unseen_rationale.double()[:, None]], 1)
    length = ranked.shape[1]
    ordered, order = torch.sort(ranked, dim=1, descending=True, stable=True)
    tp, seen = positive.gather(1, order).cumsum(1), count.gather(1, order).cumsum(1)
    positives = tp[:, -1:]
    # a point closes each run of equal scores: the next score differs (or features end)
    nxt = torch.cat([ordered[:, 1:], torch.full_like(ordered[:, :1], float("-inf"))], 1)
    point = (count.gather(1, order) > 0) & (ordered != nxt)
    precision = tp / seen.clamp_min(1)
    recall = tp / positives.clamp_min(1)
    # the previous point of each point (index -1: the start, recall 0 and precision 1)
    index = torch.where(point, torch.arange(length, device=scores.device), -1)
    previous = torch.cat([torch.full_like(index[:, :1], -1), index.cummax(1).values[:, :-1]], 1)
    safe = previous.clamp_min(0)
    prev_recall = torch.where(previous >= 0, recall.gather(1, safe), 0.0)
    prev_precision = torch.where(previous >= 0, precision.gather(1, safe), 1.0)
    area = torch.where(point, (recall - prev_recall) * (precision + prev_precision) / 2, 0.0)
    return torch.where(positives[:, 0] > 0, area.sum(1), float("nan"))


# -- the result -------------------------------------------------------------------------


@dataclass
class EraserResult(Result):
    """Plain data: ERASER's faithfulness and plausibility scores per method.

    ``instances`` (when kept) holds per instance, in loader order: ``labels``, ``probs``
    (full input, per class), ``rationale_length`` (the whole human rationale's), and per
    method ``comprehensiveness`` / ``sufficiency`` (per bin, per class),
    ``comprehensiveness_at_rationale`` / ``sufficiency_at_rationale`` (per class) and
    ``scores`` (the soft score of each document token of the encoded input, in order): what
    :func:`write_eraser_results` needs.
    """

    kind: ClassVar[str] = "eraser"
    title: ClassVar[str] = "ERASER"
    measures: ClassVar[dict[str, Measure]] = {
        "accuracy": Measure("accuracy", higher_is_better=True),
        "comprehensiveness_aopc": Measure("comprehensiveness (AOPC)", higher_is_better=True),
        "sufficiency_aopc": Measure("sufficiency (AOPC)", higher_is_better=False),
        "token_f1_macro": Measure("token F1, macro", higher_is_better=True),
        "token_f1_micro": Measure("token F1, micro", higher_is_better=True),
        "token_auprc": Measure("token AUPRC", higher_is_better=True),
    }
    bins: list[float]
    bins_of: str
    accuracy: float
    comprehensiveness_aopc: dict[str, float]  # higher = more faithful
    sufficiency_aopc: dict[str, float]  # lower = more faithful
    comprehensiveness_aopc_bins: dict[str, list[float]]  # mean over instances, per bin
    sufficiency_aopc_bins: dict[str, list[float]]
    comprehensiveness_at_rationale: dict[str, float]  # k = the human rationale's length
    sufficiency_at_rationale: dict[str, float]
    token_precision_macro: dict[str, float]
    token_recall_macro: dict[str, float]
    token_f1_macro: dict[str, float]
    token_precision_micro: dict[str, float]
    token_recall_micro: dict[str, float]
    token_f1_micro: dict[str, float]
    token_auprc: dict[str, float]
    num_samples: int
    num_documents: int
    num_truncated: int  # documents cut at max_length
    auprc_unscored: int  # documents without a rationale token (left out of token_auprc)
    instances: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def methods(self) -> list[str]:
        return list(self.comprehensiveness_aopc)

    def table(self) -> tuple[list[str], list[list[Any]]]:
        """``(columns, rows)``: one row per method."""
        columns = ["method", "comprehensiveness_aopc", "sufficiency_aopc",
                   "comprehensiveness_at_rationale", "sufficiency_at_rationale", *TOKEN_SCORES,
                   "token_auprc"]
        return columns, [[m, *(getattr(self, c)[m] for c in columns[1:])] for m in self.methods]

    def summary(self) -> dict[str, float]:
        """``accuracy`` and, per method, ``comprehensiveness_aopc/<method>``,
        ``sufficiency_aopc/<method>``, ``token_f1_macro/<method>``, ``token_f1_micro/…``,
        ``token_auprc/…``."""
        out = {"accuracy": self.accuracy}
        for key in ("comprehensiveness_aopc", "sufficiency_aopc", "token_f1_macro",
                    "token_f1_micro", "token_auprc"):
            out |= {f"{key}/{m}": v for m, v in getattr(self, key).items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EraserResult:
        if "comprehensiveness_aopc" not in data:
            raise SettingError("this ERASER result was written by an earlier sgt, whose token "
                               "F1 and AUPRC differ from ERASER's scorer on documents cut at "
                               "max_length; evaluate the run again (eval=eraser)")
        return super().from_dict(data)


# -- the evaluation ---------------------------------------------------------------------


def _check_bins(bins: Sequence[float]) -> list[float]:
    values = list(bins)
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, float))
                         or not 0 < v < 1 for v in values):
        raise SettingError(f"bins must list fractions in (0, 1), got {values!r}")
    if values != sorted(set(values)):
        raise SettingError(f"bins must be increasing without repeats, got {values!r}")
    return [float(v) for v in values]


@dataclass
class _Batch:
    """One batch on the device: ids, labels, per document its whole length and whole
    rationale length, the class each instance is explained for, and the words: each
    position's word column (:func:`word_columns`), and per word whether it is encoded, in
    the human rationale, and its document."""

    x: Tensor
    y: Tensor
    doc_lengths: Tensor
    doc_rationale: Tensor
    columns: Tensor
    features: Tensor
    rationale: Tensor
    documents: Tensor
    target: Tensor | None = None


class EraserMetrics(Evaluation):
    """ERASER's comprehensiveness, sufficiency, token P/R/F1 and AUPRC (configured callable).

    Args:
        bins: fractions of the tokens for AOPC (ERASER: 1, 5, 10, 20, 50 %).
        bins_of: what a bin is a fraction of: the whole ``document`` (the reference's) or the
            ``encoded`` tokens the model reads (the same when no document is cut).
        target: the class explained: ``predicted`` (ŷ, whose probability the metrics
            follow) or the true ``label``.
        keep_instances: keep the per-instance numbers :func:`write_eraser_results` needs.
        seed, output, limit_batches, progress: as every evaluation
            (:class:`~sgt.evaluation.base.Evaluation`).
    """

    name = "eraser"
    title = "ERASER metrics"
    modalities = ("text",)

    def __init__(
        self,
        bins: Sequence[float] = BINS,
        bins_of: str = "document",
        target: str = "predicted",
        seed: int = 0,
        output: Output = "logit",
        keep_instances: bool = True,
        limit_batches: int | None = None,
        progress: bool = True,
    ) -> None:
        super().__init__(seed=seed, output=output, limit_batches=limit_batches,
                         progress=progress)
        self.bins = _check_bins(bins)
        self.bins_of = check_choice(bins_of, "bins_of", BINS_OF)
        self.target = check_choice(target, "target", TARGETS)
        self.keep_instances = check_flag(keep_instances, "keep_instances")

    @staticmethod
    def probabilities(forward: ModalityForward, ids: Tensor) -> Tensor:
        """``(B, C)`` class probabilities of token ids (no gradient); the query is read even
        when every document token was deleted."""
        with torch.no_grad():
            return forward.modality.logits(forward.net, ids).softmax(-1)  # type: ignore

    def evaluate_batch(self, explainer: Explainer, name: str, batch: _Batch  # type: ignore[override]
                       ) -> dict[str, Tensor]:
        """One method on one batch: per-instance probabilities of every removal, per
        document the hard rationale's counts and the AUPRC, and the soft scores."""
        m: TextModality = explainer.forward.modality  # type: ignore[assignment]
        x, rationale, features, columns = batch.x, batch.rationale, batch.features, batch.columns
        _, piece_scores = explainer(name, x, batch.target)  # (B, L): |attribution mean|
        scores = to_words(piece_scores, columns)  # (B, L) per word: the sum of its pieces
        rank = rank_features(scores, features)
        n = batch.doc_lengths.sum(1) if self.bins_of == "document" else features.sum(1)
        removed, kept = bin_counts(n, self.bins)  # (K, B)
        k = batch.doc_rationale.sum(1)  # the whole human rationale's length
        # K bins + the human length: (K + 1, B, L) tokens to take out / to keep
        take_out = top_tokens(rank, features, torch.cat([removed, k[None]]))
        keep_only = top_tokens(rank, features, torch.cat([kept, k[None]]))
        # words -> their pieces: (K + 1, B, L) over positions
        pieces = columns < x.shape[1]
        at = columns.clamp(max=x.shape[1] - 1).expand_as(take_out)
        piece_out, piece_only = (t.gather(2, at) & pieces for t in (take_out, keep_only))
        tokens = x != m.pad_id
        variants = torch.cat([tokens & ~piece_out, tokens & (~pieces | piece_only)])
        probs = torch.stack([self.probabilities(explainer.forward,
                                                delete_tokens(x, keep, m.pad_id))
                             for keep in variants], dim=1)  # (B, 2(K + 1), C)
        bins = len(self.bins)
        documents, slots = batch.documents, batch.doc_lengths.shape[1]
        encoded = per_document(features, documents, slots)  # (B, D) tokens the model reads
        seen_rationale = per_document(rationale & features, documents, slots)
        hard = take_out[-1]  # the top-k features: the hard rationale
        return {"comprehensiveness": probs[:, :bins], "comprehensiveness_rationale": probs[:, bins],
                "sufficiency": probs[:, bins + 1: -1], "sufficiency_rationale": probs[:, -1],
                "hits": per_document(hard & rationale, documents, slots),
                "predicted": per_document(hard, documents, slots),
                "auprc": self._auprc(scores, features, rationale, documents, batch, encoded,
                                     seen_rationale),
                "truncated": batch.doc_lengths > encoded, "exists": batch.doc_lengths > 0,
                "scores": scores.float(), "features": features, "k": k}

    @staticmethod
    def _auprc(scores: Tensor, features: Tensor, rationale: Tensor, documents: Tensor,
               batch: _Batch, encoded: Tensor, seen_rationale: Tensor) -> Tensor:
        """``(B, D)`` AUPRC per document (NaN: no such document, or no rationale token),
        its cut tokens scored 0."""
        slots = batch.doc_lengths.shape[1]
        in_doc = features[:, None] & (documents[:, None] == torch.arange(
            slots, device=features.device)[None, :, None])  # (B, D, L)
        rows = in_doc.flatten(0, 1)
        area = auprc(scores.repeat_interleave(slots, 0), rows,
                     rationale.repeat_interleave(slots, 0),
                     (batch.doc_lengths - encoded).flatten(),
                     (batch.doc_rationale - seen_rationale).flatten())
        return area.view(-1, slots)

    def run(self, explainer: Explainer, loader: Iterable[Sequence[Tensor]]) -> EraserResult:
        """Batches outside, methods inside (not :func:`~sgt.evaluation.base.sum_per_method`):
        the full input's probabilities and target are computed once per batch for every
        method, and the per-instance outputs are concatenated, not summed."""
        modality: TextModality = explainer.forward.modality  # type: ignore[assignment]
        device = explainer.device
        full: dict[str, list[Tensor]] = {"labels": [], "probs": []}
        per_method: dict[str, dict[str, list[Tensor]]] = {n: {} for n in explainer.methods}
        with eval_mode(explainer.forward.net), Progress(disable=not self.progress,
                                                        transient=True) as bar:
            task = bar.add_task(self.title, total=num_batches(loader, self.limit_batches))
            for raw in islice(loader, self.limit_batches):
                batch = self._unpack(raw, device, modality)
                probs = self.probabilities(explainer.forward, batch.x)
                batch.target = probs.argmax(1) if self.target == "predicted" else batch.y
                full["labels"].append(batch.y)
                full["probs"].append(probs)
                full.setdefault("truth", []).append(batch.doc_rationale)
                for name, parts in per_method.items():
                    for key, value in self.evaluate_batch(explainer, name, batch).items():
                        parts.setdefault(key, []).append(value)
                bar.advance(task)
        if not full["labels"]:
            raise ValueError("the loader yielded no batches")
        return self._result({k: torch.cat(v).cpu() for k, v in full.items()},
                            {n: {k: torch.cat(v).cpu() for k, v in parts.items()}
                             for n, parts in per_method.items()})

    def _result(self, full: dict[str, Tensor], per_method: dict[str, dict[str, Tensor]]
                ) -> EraserResult:
        labels, probs = full["labels"], full["probs"].double()
        predicted = probs.argmax(1, keepdim=True)
        p_full = probs.gather(1, predicted)  # (N, 1)

        def drop(class_probs: Tensor) -> Tensor:
            """``(N, [K,] C)`` -> ``(N, [K])``: p(ŷ|x) − p(ŷ|·)."""
            shape = (-1, *[1] * (class_probs.dim() - 1))
            index = predicted.view(shape).expand(*class_probs.shape[:-1], 1)
            return (p_full.view(shape) - class_probs.double().gather(-1, index)).squeeze(-1)

        scores: dict[str, dict[str, Any]] = {key: {} for key in (
            "comprehensiveness_aopc", "sufficiency_aopc", "comprehensiveness_aopc_bins",
            "sufficiency_aopc_bins", "comprehensiveness_at_rationale",
            "sufficiency_at_rationale", *TOKEN_SCORES, "token_auprc")}
        for name, out in per_method.items():
            for key in ("comprehensiveness", "sufficiency"):
                d = drop(out[key])  # (N, K)
                scores[f"{key}_aopc"][name] = d.mean().item()  # instances × bins, as ERASER
                scores[f"{key}_aopc_bins"][name] = d.mean(0).tolist()
                scores[f"{key}_at_rationale"][name] = drop(
                    out[f"{key}_rationale"]).mean().item()
            for key, value in token_prf(out["hits"], out["predicted"], full["truth"]).items():
                scores[key][name] = value
            scores["token_auprc"][name] = out["auprc"].nanmean().nan_to_num().item()
        first = next(iter(per_method.values()))
        exists = first["exists"]
        instances = self._instances(labels, probs, per_method) if self.keep_instances else None
        return EraserResult(
            list(self.bins), self.bins_of, (predicted[:, 0] == labels).double().mean().item(),
            **scores, num_samples=len(labels), num_documents=int(exists.sum()),
            num_truncated=int(first["truncated"].sum()),
            auprc_unscored=int((exists & (full["truth"] == 0)).sum()), instances=instances)

    @staticmethod
    def _instances(labels: Tensor, probs: Tensor, per_method: dict[str, dict[str, Tensor]]
                   ) -> dict[str, Any]:
        first = next(iter(per_method.values()))
        counts = first["features"].sum(1).tolist()
        methods = {}
        for name, out in per_method.items():
            scores = out["scores"][out["features"]].split(counts)  # ragged: document tokens
            methods[name] = {
                "comprehensiveness": out["comprehensiveness"].tolist(),
                "sufficiency": out["sufficiency"].tolist(),
                "comprehensiveness_at_rationale": out["comprehensiveness_rationale"].tolist(),
                "sufficiency_at_rationale": out["sufficiency_rationale"].tolist(),
                "scores": [s.tolist() for s in scores]}
        return {"labels": labels.tolist(), "probs": probs.tolist(),
                "rationale_length": first["k"].tolist(), "methods": methods}

    @staticmethod
    def _unpack(batch: Sequence[Tensor], device: torch.device, modality: TextModality
                ) -> _Batch:
        if len(batch) < 3:
            raise SettingError(
                f"ERASER metrics need batches (ids, labels, rationale[, doc_lengths, "
                f"doc_rationale[, words]]), got {len(batch)} entries; evaluate on "
                "EraserDataModule's val or test loader")
        x, y, rationale = (t.to(device, non_blocking=True) for t in batch[:3])
        pieces = modality.valid_features(x)
        columns = word_columns(pieces, batch[5].to(device) if len(batch) >= 6 else None)
        features = to_words(pieces.long(), columns, "amax").bool()
        words_rationale = to_words((rationale.bool() & pieces).long(), columns, "amax").bool()
        documents = to_words(modality.documents(x), columns, "amax")
        if len(batch) >= 5:
            doc_lengths, doc_rationale = (t.to(device, non_blocking=True) for t in batch[3:5])
        else:  # no counts of what was cut: the encoded tokens are the whole documents
            slots = int(documents.max()) + 1 if documents.numel() else 1
            doc_lengths = per_document(features, documents, slots)
            doc_rationale = per_document(words_rationale, documents, slots)
        return _Batch(x, y, doc_lengths, doc_rationale, columns, features, words_rationale,
                      documents)

# -- ERASER's per-instance results file -------------------------------------------------


def _spans(positions: Sequence[int]) -> list[dict[str, int]]:
    """Sorted token positions -> ``[{start_token, end_token}]`` runs (end exclusive)."""
    spans: list[dict[str, int]] = []
    for t in positions:
        if spans and spans[-1]["end_token"] == t:
            spans[-1]["end_token"] = t + 1
        else:
            spans.append({"start_token": t, "end_token": t + 1})
    return spans


def eraser_instances(result: EraserResult, split: EraserSplit, method: str
                     ) -> list[dict[str, Any]]:
    """ERASER's per-instance result records for ``method`` (``metrics.py --results``).

    ``result`` must come from an unshuffled loader of ``split`` (its first rows, in order);
    soft scores cover each document's full length (0 for tokens cut by ``max_length``), and
    the hard rationale is the top-k encoded tokens, k = the whole human rationale's length.
    """
    if result.instances is None:
        raise SettingError("this result kept no per-instance numbers; evaluate with "
                           "keep_instances=true to write ERASER's results file")
    if method not in result.instances["methods"]:
        raise SettingError(f"method {method!r} was not evaluated; evaluated: "
                           f"{list(result.instances['methods'])}")
    inst, ours = result.instances, result.instances["methods"][method]
    n = len(inst["labels"])
    if n > len(split) or inst["labels"] != split.labels[:n].tolist():
        raise SettingError(f"the result's {n} instances are not the first rows of this "
                           f"{len(split)}-instance split in order; evaluate an unshuffled "
                           "loader of the same split")
    classes = split.classes

    def by_class(values: Sequence[float]) -> dict[str, float]:
        return dict(zip(classes, values, strict=True))

    records = []
    for i in range(n):
        docids = split.docids[i]
        kept = split.doc_kept[i, : len(docids)].tolist()
        scores = ours["scores"][i]
        if len(scores) != sum(kept):
            raise SettingError(f"instance {split.annotation_ids[i]!r} has {len(scores)} scored "
                               f"tokens but {sum(kept)} encoded document tokens; the result "
                               "comes from another encoding (dataset.max_length?)")
        order = sorted(range(len(scores)), key=lambda j: -scores[j])  # stable: ties by place
        top = set(order[: inst["rationale_length"][i]])
        rationales, offset = [], 0
        for d, docid in enumerate(docids):
            length = int(split.doc_lengths[i, d])
            soft = scores[offset: offset + kept[d]]
            hard = [t for t in range(kept[d]) if offset + t in top]
            rationales.append({"docid": docid,
                               "soft_rationale_predictions": soft + [0.0] * (length - kept[d]),
                               "hard_rationale_predictions": _spans(hard)})
            offset += kept[d]
        probs = inst["probs"][i]
        records.append({
            "annotation_id": split.annotation_ids[i],
            "classification": classes[max(range(len(probs)), key=probs.__getitem__)],
            "classification_scores": by_class(probs),
            "comprehensiveness_classification_scores": by_class(
                ours["comprehensiveness_at_rationale"][i]),
            "sufficiency_classification_scores": by_class(ours["sufficiency_at_rationale"][i]),
            "thresholded_scores": [
                {"threshold": b,
                 "comprehensiveness_classification_scores": by_class(
                     ours["comprehensiveness"][i][j]),
                 "sufficiency_classification_scores": by_class(ours["sufficiency"][i][j])}
                for j, b in enumerate(result.bins)],
            "rationales": rationales,
        })
    return records


def write_eraser_results(result: EraserResult, split: EraserSplit, method: str,
                         path: str | Path) -> Path:
    """Write :func:`eraser_instances` as ``jsonl`` (ERASER's ``--results`` file)."""
    return write_text(path, "".join(json.dumps(record, sort_keys=True) + "\n"
                                    for record in eraser_instances(result, split, method)))


__all__ = [
    "BINS",
    "BINS_OF",
    "TOKEN_SCORES",
    "EraserMetrics",
    "EraserResult",
    "auprc",
    "bin_counts",
    "delete_tokens",
    "eraser_instances",
    "per_document",
    "rank_features",
    "token_prf",
    "top_tokens",
    "write_eraser_results",
]
