"""The benchmark suite's sections and their shared measuring core (``python -m
experiments.benchmark suite``)."""

# Priority order: the cheapest and most important first. Each names a module
# ``experiments.bench.<name>`` with ``run(ctx) -> Iterator[Figure]``, imported when reached.
SECTIONS = ("steps", "loop", "startup", "epochs", "accuracy_drop", "timeseries", "road")
