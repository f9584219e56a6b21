"""What the layer-level group classes share: groups of the attributed layer, aggregation."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._hooks import Captured
from ..groups import GroupSet, NeuronGroup
from ._base import _GroupAttributionMixin


class _LayerGroupMixin(_GroupAttributionMixin):
    """Attribution *to* the groups of one layer: results shaped (N, G)."""

    def _layer_groups(
        self, groups: NeuronGroup | GroupSet | list[NeuronGroup], parameter: str = "groups"
    ) -> tuple[list[NeuronGroup], bool]:
        if isinstance(groups, NeuronGroup):
            items, several = [groups], False
        elif isinstance(groups, (GroupSet, list, tuple)):
            items, several = list(groups), True
        else:
            raise TypeError(
                f"{parameter} must be a NeuronGroup, a GroupSet or a list of NeuronGroups, "
                f"got {groups!r}"
            )
        if not items:
            raise ValueError(f"{parameter} is empty; give at least one NeuronGroup")
        if not all(isinstance(g, NeuronGroup) for g in items):
            raise TypeError(f"{parameter} must hold NeuronGroup objects only")
        self._selectors(items)
        return items, several

    @staticmethod
    def _membership(captured: Captured, groups: list[NeuronGroup]) -> Tensor:
        """(G, *layer_shape) membership weights of each group."""
        if len(captured) != 1:
            raise ValueError("group attribution needs a layer with one output tensor")
        return torch.stack([g.membership(captured[0]) for g in groups])

    @staticmethod
    def _aggregate(per_element: Tensor, membership: Tensor) -> Tensor:
        """(..., N, *shape) x (G, *shape) -> (..., N, G)."""
        flat = per_element.flatten(per_element.ndim - membership.ndim + 1)
        return flat @ membership.flatten(1).to(flat.dtype).T

    @staticmethod
    def _squeeze(result: Tensor, several: bool) -> Any:
        return result if several else result[..., 0]
