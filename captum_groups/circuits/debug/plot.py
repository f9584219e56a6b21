"""Pictures of image debugging: the image with its expressing crops, the active path."""

from __future__ import annotations

from typing import TYPE_CHECKING

from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from ..._io.plain_text import plain_text
from ..plot import draw_circuit

if TYPE_CHECKING:
    from .results import ClassComparison, ImageDebug

__all__ = ["draw_box", "plot_comparison", "plot_image_debug", "show_image"]

Box = tuple[int, int, int, int]
COLORS = ("tab:orange", "tab:green", "tab:purple", "tab:cyan", "tab:olive", "tab:pink")
"""Colours of the active groups' crops on the image."""


def show_image(axis: object, image: Tensor) -> None:
    shown = image.detach().cpu().float()
    shown = (shown - shown.min()) / (shown.max() - shown.min()).clamp_min(1e-12)
    if shown.shape[0] == 1:
        axis.imshow(shown[0].numpy(), cmap="gray_r")
    else:
        axis.imshow(shown[:3].permute(1, 2, 0).numpy())
    axis.set_xticks([])
    axis.set_yticks([])


def draw_box(axis: object, box: Box, color: str) -> None:
    top, left, height, width = box
    axis.add_patch(
        Rectangle(
            (left - 0.5, top - 0.5), width, height, fill=False, edgecolor=color, linewidth=2.0
        )
    )


@plain_text
def plot_image_debug(
    debug: ImageDebug, data: Tensor | None = None, max_groups: int = 4, crops_per_group: int = 3
) -> Figure:
    """The image with the crops that express each active group, and the circuit with
    this image's active path highlighted.

    Parameters
    ----------
    data : Tensor, optional
        The images the circuit's exemplars index, for exemplar thumbnails.
    max_groups : int
        Active groups shown on the image: the top layer's first, each layer's
        by flow.
    crops_per_group : int
        Expressing crops drawn per group.

    Returns
    -------
    matplotlib.figure.Figure
    """
    shown = [
        row
        for layer in reversed(debug.circuit.layers)
        for row in debug.top(len(debug.groups), "flow", layer)
    ][:max_groups]
    colors = {row.node: COLORS[i % len(COLORS)] for i, row in enumerate(shown)}
    width = max(len(debug.circuit.node_ids(layer)) for layer in debug.circuit.layers)
    columns = max(1, len(shown))
    figure = Figure(figsize=(max(7.0, 2.2 * width + 2.0), 2.4 + 2.0 * len(debug.circuit.layers)))
    grid = figure.add_gridspec(2, columns, height_ratios=[1, len(debug.circuit.layers) + 1])
    for i, row in enumerate(shown or [None]):
        axis = figure.add_subplot(grid[0, i])
        show_image(axis, debug.image)
        if row is None:
            axis.set_title("no active group", fontsize=8)
            continue
        for box, _ in row.crops[:crops_per_group]:
            draw_box(axis, box, colors[row.node])
        label = f" ({row.group.label})" if row.group.label else ""
        axis.set_title(
            f"{row.node}{label}\nscore {row.score:.2f}, share {row.share:.0%}", fontsize=8
        )
    notes = {node: f"score {row.score:.2f} · {row.share:.0%}" for node, row in debug.groups.items()}
    circuit_axis = figure.add_subplot(grid[1, :])
    draw_circuit(
        circuit_axis,
        debug.circuit,
        data,
        edge_values=debug.active_path,
        node_colors={node: colors.get(node, "black") for node in debug.active},
        node_notes=notes,
    )
    circuit_axis.set_title(
        f"predicted {debug.prediction}; active path toward {debug.circuit.target!r} "
        f"(edge width: flow on this image)",
        fontsize=9,
    )
    figure.tight_layout()
    return figure


@plain_text
def plot_comparison(comparison: ClassComparison, n: int = 6, layer: str | None = None) -> Figure:
    """Bars of the n groups (of one layer, if given) that separate the classes most,
    inactive ones pale, and the image with the crops that express the active group
    pushing most toward each class.

    Returns
    -------
    matplotlib.figure.Figure
    """
    a, b = comparison.classes
    rows = comparison.separating(layer)[:n]
    figure = Figure(figsize=(9.0, 0.5 * len(rows) + 2.0))
    grid = figure.add_gridspec(1, 3, width_ratios=[1, 1, 2.2])
    for column, (debug, cls) in enumerate([(comparison.first, a), (comparison.second, b)]):
        axis = figure.add_subplot(grid[0, column])
        show_image(axis, debug.image)
        best = debug.top(1, by="contrast", layer=layer)
        if best:
            for box, _ in best[0].crops[:3]:
                draw_box(axis, box, "tab:red" if column == 0 else "tab:blue")
            axis.set_title(f"for {cls}: {best[0].node}\nscore {best[0].score:.2f}", fontsize=8)
        else:
            axis.set_title(f"no active group\nfor {cls}", fontsize=8)
    axis = figure.add_subplot(grid[0, 2])
    names = [
        f"{a if which == 'A' else b}:{row.node}"
        + (f" ({row.group.label})" if row.group.label else "")
        for which, row, _ in rows
    ]
    for position, (_, row, push) in enumerate(rows):
        axis.barh(
            position,
            push,
            color="tab:red" if push > 0 else "tab:blue",
            alpha=1.0 if row.active else 0.35,
        )
    axis.set_yticks(range(len(rows)), names, fontsize=8)
    axis.invert_yaxis()
    axis.axvline(0, color="0.3", linewidth=0.8)
    axis.set_xlabel(f"push toward {a} over {b} (margin units; pale: inactive)")
    figure.tight_layout()
    return figure
