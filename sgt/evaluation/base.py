"""What every faithfulness evaluation shares, so one runs layer can drive them all.

An *evaluation* is a configured callable (options in ``__init__``, data at the call) that
maps ``(model, loader, methods, modality)`` to a *result*: plain data that can be saved
(``to_dict``/``from_dict``), tabulated (``table``) and summarised as flat scalars
(``summary``, what ``metrics.json``, loggers and sweep reports take). A loader yields
tuples whose first two entries are ``(inputs, labels)``; an evaluation that needs more
(a time series' true box, a review's human rationale) reads the entries after them.
Results are registered by ``kind`` so a saved JSON file can be read back without knowing
which evaluation wrote it; figures live in :mod:`sgt.plots`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Protocol

from torch import Tensor, nn

from sgt.errors import SettingError
from sgt.features import Modality
from sgt.registry import Registry
from sgt.saliency import Attribution


class EvaluationResult(Protocol):
    kind: ClassVar[str]

    def to_dict(self) -> dict[str, Any]: ...

    def table(self) -> tuple[list[str], list[list[Any]]]: ...

    def summary(self) -> dict[str, float]: ...


class Evaluation(Protocol):
    def __call__(self, model: nn.Module, loader: Iterable[Sequence[Tensor]],
                 methods: Sequence[str] | Mapping[str, Attribution],
                 modality: Modality | None = None) -> EvaluationResult: ...


RESULTS: Registry[type] = Registry("evaluation result")


def result_from_dict(data: Mapping[str, Any]) -> EvaluationResult:
    """Read back a saved result (``to_dict()`` output, which carries its ``kind``)."""
    return RESULTS.get(data.get("kind", "accuracy_drop")).from_dict(data)


def check_methods(methods: Sequence[str] | Mapping[str, Attribution]) -> None:
    """An evaluation needs at least one method: say so before any work."""
    if not methods:
        raise SettingError("no attribution methods to evaluate; list at least one in "
                           "eval.methods (e.g. [grad, random])")
