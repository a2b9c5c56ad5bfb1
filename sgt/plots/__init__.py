"""Figures for evaluations and reports: each function writes one PNG and returns its path.

``result_figures(results, stem)`` draws every figure registered for a result kind
(``FIGURES``); importing this package registers them all.
"""

from sgt.plots.accuracy_drop import plot_accuracy_drop
from sgt.plots.common import FIGURES, result_figures
from sgt.plots.saliency import plot_gradient_distributions, plot_saliency_examples
from sgt.plots.sanity import plot_sanity
from sgt.plots.sweep import plot_metric_vs

__all__ = [
    "FIGURES",
    "plot_accuracy_drop",
    "plot_gradient_distributions",
    "plot_metric_vs",
    "plot_sanity",
    "plot_saliency_examples",
    "result_figures",
]
