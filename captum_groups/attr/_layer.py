"""What the layer-level group classes share: groups of the attributed layer, aggregation."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._model.capture import Captured
from ..groups import GroupsLike, NeuronGroup, as_group_list
from ._base import GroupAttribution


class _LayerGroupAttribution(GroupAttribution):
    """Attribution *to* the groups of one layer: results shaped (N, G)."""

    def _layer_groups(
        self, groups: GroupsLike, parameter: str = "groups"
    ) -> tuple[list[NeuronGroup], bool]:
        """The groups as a list, checked to belong to the attributed layer, and whether several
        were given (a result with a group axis)."""
        items = as_group_list(groups, parameter)
        self._selectors(items)
        return items, not isinstance(groups, NeuronGroup)

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
