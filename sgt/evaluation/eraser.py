"""ERASER faithfulness of saliency on text (DeYoung et al. 2020, docs/paper.md §3(c)).

Per instance, with ŷ the model's prediction on the full input and p(ŷ|·) its probability:

- **comprehensiveness** = p(ŷ|x) − p(ŷ|x without its most salient tokens) (higher = better);
- **sufficiency** = p(ŷ|x) − p(ŷ|only its most salient tokens) (lower = better);
- **AOPC**: both at the bins B = {1, 5, 10, 20, 50} % of the document tokens, averaged over
  instances × bins (ERASER's ``_instances_aopc``: the plain mean of the flattened array).
  As ERASER's reference code (``encode_attend.decode``), sufficiency keeps the top
  ``int(b·n)`` tokens and comprehensiveness keeps the ``int((1 − b)·n)`` least salient ones;
- the same two at k = the instance's human-rationale length (ERASER's non-AOPC
  ``comprehensiveness_classification_scores``);
- **token F1**: the top-k tokens (k = the human-rationale length) as the hard rationale,
  scored like ERASER's ``token_prf`` (``instance_macro``: the mean of per-instance F1;
  ``token_f1_micro``: pooled counts). With k equal to the truth's size, precision = recall;
- **AUPRC** of the soft scores against the human rationale per instance (ERASER's
  ``_auprc``: sklearn's precision-recall curve and the trapezoid under it), averaged over
  instances with a rationale.

Tokens are removed by *deleting* them: the remaining tokens close up in their original order
(ERASER's protocol; its reference code also reorders them by score, which is not kept
here). Only document tokens are ranked, counted and removed; the query and separators stay
(``TextModality.valid_features``). n counts the document tokens of the encoded input, so
tokens cut by the DataModule's ``max_length`` are neither ranked nor removed, and the
rationale metrics see the rationale within the encoded input. AUPRC takes one curve per
instance (ERASER takes one per document: the same for Movies and FEVER, premise and
hypothesis separately for e-SNLI).

The full-input and removal probabilities come from the raw ids (``TextModality.logits``), so
the query is read even when every document token is deleted (FEVER's claim alone).

Batches are ``(ids (B, L), labels (B,), rationale (B, L) bool)`` as
:class:`sgt.data.EraserDataModule`'s val/test loaders yield them. :func:`write_eraser_results`
writes ERASER's per-instance ``jsonl`` so ERASER's own ``metrics.py`` can score a run; on 40
Movies test reviews (20 per class, no truncation) its scores of such a file matched this
module's AOPC, non-AOPC, token F1 (macro and micro), AUPRC and accuracy to float precision.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from rich.progress import Progress
from torch import Tensor, nn

from sgt.checks import check_choice, check_flag
from sgt.errors import SettingError
from sgt.evaluation.base import (
    RESULTS,
    check_limit_batches,
    check_methods,
    eval_mode,
    num_batches,
)
from sgt.features import TextModality
from sgt.saliency import Attribution, Explainer, ModalityForward, Output, check_output

if TYPE_CHECKING:
    from sgt.data.eraser import EraserSplit

BINS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.2, 0.5)  # ERASER's --aopc_thresholds
TARGETS = ("predicted", "label")


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


def rank_features(scores: Tensor, features: Tensor) -> Tensor:
    """``(B, L)`` place of each position in its row's ranking by descending score: the
    features get 0 … n−1 (ties: earlier position first), other positions n and above."""
    ranked = scores.masked_fill(~features, float("-inf"))
    order = torch.sort(ranked, dim=1, descending=True, stable=True).indices
    places = torch.arange(scores.shape[1], device=scores.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, places)


def bin_counts(num_features: Tensor, bins: Sequence[float]) -> tuple[Tensor, Tensor]:
    """Per bin and row ``(K, B)``: tokens comprehensiveness removes (``n − int((1−b)·n)``)
    and tokens sufficiency keeps (``int(b·n)``), as ERASER's reference code counts."""
    n = num_features.to(torch.float64)
    b = torch.tensor(list(bins), dtype=torch.float64, device=n.device)[:, None]
    rest = torch.tensor([1 - v for v in bins], dtype=torch.float64, device=n.device)[:, None]
    removed = num_features - torch.floor(rest * n).long()
    kept = torch.floor(b * n).long()
    return removed, kept


