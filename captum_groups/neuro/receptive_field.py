"""A group's receptive field: which input positions move it.

The physiologist maps a cell's receptive field by probing positions of the
visual field; here the probe is the gradient. The map is the mean over
stimuli and input channels of |d group / d input| at each position (the
gradient comes from :class:`~captum_groups.attr.GroupGradient`, so a group
at one run of a recurrent layer works too). The field's extent is the
bounding box of the positions whose map value exceeds ``threshold`` times
the maximum (0 gives the exact support: every position that moves the
group at all, which for a unit of a conv stack is its analytic receptive
field), and its centre is the map-weighted mean position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from torch import Tensor, nn

from .._io.plain_text import plain_text
from .._validation.checks import Number, validate
from .._validation.deprecation import renamed_keywords
from .._validation.errors import ParameterError
from ..attr import GroupGradient
from ..groups import NeuronGroup

__all__ = ["ReceptiveField", "receptive_field"]


@dataclass(frozen=True)
class ReceptiveField:
    """Where a group looks.

    Attributes
    ----------
    map : ndarray
        (height, width): mean ``|gradient|`` at each input position.
    extent : tuple of int
        (top, left, bottom, right), inclusive, of the positions above the threshold.
    centre : tuple of float
        (row, column): the map-weighted mean position.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from captum_groups import NeuronGroup
    >>> model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Conv2d(2, 2, 3))
    >>> field = receptive_field(model, NeuronGroup("2", [0], reduction=(4, 4)),
    ...                         torch.randn(3, 1, 12, 12), threshold=0.0)
    >>> field.map.shape, field.extent  # two 3 x 3 convolutions at (4, 4): rows, columns 4 to 8
    ((12, 12), (4, 4, 8, 8))
    """

    map: np.ndarray
    extent: tuple[int, int, int, int]
    centre: tuple[float, float]

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the extent."""
        top, left, bottom, right = self.extent
        return bottom - top + 1, right - left + 1

    @plain_text
    def plot(self, title: str | None = None) -> Figure:
        """The map with its extent outlined and its centre marked."""
        from matplotlib.patches import Rectangle

        figure = Figure(figsize=(3.6, 3.4))
        axes = figure.add_subplot()
        axes.imshow(self.map, cmap="magma")
        top, left, bottom, right = self.extent
        axes.add_patch(
            Rectangle(
                (left - 0.5, top - 0.5),
                right - left + 1,
                bottom - top + 1,
                fill=False,
                edgecolor="cyan",
                linewidth=1.5,
            )
        )
        axes.plot(self.centre[1], self.centre[0], "c+", markersize=10)
        axes.set_title(title or f"receptive field {self.size[0]}x{self.size[1]} px")
        axes.set_axis_off()
        figure.tight_layout()
        return figure


@renamed_keywords(stimuli="data")
def receptive_field(
    model: nn.Module, group: NeuronGroup, data: Tensor, threshold: float = 0.05
) -> ReceptiveField:
    """The receptive field of a group on image stimuli.

    Parameters
    ----------
    model : nn.Module
        The model.
    group : NeuronGroup
        The group; a position reduction (``reduction=(h, w)``) maps one
        position of its neurons, a spatial mean all of them.
    data : Tensor
        (N, C, H, W) images the gradient is averaged over (noise, or natural images).
    threshold : float
        Fraction of the map's maximum a position must exceed to be in the extent.

    Returns
    -------
    ReceptiveField

    Examples
    --------
    >>> import torch
    >>> model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Conv2d(2, 2, 3))
    >>> field = receptive_field(model, NeuronGroup("2", [0], reduction=(4, 4)),
    ...                         torch.randn(3, 1, 12, 12), threshold=0.0)
    >>> field.extent, field.size
    ((4, 4, 8, 8), (5, 5))
    """
    validate({"threshold": Number(0, 1)}, {"threshold": threshold})
    if isinstance(data, Tensor) and data.ndim == 4 and not data.is_floating_point():
        raise ParameterError(
            "data",
            f"data must be floating-point images (gradients are taken with respect to "
            f"them), got dtype {data.dtype}; convert them, e.g. data.float() / 255",
        )
    if not isinstance(data, Tensor) or data.ndim != 4:
        raise ParameterError(
            "data", "data must be a tensor of images (N, C, H, W) to map positions on"
        )
    if not isinstance(group, NeuronGroup):
        raise ParameterError("group", f"group must be a NeuronGroup, got {type(group).__name__}")
    probe = data.detach().clone().requires_grad_(True)
    gradient = GroupGradient(model, group.layer).attribute(probe, group)
    field = gradient.detach().abs().double().mean((0, 1)).cpu().numpy()
    peak = field.max()
    if peak == 0:
        raise ValueError(f"group {group!r} does not depend on the input at any position")
    rows, columns = np.nonzero(field > threshold * peak if threshold else field > 0)
    weights = field / field.sum()
    grid_rows, grid_columns = np.indices(field.shape)
    centre = (float((weights * grid_rows).sum()), float((weights * grid_columns).sum()))
    extent = (int(rows.min()), int(columns.min()), int(rows.max()), int(columns.max()))
    return ReceptiveField(field, extent, centre)
