"""What every faithfulness evaluation shares, so one runs layer can drive them all.

An *evaluation* is a configured callable (options in ``__init__``, data at the call) that
maps ``(model, loader, methods, modality)`` to a *result*: plain data that can be saved
(``to_dict``/``from_dict``), tabulated (``table``) and summarised as flat scalars
(``summary``, what ``metrics.json``, loggers and sweep reports take). A loader yields
tuples whose first two entries are ``(inputs, labels)``; an evaluation that needs more
(a time series' true box, a review's human rationale) reads the entries after them.
Results are registered by ``kind`` so a saved JSON file can be read back without knowing
which evaluation wrote it; figures live in :mod:`sgt.plots`.

Most evaluations run one loop: for each method, for each batch, compute per-batch counts on
the device and add them up (:func:`sum_per_method`), with the model in eval mode.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from contextlib import contextmanager
from itertools import islice
from typing import Any, ClassVar, Protocol, TypeVar

from rich.progress import Progress
from torch import Tensor, nn

from sgt.errors import SettingError
from sgt.features import Modality
from sgt.registry import Registry
from sgt.saliency import Attribution, Explainer


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


def check_limit_batches(limit_batches: object) -> int | None:
    """``limit_batches``: ``None`` (every batch) or a positive integer."""
    if limit_batches is not None and (isinstance(limit_batches, bool) or
                                      not isinstance(limit_batches, int) or limit_batches <= 0):
        raise SettingError(f"limit_batches must be a positive integer or null, got "
                           f"{limit_batches!r}")
    return limit_batches


def num_batches(loader: Iterable, limit_batches: int | None) -> int | None:
    """Batches an evaluation reads from ``loader``, for a progress bar (``None``: unknown)."""
    n = len(loader) if isinstance(loader, Sized) else None
    if limit_batches is not None:
        n = limit_batches if n is None else min(n, limit_batches)
    return n


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode inside the block, then back in the mode it was in (also when
    the block raises): an evaluation must not leave a training model switched."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


Sums = TypeVar("Sums", Tensor, dict[str, Tensor])


def sum_per_method(
    explainer: Explainer,
    loader: Iterable[Sequence[Tensor]],
    step: Callable[[str, Sequence[Tensor]], Sums],
    description: str,
    limit_batches: int | None = None,
    progress: bool = True,
) -> tuple[dict[str, Sums], int]:
    """For each of ``explainer``'s methods, ``step(name, batch)`` summed over the batches.

    Every batch (the loader's first ``limit_batches``) has its tensors moved to the
    explainer's device before ``step``; the sums (a tensor, or a dict of them) stay there,
    so nothing waits for the device until the caller reads them. The explained model runs
    in eval mode and is left in the mode it was in; a rich progress bar shows
    ``"<description>: <method>"``.

    Returns:
        ``({method: sums}, samples)``, ``samples`` being the labels (``batch[1]``) in one
        pass over the batches.
    Raises:
        ValueError: the loader yielded no batches.
    """
    device = explainer.device
    sums: dict[str, Sums] = {}
    total = 0
    with eval_mode(explainer.forward.net), Progress(disable=not progress,
                                                     transient=True) as bar:
        for name in explainer.methods:
            task = bar.add_task(f"{description}: {name}",
                                total=num_batches(loader, limit_batches))
            total = 0
            for batch in islice(loader, limit_batches):
                batch = [t.to(device, non_blocking=True) for t in batch]
                value = step(name, batch)
                sums[name] = _add(sums[name], value) if name in sums else value
                total += batch[1].shape[0]
                bar.advance(task)
    if total == 0:
        raise ValueError("the loader yielded no batches")
    return sums, total


def _add(total: Sums, value: Sums) -> Sums:
    """``total + value`` for a tensor or, key by key, a dict of tensors."""
    if isinstance(total, Tensor):
        return total + value
    return {key: total[key] + v for key, v in value.items()}