def top_tokens(rank: Tensor, features: Tensor, counts: Tensor) -> Tensor:
    """``(K, B, L)`` bool: each row's ``counts[k, b]`` highest-ranked features."""
    return features & (rank < counts[:, :, None])


def token_overlap(rank: Tensor, features: Tensor, rationale: Tensor) -> tuple[Tensor, Tensor]:
    """``(tp (B,), k (B,))``: how many of the top-k features are human rationale, k being the
    rationale's length (so precision = recall = F1 = tp / k per instance)."""
    rationale = rationale & features
    k = rationale.sum(1)
    predicted = top_tokens(rank, features, k[None])[0]
    return (predicted & rationale).sum(1), k


def auprc(scores: Tensor, features: Tensor, rationale: Tensor) -> Tensor:
    """``(B,)`` area under each row's precision-recall curve over its features, NaN for rows
    without a rationale token.

    sklearn's ``precision_recall_curve`` (one point per distinct score, from the highest,
    plus recall 0 at precision 1) and ``auc`` (trapezoid over recall), as ERASER scores
    soft rationales; all rows at once: sort, cumulative counts, the last position of each
    run of equal scores is a curve point.
    """
    batch, length = scores.shape
    ranked = scores.double().masked_fill(~features, float("-inf"))
    ordered, order = torch.sort(ranked, dim=1, descending=True, stable=True)
    is_feature = features.gather(1, order)
    true = (rationale & features).gather(1, order).double()
    tp, seen = true.cumsum(1), is_feature.double().cumsum(1)
    positives = tp[:, -1:]
    # a point closes each run of equal scores: the next score differs (or features end)
    nxt = torch.cat([ordered[:, 1:], torch.full_like(ordered[:, :1], float("-inf"))], 1)
    point = is_feature & (ordered != nxt)
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


@RESULTS.register("eraser")
@dataclass
class EraserResult:
    """Plain data: ERASER's faithfulness and plausibility scores per method.

    ``instances`` (when kept) holds per instance, in loader order: ``labels``, ``probs``
    (full input, per class), ``rationale_length``, and per method ``comprehensiveness`` /
    ``sufficiency`` (per bin, per class), ``comprehensiveness_rationale`` /
    ``sufficiency_rationale`` (per class, k = human length) and ``scores`` (the soft score
    of each document token of the encoded input, in order): what
    :func:`write_eraser_results` needs.
    """

    kind: ClassVar[str] = "eraser"
    bins: list[float]
    accuracy: float
    comprehensiveness: dict[str, float]  # AOPC (higher = more faithful)
    sufficiency: dict[str, float]  # AOPC (lower = more faithful)
    comprehensiveness_bins: dict[str, list[float]]  # mean over instances, per bin
    sufficiency_bins: dict[str, list[float]]
    comprehensiveness_rationale: dict[str, float]  # k = the human rationale's length
    sufficiency_rationale: dict[str, float]
    token_f1: dict[str, float]  # instance-macro F1 of the top-k tokens
    token_f1_micro: dict[str, float]
    auprc: dict[str, float]
    num_samples: int
    instances: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def methods(self) -> list[str]:
        return list(self.comprehensiveness)

    def table(self) -> tuple[list[str], list[list[Any]]]:
        """``(columns, rows)``: one row per method."""
        columns = ["method", "comprehensiveness", "sufficiency", "comprehensiveness_rationale",
                   "sufficiency_rationale", "token_f1", "auprc"]
        return columns, [[m, *(getattr(self, c)[m] for c in columns[1:])] for m in self.methods]

    def summary(self) -> dict[str, float]:
        """``accuracy`` and ``comprehensiveness/<method>``, ``sufficiency/<method>`` (AOPC),
        ``token_f1/<method>``, ``auprc/<method>``."""
        out = {"accuracy": self.accuracy}
        for key in ("comprehensiveness", "sufficiency", "token_f1", "auprc"):
            out |= {f"{key}/{m}": v for m, v in getattr(self, key).items()}
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EraserResult:
        names = [f.name for f in fields(cls) if f.name != "instances"]
        return cls(**{f: data[f] for f in names}, instances=data.get("instances"))


