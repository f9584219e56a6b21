"""Exemplar montages: each group's top exemplar crops, optionally with its attribution heatmap."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from torch import Tensor, nn

from .._io.plain_text import plain_text
from .._model.guards import guarded_call
from .._validation.checks import check_positive_int
from ..attr import GroupDeepLift, GroupGradient, GroupIntegratedGradients
from ..data import Data
from ..discovery.exemplars import TopExemplars
from ..groups import GroupsLike, NeuronGroup, as_group_list

ATTRIBUTIONS = {
    "integrated_gradients": GroupIntegratedGradients,
    "gradient": GroupGradient,
    "deeplift": GroupDeepLift,
}


def _as_image(crop: Tensor) -> np.ndarray:
    crop = crop.detach().cpu().float()
    crop = (crop - crop.min()) / (crop.max() - crop.min()).clamp_min(1e-12)
    return crop[0].numpy() if crop.shape[0] == 1 else crop.permute(1, 2, 0).numpy()


def plot_group_exemplars(
    exemplars: TopExemplars,
    data: Data,
    groups: GroupsLike,
    n: int = 8,
    model: nn.Module | None = None,
    attribution: str | None = None,
    n_steps: int = 32,
) -> Figure:
    """A grid of each group's top-n exemplar crops (one row per group).

    Parameters
    ----------
    exemplars : TopExemplars
        Exemplars of the groups, one row per group in ``groups`` order (e.g.
        ``mine_exemplars(..., groups=groups).groups``).
    data : Tensor, Dataset, DataLoader or list of batches
        The images the exemplars were mined from, (N, C, H, W), in the same
        order (read by the package's one data rule).
    groups : GroupSet or sequence of NeuronGroup
        The groups, for the row labels and the attributions.
    n : int
        Exemplars per group.
    model : nn.Module, optional
        Needed with ``attribution``.
    attribution : {"integrated_gradients", "gradient", "deeplift"}, optional
        Overlay each crop with the group's attribution heatmap (red raises
        the group, blue lowers it), computed with captum_groups.attr.
    n_steps : int
        Integration steps for integrated gradients.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from captum_groups import GroupSet
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> from captum_groups.discovery import mine_exemplars
    >>> model, (x, _) = digits_cnn(), load_digits("test")
    >>> groups = GroupSet.from_labels("relu3", [i % 4 for i in range(64)])
    >>> found = mine_exemplars(model, "relu3", x, k=6, groups=groups, progress=False)
    >>> figure = plot_group_exemplars(found.groups, x, groups, n=6, model=model,
    ...                               attribution="integrated_gradients")
    >>> len(figure.axes)
    24
    """
    if not isinstance(exemplars, TopExemplars):
        raise TypeError(
            f"exemplars must be a TopExemplars (e.g. mine_exemplars(...).groups), got "
            f"{type(exemplars).__name__}"
        )
    groups = as_group_list(groups)
    check_positive_int(n, "n")
    check_positive_int(n_steps, "n_steps")
    if exemplars.values.shape[0] != len(groups):
        raise ValueError(
            f"exemplars has {exemplars.values.shape[0]} rows but {len(groups)} groups were given"
        )
    if attribution is not None:
        if attribution not in ATTRIBUTIONS:
            raise ValueError(
                f"attribution must be one of {sorted(ATTRIBUTIONS)}, got {attribution!r}"
            )
        if model is None:
            raise ValueError("attribution overlays need the model: pass model=")
    with guarded_call(model, "plot_group_exemplars"):
        shown = min(n, exemplars.values.shape[1])
        return _montage(exemplars, data, groups, shown, model, attribution, n_steps)


@plain_text
def _montage(
    exemplars: TopExemplars,
    data: Data,
    groups: list[NeuronGroup],
    n: int,
    model: nn.Module | None,
    attribution: str | None,
    n_steps: int,
) -> Figure:
    figure = Figure(figsize=(0.95 * n + 0.8, 1.0 * len(groups) + 0.3))
    axes = figure.subplots(len(groups), n, squeeze=False)
    for row, group in enumerate(groups):
        crops = exemplars.inputs(data, row)[:n]
        heat = None
        if attribution is not None:
            method = ATTRIBUTIONS[attribution](model, group.layer)
            kwargs = {"n_steps": n_steps} if attribution == "integrated_gradients" else {}
            heat = method.attribute(crops, group, **kwargs).sum(1)
        for col in range(n):
            axis = axes[row, col]
            image = _as_image(crops[col])
            axis.imshow(image, cmap="gray_r" if image.ndim == 2 else None)
            if heat is not None:
                bound = float(heat[col].abs().max()) or 1.0
                axis.imshow(
                    heat[col].detach().cpu().numpy(),
                    cmap="bwr",
                    vmin=-bound,
                    vmax=bound,
                    alpha=0.55,
                )
            axis.set_xticks([])
            axis.set_yticks([])
        label = (group.name or f"group {row}") + (f"\n{group.label}" if group.label else "")
        axes[row, 0].set_ylabel(
            f"{label}\n{len(group)} ch", rotation=0, ha="right", va="center", fontsize=7
        )
    figure.tight_layout()
    return figure
