"""Library defaults as Hydra config nodes, so that each default is stated once: in the
signature of the library object that uses it.

``configs/sgt/default.yaml``, each ``configs/eval/<name>.yaml`` and the model configs with
settings of their own start from these nodes (``defaults: [/library/<name>@...]``), then add
``_target_`` and what differs for the CLI. A model's node leaves out what the data gives it
(:data:`DATA_GIVEN`), so ``model.hidden_size=64`` works and ``model.num_classes`` stays the
dataset's.
``python -m experiments.train --cfg job`` shows the composed values. Importing
:mod:`experiments.runs` registers them, before Hydra composes any config.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from hydra.core.config_store import ConfigStore

from sgt.evaluation import (
    AccuracyDrop,
    CascadingRandomization,
    EraserMetrics,
    Road,
    TimeSeriesMetrics,
)
from sgt.models import (
    LSTM,
    TCN,
    VGG16,
    BiLSTM,
    LSTMWithInputCellAttention,
    TextTransformer,
    Transformer,
)
from sgt.module import SaliencyGuidedModule

GROUP = "library"


def _plain(value: Any) -> Any:
    """YAML-able: tuples become lists, read-only mappings dicts."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def signature_defaults(factory: Callable[..., Any]) -> dict[str, Any]:
    """Every keyword of ``factory`` that has a default, with that default."""
    params = inspect.signature(factory).parameters.values()
    return {p.name: _plain(p.default) for p in params
            if p.default is not inspect.Parameter.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


# Constructor arguments a datamodule supplies (``InMemoryDataModule.model_kwargs``).
DATA_GIVEN = frozenset({"num_classes", "vocab_size", "pad_id", "vocabulary", "num_features",
                        "time_steps"})


def model_defaults(factory: Callable[..., Any]) -> dict[str, Any]:
    """A model's own settings with their defaults, without what the data gives it."""
    return {k: v for k, v in signature_defaults(factory).items() if k not in DATA_GIVEN}


# name -> the defaults of the object the config of that name builds
LIBRARY_DEFAULTS: dict[str, Callable[[], dict[str, Any]]] = {
    "sgt": lambda: _plain(SaliencyGuidedModule.settings_defaults()),
    "accuracy_drop": lambda: signature_defaults(AccuracyDrop),
    "sanity": lambda: signature_defaults(CascadingRandomization),
    "road": lambda: signature_defaults(Road),
    "timeseries": lambda: signature_defaults(TimeSeriesMetrics),
    "eraser": lambda: signature_defaults(EraserMetrics),
    "bilstm": lambda: model_defaults(BiLSTM),
    "text_transformer": lambda: model_defaults(TextTransformer),
    "lstm": lambda: model_defaults(LSTM),
    "lstm_cell_attention": lambda: model_defaults(LSTMWithInputCellAttention),
    "tcn": lambda: model_defaults(TCN),
    "transformer": lambda: model_defaults(Transformer),
    "vgg16": lambda: model_defaults(VGG16),
}


def register_library_defaults() -> None:
    store = ConfigStore.instance()
    for name, defaults in LIBRARY_DEFAULTS.items():
        store.store(group=GROUP, name=name, node=defaults())