# -- the evaluation ---------------------------------------------------------------------


def _check_bins(bins: Sequence[float]) -> list[float]:
    values = list(bins)
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, float))
                         or not 0 < v < 1 for v in values):
        raise SettingError(f"bins must list fractions in (0, 1), got {values!r}")
    if values != sorted(set(values)):
        raise SettingError(f"bins must be increasing without repeats, got {values!r}")
    return [float(v) for v in values]


class EraserMetrics:
    """ERASER's comprehensiveness, sufficiency, token F1 and AUPRC (configured callable).

    Args:
        bins: fractions of the document tokens for AOPC (ERASER: 1, 5, 10, 20, 50 %).
        target: the class explained: ``predicted`` (ŷ, whose probability the metrics
            follow) or the true ``label``.
        seed: seeds each method's generator (baselines, noise, the random ranking).
        output: explain the target ``logit`` or its ``log_prob``.
        keep_instances: keep the per-instance numbers :func:`write_eraser_results` needs.
        limit_batches: evaluate only the first batches of the loader.
        progress: show a rich progress bar over batches.
    """

    def __init__(
        self,
        bins: Sequence[float] = BINS,
        target: str = "predicted",
        seed: int = 0,
        output: Output = "logit",
        keep_instances: bool = True,
        limit_batches: int | None = None,
        progress: bool = True,
    ) -> None:
        self.bins = _check_bins(bins)
        self.target = check_choice(target, "target", TARGETS)
        check_output(output, "output")
        self.seed, self.output = seed, output
        self.keep_instances = check_flag(keep_instances, "keep_instances")
        self.limit_batches, self.progress = check_limit_batches(limit_batches), progress

    @staticmethod
    def probabilities(forward: ModalityForward, ids: Tensor) -> Tensor:
        """``(B, C)`` class probabilities of token ids (no gradient); the query is read even
        when every document token was deleted."""
        with torch.no_grad():
            return forward.modality.logits(forward.net, ids).softmax(-1)  # type: ignore

    def evaluate_method(self, explainer: Explainer, name: str, x: Tensor, rationale: Tensor,
                        target: Tensor) -> dict[str, Tensor]:
        """One method on one batch: per-instance probabilities of every removal, the F1
        overlap counts, AUPRC and the soft scores."""
        m: TextModality = explainer.forward.modality  # type: ignore[assignment]
        features = m.valid_features(x)
        _, scores = explainer(name, x, target)  # (B, L) |attribution|
        rank = rank_features(scores, features)
        removed, kept = bin_counts(features.sum(1), self.bins)  # (K, B)
        tp, k = token_overlap(rank, features, rationale)
        # K bins + the human length: (K + 1, B, L) tokens to take out / to keep
        take_out = top_tokens(rank, features, torch.cat([removed, k[None]]))
        keep_only = top_tokens(rank, features, torch.cat([kept, k[None]]))
        tokens = x != m.pad_id
        variants = torch.cat([tokens & ~take_out, tokens & (~features | keep_only)])
        probs = torch.stack([self.probabilities(explainer.forward,
                                                delete_tokens(x, keep, m.pad_id))
                             for keep in variants], dim=1)  # (B, 2(K + 1), C)
        bins = len(self.bins)
        return {"comprehensiveness": probs[:, :bins], "comprehensiveness_rationale": probs[:, bins],
                "sufficiency": probs[:, bins + 1: -1], "sufficiency_rationale": probs[:, -1],
                "tp": tp, "k": k, "auprc": auprc(scores, features, rationale),
                "scores": scores.float(), "features": features}

    def __call__(
        self,
        model: nn.Module,
        loader: Iterable[Sequence[Tensor]],
        methods: Sequence[str] | Mapping[str, Attribution],
        modality: TextModality | None = None,
    ) -> EraserResult:
        """Evaluate ``methods`` on ``loader``'s ``(ids, labels, rationale)`` batches.

        ``model`` has ``embed``/``classify`` (:class:`sgt.models.TextClassifier`); it runs in
        eval mode on its own device and is left in the mode it was in. ``modality`` says
        which tokens are document tokens (``TextModality(**EraserDataModule.modality_kwargs())``).
        """
        check_methods(methods)
        explainer = Explainer(ModalityForward(model, modality or TextModality(), self.output),
                              methods, self.seed)
        device = explainer.device
        full: dict[str, list[Tensor]] = {"labels": [], "probs": []}
        per_method: dict[str, dict[str, list[Tensor]]] = {n: {} for n in explainer.methods}
        # Batches outside, methods inside (not sum_per_method): the full input's
        # probabilities and target are computed once per batch for every method, and the
        # per-instance outputs are concatenated, not summed.
        with eval_mode(model), Progress(disable=not self.progress, transient=True) as bar:
            task = bar.add_task("ERASER metrics",
                                total=num_batches(loader, self.limit_batches))
            for batch in islice(loader, self.limit_batches):
                x, y, rationale = self._unpack(batch, device)
                probs = self.probabilities(explainer.forward, x)
                target = probs.argmax(1) if self.target == "predicted" else y
                full["labels"].append(y)
                full["probs"].append(probs)
                for name, parts in per_method.items():
                    out = self.evaluate_method(explainer, name, x, rationale, target)
                    for key, value in out.items():
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
            "comprehensiveness", "sufficiency", "comprehensiveness_bins", "sufficiency_bins",
            "comprehensiveness_rationale", "sufficiency_rationale", "token_f1",
            "token_f1_micro", "auprc")}
        for name, out in per_method.items():
            for key in ("comprehensiveness", "sufficiency"):
                d = drop(out[key])  # (N, K)
                scores[key][name] = d.mean().item()  # instances × bins, as ERASER
                scores[f"{key}_bins"][name] = d.mean(0).tolist()
                scores[f"{key}_rationale"][name] = drop(out[f"{key}_rationale"]).mean().item()
            tp, k = out["tp"].double(), out["k"]
            scores["token_f1"][name] = (tp[k > 0] / k[k > 0]).mean().nan_to_num().item()
            scores["token_f1_micro"][name] = (tp.sum() / k.sum().clamp_min(1)).item()
            scores["auprc"][name] = out["auprc"].nanmean().nan_to_num().item()
        instances = self._instances(labels, probs, per_method) if self.keep_instances else None
        return EraserResult(list(self.bins), (predicted[:, 0] == labels).double().mean().item(),
                            **scores, num_samples=len(labels), instances=instances)

    @staticmethod
    def _instances(labels: Tensor, probs: Tensor, per_method: dict[str, dict[str, Tensor]]
                   ) -> dict[str, Any]:
        first = next(iter(per_method.values()))
        counts = first["features"].sum(1).tolist()
        methods = {}
        for name, out in per_method.items():
            scores = out["scores"][out["features"]].split(counts)  # ragged: document tokens
            methods[name] = {key: out[key].tolist() for key in (
                "comprehensiveness", "sufficiency", "comprehensiveness_rationale",
                "sufficiency_rationale")} | {"scores": [s.tolist() for s in scores]}
        return {"labels": labels.tolist(), "probs": probs.tolist(),
                "rationale_length": first["k"].tolist(), "methods": methods}

    @staticmethod
    def _unpack(batch: Sequence[Tensor], device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        if len(batch) < 3:
            raise SettingError(
                f"ERASER metrics need batches (ids, labels, rationale), got {len(batch)} "
                "entries; evaluate on EraserDataModule's val or test loader")
        x, y, rationale = (t.to(device, non_blocking=True) for t in batch[:3])
        return x, y, rationale.bool()

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
    the hard rationale is the top-k tokens, k = the human rationale's length.
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
                ours["comprehensiveness_rationale"][i]),
            "sufficiency_classification_scores": by_class(ours["sufficiency_rationale"][i]),
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for record in eraser_instances(result, split, method):
            f.write(json.dumps(record, sort_keys=True) + "\n")
    return path


__all__ = [
    "BINS",
    "EraserMetrics",
    "EraserResult",
    "auprc",
    "bin_counts",
    "delete_tokens",
    "eraser_instances",
    "rank_features",
    "token_overlap",
    "top_tokens",
    "write_eraser_results",
]
