"""The views of ``experiments.report``: each a way of looking at collected runs.

Every view takes the records of :func:`experiments.runs.collect.collect` and the report's
options, prints its table on the console and writes its files under names no earlier report
holds (``--out``, by default the first folder given): ``sweep`` (one row per run, metrics
against the swept settings), ``compare`` (N runs side by side, with their figures), ``mnist``
(the paper's MNIST comparison), ``tradeoff`` (accuracy against faithfulness, the Pareto
front marked), ``table1`` and ``table2`` (the poster's tables beside ours).
"""

from experiments.runs.views import (  # noqa: F401 (they register themselves)
    compare,
    sweep,
    table1,
    table2,
    tradeoff,
)
from experiments.runs.views.common import VIEWS, Options

__all__ = ["VIEWS", "Options"]
