"""Plots for notebooks and result folders (matplotlib / seaborn); see :mod:`mango_lite.viz.plots`."""

from .plots import (
    collect_attention,
    colorize_labels,
    genre_grid,
    label_palette,
    plot_attention,
    plot_curves_overlay,
    plot_history,
    plot_metric_table,
    plot_results,
    save_figure,
    segmentation_grid,
    to_display,
    translation_grid,
)

__all__ = [
    "collect_attention", "colorize_labels", "genre_grid", "label_palette", "plot_attention",
    "plot_curves_overlay", "plot_history", "plot_metric_table", "plot_results", "save_figure",
    "segmentation_grid", "to_display", "translation_grid",
]
