"""Figures for evaluations and reports: each function writes one PNG and returns its path.

``result_figures(results, stem)`` draws every figure registered for a result kind
(``FIGURES``), ``plot_examples(modality, examples, maps, path)`` example saliency maps as
their modality reads (``EXAMPLE_FIGURES``); importing this package registers them all.
"""

from sgt.plots.accuracy_drop import plot_accuracy_drop
from sgt.plots.common import FIGURES, result_figures
from sgt.plots.examples import EXAMPLE_FIGURES, plot_examples
from sgt.plots.road import plot_road
from sgt.plots.saliency import plot_gradient_distributions, plot_saliency_examples
from sgt.plots.sanity import plot_sanity
from sgt.plots.sweep import plot_metric_vs, plot_tradeoff
from sgt.plots.text import plot_eraser, plot_token_highlights
from sgt.plots.timeseries import plot_box_saliency, plot_masked_accuracy, plot_precision_recall
from sgt.plots.training import plot_training_curves

__all__ = [
    "EXAMPLE_FIGURES",
    "FIGURES",
    "plot_accuracy_drop",
    "plot_box_saliency",
    "plot_eraser",
    "plot_examples",
    "plot_gradient_distributions",
    "plot_masked_accuracy",
    "plot_metric_vs",
    "plot_precision_recall",
    "plot_road",
    "plot_sanity",
    "plot_saliency_examples",
    "plot_token_highlights",
    "plot_tradeoff",
    "plot_training_curves",
    "result_figures",
]
