"""What every faithfulness evaluation shares: one template and one kind of result.

An *evaluation* (:class:`Evaluation`, as Quantus's ``Metric``) is a configured callable:
options in ``__init__``, data at the call. Its ``__call__`` is the template every evaluation
follows: check the methods and the modality, build the :class:`~sgt.saliency.Explainer`
(each method on its own seeded stream), run the batches, and turn what they gave into a
*result*. An evaluation writes only its settings' checks and its per-batch verb,
:meth:`Evaluation.evaluate_batch`; most run it through :func:`sum_per_method` (for each
method, for each batch, counts summed on the device), and the few that need another loop
(per-instance outputs, a model randomised layer by layer) override :meth:`Evaluation.run`.

A *result* (:class:`Result`) is plain data that can be saved (``to_dict``/``from_dict``),
tabulated (``table``) and summarised as flat scalars (``summary``: what ``metrics.json``,
loggers and reports take). Each result class declares its *measures*: for every summary key
(``auc/grad`` is measure ``auc`` of method ``grad``) a title, whether higher is better and a
unit, so reports and plots read the direction from the library instead of guessing it from
the key. Results are registered by ``kind`` so a saved JSON file can be read back without
knowing which evaluation wrote it; figures live in :mod:`sgt.plots`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from itertools import islice
from typing import Any, ClassVar, TypeVar

from rich.progress import Progress
from torch import Tensor, nn

from sgt.checks import check_finite_batches
from sgt.errors import SettingError
from sgt.features import MODALITIES, Modality, check_feature_score
from sgt.registry import Registry
from sgt.saliency import Attribution, Explainer, ModalityForward, Output, check_output


@dataclass(frozen=True)
class Measure:
    """What a summary key measures: its title, its direction, its unit (``""``: none)."""

    title: str
    higher_is_better: bool
    unit: str = ""


class Result:
    """Base of every evaluation result (each a dataclass): its kind, its measures, and the
    methods it covers."""

    kind: ClassVar[str]
    title: ClassVar[str]
    measures: ClassVar[dict[str, Measure]]
    # the measure of each method's faithfulness relative to a random ranking, that
    # trade-off views set against accuracy (``None``: this result has none)
    faithfulness: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A result class that names its ``kind`` is registered under it, so a saved file
        is read back by the class that wrote it."""
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            RESULTS.register(cls.kind)(cls)

    def to_dict(self) -> dict[str, Any]:
        """Every field and the ``kind``: what :func:`result_from_dict` reads back."""
        return {"kind": self.kind, **asdict(self)}

    def table(self) -> tuple[list[str], list[list[Any]]]:
        raise NotImplementedError

    def summary(self) -> dict[str, float]:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Result:
        """The result saved as ``data``; a field it lacks (a file written before the field
        existed) takes the field's default."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


EvaluationResult = Result  # the name the runs layer has used
RESULTS: Registry[type[Result]] = Registry("evaluation result")


def result_from_dict(data: Mapping[str, Any]) -> Result:
    """Read back a saved result (``to_dict()`` output, which carries its ``kind``)."""
    return RESULTS.get(data.get("kind", "accuracy_drop")).from_dict(data)


def measure(key: str) -> Measure | None:
    """The measure of a summary key of any registered result (``auc/grad`` -> ``auc``;
    ``accuracy_drop/auc/grad``, a key under its evaluation's name, too), or ``None``."""
    parts = key.split("/")
    for name in parts[:2]:
        for kind in RESULTS:
            found = RESULTS.get(kind).measures.get(name)
            if found is not None:
                return found
    return None


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


Methods = Sequence[str] | Mapping[str, Attribution]


class Evaluation(ABC):
    """The template of every evaluation (see the module docstring).

    Args (shared by every evaluation):
        seed: seeds each method's generator (baselines, noise, random rankings, fills).
        output: explain the target ``logit``, its ``log_prob`` or its ``prob``.
        feature_score: how a feature's attribution values reduce to its score
            (:data:`sgt.features.FEATURE_SCORES`).
        limit_batches: evaluate only the first batches of the loader.
        progress: show a rich progress bar.
    """

    name: ClassVar[str]  # the result's kind
    title: ClassVar[str]  # what progress bars and reports call it
    modalities: ClassVar[tuple[str, ...]]  # the modalities it applies to, the default first
    batch_fields: ClassVar[tuple[str, ...]] = ("inputs",)  # what it reads of each batch

    def __init__(self, *, seed: int = 0, output: Output = "logit",
                 feature_score: str = "abs_mean", limit_batches: int | None = None,
                 progress: bool = True) -> None:
        check_output(output, "output")
        self.seed, self.output = seed, output
        self.feature_score = check_feature_score(feature_score)
        self.limit_batches, self.progress = check_limit_batches(limit_batches), progress

    def __call__(self, model: nn.Module, loader: Iterable[Sequence[Tensor]], methods: Methods,
                 modality: Modality | None = None) -> Result:
        """Evaluate ``methods`` (names or instances) on ``loader``'s batches.

        ``model`` maps ``modality.embed`` output to logits; it is evaluated in eval mode on
        its own device and left in the mode it was in.
        """
        check_methods(methods)
        modality = modality or MODALITIES[self.modalities[0]]()
        if modality.name not in self.modalities:
            raise SettingError(f"{self.title} applies to {', '.join(self.modalities)} data, "
                               f"not {modality.name}; choose another evaluation (eval=...)")
        check_finite_batches(islice(loader, self.limit_batches), self.batch_fields, self.title)
        model = self.explained(model)
        device = next(model.parameters()).device
        explainer = Explainer(ModalityForward(model, modality, self.output),
                              self.methods_for(methods, device), self.seed,
                              self.feature_score)
        return self.run(explainer, loader)

    def explained(self, model: nn.Module) -> nn.Module:
        """The model the methods explain: ``model`` (an evaluation that changes it works on
        a copy)."""
        return model

    def methods_for(self, methods: Methods, device: Any) -> Methods:
        """The methods to run: ``methods`` (an evaluation may add its baseline)."""
        return methods

    def run(self, explainer: Explainer, loader: Iterable[Sequence[Tensor]]) -> Result:
        """:meth:`evaluate_batch` summed per method over the batches, then :meth:`result`."""
        sums, total = sum_per_method(
            explainer, loader, lambda name, batch: self.evaluate_batch(explainer, name, batch),
            self.title, self.limit_batches, self.progress)
        return self.result(sums, total)

    @abstractmethod
    def evaluate_batch(self, explainer: Explainer, name: str, batch: Sequence[Tensor]) -> Any:
        """Method ``name`` on one batch (on the device): what :meth:`run` gathers."""

    def result(self, sums: dict[str, Any], total: int) -> Result:
        """The result of what :meth:`run` gathered over ``total`` samples."""
        raise NotImplementedError


def with_random(methods: Methods) -> list[str] | dict[str, Attribution]:
    """``methods`` plus ``random`` (the i.i.d. ranking every method should beat) when it is
    not among them."""
    from sgt.saliency import get_method

    if "random" in methods:
        return dict(methods) if isinstance(methods, Mapping) else list(methods)
    if isinstance(methods, Mapping):
        return {**methods, "random": get_method("random")}
    return [*methods, "random"]


__all__ = [
    "RESULTS",
    "Evaluation",
    "EvaluationResult",
    "Measure",
    "Result",
    "check_limit_batches",
    "check_methods",
    "eval_mode",
    "measure",
    "num_batches",
    "result_from_dict",
    "sum_per_method",
    "with_random",
]
