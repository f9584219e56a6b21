"""Activation patching: a group's values replaced by those another input gives.

``patch(model, group, source=corrupted)`` runs the model as usual inside a ``with``
block, except that the elements the group selects (its neurons at every position, or
at the position its reduction names, or at ``positions``) take the values they have
when the model reads ``source`` instead: the standard causal test of transformer
interpretability (TransformerLens's ``patching``), for any layer and any group. With
``resample=True`` each example takes them from a random example of ``source``
(resample ablation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ._model.capture import LayerCapture, record
from ._model.guards import guarded_call
from ._validation.checks import SEED, ParameterError
from .ablation import Ablation
from .groups import GroupsLike, NeuronGroup, layer_name

__all__ = ["Patch", "patch"]


class Patch(Ablation):
    """Context manager patching groups' values from ``source`` (see :func:`patch`).

    Examples
    --------
    >>> import torch
    >>> from captum_groups import NeuronGroup
    >>> model = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    >>> with Patch(model, NeuronGroup("1", [0]), source=torch.zeros(1, 2)) as patched:
    ...     out = model(torch.ones(1, 2))
    >>> torch.equal(out[0, 0], model(torch.zeros(1, 2))[0, 0]), isinstance(patched, Patch)
    (True, True)
    """

    def __init__(
        self,
        model: nn.Module,
        groups: GroupsLike,
        source: Any,
        positions: Sequence[int] | None = None,
        resample: bool = False,
        random_state: int | None = None,
    ) -> None:
        super().__init__(model, groups)
        if isinstance(source, Tensor) and source.ndim == 0:
            raise ParameterError("source", "source must be a batch of model inputs, got a scalar")
        self.positions = None if positions is None else [int(p) for p in positions]
        self.resample = bool(resample)
        SEED.check(random_state, "random_state")
        self._generator = torch.Generator().manual_seed(random_state or 0)
        with guarded_call(model, "patch"), torch.no_grad():
            captures = [LayerCapture(layer, model=model) for layer in self._by_layer]
            record(model, source, captures)
        self._sources: dict[nn.Module, Tensor] = {}
        for layer, capture in zip(self._by_layer, captures, strict=True):
            if not capture.calls:
                raise ParameterError(
                    "source", f"layer {layer_name(model, layer)!r} did not run on source"
                )
            self._sources[layer] = capture.calls[0][0].detach()

    def _chosen(self, groups: list[NeuronGroup], output: Tensor, axis: int) -> Tensor:
        chosen = super()._chosen(groups, output, axis)
        return chosen if self.positions is None else chosen & self._position_mask(axis, output)

    def _position_mask(self, axis: int, output: Tensor) -> Tensor:
        """True at the chosen positions: of the first axis after the batch that is not the
        units' axis (the tokens of (N, T, ...) tensors)."""
        position_axis = 2 if axis == 1 else 1
        size = output.shape[position_axis]
        if any(not -size <= p < size for p in self.positions):  # type: ignore[union-attr]
            raise ParameterError(
                "positions", f"positions {self.positions} are out of range for {size} positions"
            )
        chosen = torch.zeros(size, dtype=torch.bool, device=output.device)
        chosen[self.positions] = True
        shape = [1] * (output.ndim - 1)
        shape[position_axis - 1] = size
        return chosen.view(shape)

    def _fill(self, layer: nn.Module, output: Tensor, axis: int) -> Tensor:
        source = self._sources[layer].to(output.device, output.dtype)
        if source.shape[1:] != output.shape[1:]:
            raise ParameterError(
                "source",
                f"layer {layer_name(self.model, layer)!r} gives {tuple(source.shape)} on source "
                f"but {tuple(output.shape)} on the patched input; source must have the same "
                f"shape per example (e.g. a corrupted prompt of the same length)",
            )
        if self.resample:
            rows = torch.randint(len(source), (len(output),), generator=self._generator)
            return source[rows.to(source.device)]
        if len(source) == len(output):
            return source
        if len(source) == 1:
            return source.expand_as(output)
        raise ParameterError(
            "source",
            f"source holds {len(source)} examples and the patched input {len(output)}; give "
            f"one source example per input, or one for all (or resample=True)",
        )


def patch(
    model: nn.Module,
    groups: GroupsLike,
    source: Any,
    positions: Sequence[int] | None = None,
    resample: bool = False,
    random_state: int | None = None,
) -> Patch:
    """Replace the groups' values by those ``source`` gives, inside a ``with`` block.

    Parameters
    ----------
    model : nn.Module
        The model; it is restored exactly on exit, also on error.
    groups : NeuronGroup, GroupSet or list of NeuronGroup
        The neurons (heads, MLP units, residual directions) to patch; every
        position of each, or the one position a group's reduction names.
    source : Tensor
        The model inputs whose activations are patched in: one per patched
        example, or one for all (a corrupted prompt, another image). Run once,
        when the patch is made.
    positions : sequence of int, optional
        Patch only these positions (the token axis of (N, T, ...) tensors).
    resample : bool
        Each patched example takes the values of a random example of ``source``
        (resample ablation).
    random_state : int, optional
        Seed of the resampling draws.

    Returns
    -------
    Patch
        A context manager, like :func:`~captum_groups.ablate`'s.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from captum_groups import NeuronGroup
    >>> model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    >>> clean, corrupted = torch.ones(1, 2), -torch.ones(1, 2)
    >>> every = NeuronGroup("1", [0, 1, 2])
    >>> with patch(model, every, source=corrupted):
    ...     patched = model(clean)
    >>> torch.equal(patched, model(corrupted))  # every unit patched: the corrupted run
    True
    """
    return Patch(model, groups, source, positions, resample, random_state)
