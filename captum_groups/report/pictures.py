"""The report's exemplar pictures, made for all groups of a layer at once.

For every node, the report shows its stored exemplar crops in a strip, the
same crops overlaid with the group's integrated gradients (red where the crop
raises the group, blue where it lowers it), the crops' group values, and its
top crop (the graph's thumbnail). All nodes' images are read in one pass
over the data; the crops of a layer's nodes go forward once, and one
integrated-gradients call attributes each crop to its own node's group
(a selector that reads, per row, the group that row belongs to). The strips
are composed as arrays, not drawn by matplotlib.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from matplotlib import colormaps
from torch import Tensor, nn

from .._model.capture import layer_outputs
from ..attr import GroupIntegratedGradients
from ..circuits import Circuit
from ..data import Data, examples_at
from ..discovery.crops import crop_and_resize
from ..groups import NeuronGroup
from .images import array_uri

__all__ = ["ExemplarPictures", "exemplar_pictures"]

OVERLAY_STEPS = 8
"""Integration steps of the overlays, at most: a picture, not a number. On resnet18's
layer3.1 groups (the report benchmark's setting), the maps at 8 steps correlate with those
at 24 at 0.99994 or more, crop by crop, and cost a third."""

SHOWN_SIDE = 64
"""Crops smaller than this are enlarged (nearest neighbour) to it, so 8-px digits read."""


@dataclass(frozen=True)
class ExemplarPictures:
    """One node's pictures (data URIs) and its crops' group values."""

    values: tuple[float, ...] = ()
    top_crop: str | None = None
    montage: str | None = None
    overlays: str | None = None


class _OwnGroup:
    """A neuron selector giving each row the value of the group that row belongs to."""

    def __init__(self, groups: list[NeuronGroup], owners: Tensor) -> None:
        self.groups, self.owners = groups, owners

    def __call__(self, output: Tensor) -> Tensor:
        owners = self.owners.repeat(len(output) // len(self.owners)).to(output.device)
        values = torch.stack([group(output) for group in self.groups], 1)
        return values.gather(1, owners[:, None])[:, 0]


def _display(crop: Tensor) -> np.ndarray:
    """A crop (C, H, W) as an RGB array in [0, 1] (one channel drawn dark on light), at
    least :data:`SHOWN_SIDE` pixels high."""
    crop = crop.detach().cpu().float()
    crop = (crop - crop.min()) / (crop.max() - crop.min()).clamp_min(1e-12)
    image = (
        colormaps["gray_r"](crop[0].numpy())[..., :3]
        if len(crop) == 1
        else crop.permute(1, 2, 0).numpy()[..., :3]
    )
    repeat = max(1, -(-SHOWN_SIDE // image.shape[0]))
    return image.repeat(repeat, 0).repeat(repeat, 1)


def _overlay(image: np.ndarray, heat: Tensor) -> np.ndarray:
    """``image`` with the heat map (H, W) blended over it (bwr, symmetric, alpha 0.55)."""
    heat = heat.detach().cpu().float()
    bound = float(heat.abs().max()) or 1.0
    colours = colormaps["bwr"](((heat / bound + 1) / 2).numpy())[..., :3]
    repeat = image.shape[0] // colours.shape[0]
    colours = colours.repeat(repeat, 0).repeat(repeat, 1)
    return 0.45 * image + 0.55 * colours


def _strip(images: list[np.ndarray], gap: int = 2) -> np.ndarray:
    """Images side by side on white, ``gap`` pixels apart."""
    height = max(image.shape[0] for image in images)
    width = sum(image.shape[1] for image in images) + gap * (len(images) - 1)
    strip = np.ones((height, width, 3))
    left = 0
    for image in images:
        strip[: image.shape[0], left : left + image.shape[1]] = image
        left += image.shape[1] + gap
    return strip


def _images(circuit: Circuit, data: Data) -> dict[int, Tensor]:
    """Every image that holds a stored exemplar crop, by data-set index, in one read."""
    wanted = sorted({index for crops in circuit.exemplars.values() for index, _ in crops})
    return dict(zip(wanted, examples_at(data, wanted), strict=True)) if wanted else {}


def _crops(
    circuit: Circuit, images: dict[int, Tensor], nodes: list[str], device: torch.device
) -> Tensor:
    """The stored exemplar crops of ``nodes``, in order."""
    items = [item for node in nodes for item in circuit.exemplars[node]]
    return torch.cat(
        [
            crop_and_resize(images[index][None].to(device), torch.tensor([box], device=device))
            for index, box in items
        ]
    )


def exemplar_pictures(
    model: nn.Module, circuit: Circuit, data: Data, n_steps: int
) -> dict[str, ExemplarPictures]:
    """Every node's exemplar pictures (nodes without stored exemplars get none); the
    overlays integrate ``n_steps`` steps, at most :data:`OVERLAY_STEPS`."""
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    found: dict[str, ExemplarPictures] = {}
    images = _images(circuit, data)
    for layer in circuit.layers:
        nodes = [n for n in circuit.node_ids(layer) if circuit.exemplars.get(n)]
        if not nodes:
            continue
        groups = [circuit.nodes[n] for n in nodes]
        counts = [len(circuit.exemplars[n]) for n in nodes]
        owners = torch.repeat_interleave(torch.arange(len(nodes)), torch.tensor(counts))
        crops = _crops(circuit, images, nodes, device)
        selector = _OwnGroup(groups, owners)
        values = selector(layer_outputs(model, crops, groups[0].resolve(model))).cpu()
        attribution = GroupIntegratedGradients(model, layer).attribute(
            crops, selector, n_steps=min(n_steps, OVERLAY_STEPS)
        )
        heat = attribution.sum(1)
        start = 0
        for node, count in zip(nodes, counts, strict=True):
            rows = slice(start, start + count)
            shown = [_display(crop) for crop in crops[rows]]
            blended = [_overlay(image, h) for image, h in zip(shown, heat[rows], strict=True)]
            found[node] = ExemplarPictures(
                tuple(float(v) for v in values[rows]),
                array_uri(shown[0]),
                array_uri(_strip(shown)),
                array_uri(_strip(blended)),
            )
            start += count
    return found
