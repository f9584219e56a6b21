"""A group of neurons of one layer, and how it reduces the layer's output to one number per
example (:class:`NeuronGroup`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .._validation.errors import ParameterError
from .layers import Layer, resolve_layer

__all__ = ["NeuronGroup", "common_call"]

Reduction = str | tuple[int, ...]
_REDUCTIONS = ("mean", "sum", "max")
_GROUP_KEYS = ("layer", "indices", "weights", "name", "label", "reduction", "dim", "call")


def _as_int_tuple(values: object, parameter: str) -> tuple[int, ...]:
    if isinstance(values, Tensor):
        values = values.detach().cpu().tolist()
    elif isinstance(values, np.ndarray):
        values = values.tolist()
    if isinstance(values, (int, np.integer)):
        values = [values]
    if not isinstance(values, Iterable) or isinstance(values, (str, bytes)):
        raise TypeError(f"{parameter} must be a sequence of integers, got {values!r}")
    out = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{parameter} must hold integers, got {value!r}")
        out.append(int(value))
    return tuple(out)


class NeuronGroup:
    """A group of neurons of one layer, usable as a Captum ``neuron_selector``.

    Parameters
    ----------
    layer : str or nn.Module
        The layer, as a module or a dotted name (resolved with
        ``model.get_submodule``).
    indices : sequence of int
        Neuron indices along the channel axis ``dim`` of the layer output.
        Must be non-empty, non-negative and free of duplicates.
    weights : sequence of float, optional
        One weight per neuron (a direction, e.g. an NMF component). All ones
        by default, so the group value is the sum of its neurons.
    name : str, optional
        Short identifier, e.g. ``"g3"``.
    label : str, optional
        Human-readable concept label, e.g. ``"loops"``.
    reduction : {"mean", "sum", "max"} or tuple of int
        How each neuron's slice is reduced over the remaining axes (space for
        conv outputs, time for sequence outputs): spatial mean (default, as in
        NeurFlow), sum, max, or one position such as ``(h, w)``. A shorter
        position names the leading axes and averages the rest: ``(t,)`` of a
        head's output (N, T, H, d_head) with ``dim=2`` is the head at token t,
        ``(q, k)`` of an attention pattern (N, H, Tq, Tk) one query-to-key entry.
        Ignored for outputs without such axes, e.g. linear outputs (N, F).
    dim : int, optional
        Channel axis of the layer output: 1 for (N, C, H, W) and (N, F);
        -1 for the features of token sequences (N, T, F); 2 for the heads of
        per-head outputs (N, T, H, d_head). None (default): axis 1, and a 3-d
        output, which could be tokens or channels, is refused until ``dim``
        names its axis.
    call : int, optional
        Which run of the layer the group reads, for a module that runs
        several times in one forward pass (a recurrent cell unrolled in time,
        the ReLU that torchvision's ``BasicBlock`` applies twice): 0 for its
        first run, ``t`` for its (t+1)-th. Every attribution class, ablation,
        exemplar mining and the :mod:`captum_groups.neuro` functions then use
        that run's output. None (default): the layer must run once; a layer
        that runs more often is refused with a message listing its calls.

    Examples
    --------
    >>> import torch
    >>> group = NeuronGroup("conv2", [0, 3], weights=[1.0, 0.5], name="edges")
    >>> out = torch.ones(4, 8, 5, 5)
    >>> group(out)
    tensor([1.5000, 1.5000, 1.5000, 1.5000])
    >>> NeuronGroup("fc", [2])(torch.arange(6.0).reshape(2, 3))
    tensor([2., 5.])
    """

    __slots__ = (
        "_layer",
        "_indices",
        "_weights",
        "_name",
        "_label",
        "_reduction",
        "_dim",
        "_call",
    )

    def __init__(
        self,
        layer: Layer,
        indices: Sequence[int] | Tensor | np.ndarray | int,
        weights: Sequence[float] | Tensor | np.ndarray | None = None,
        *,
        name: str | None = None,
        label: str | None = None,
        reduction: Reduction = "mean",
        dim: int | None = None,
        call: int | None = None,
    ) -> None:
        if not isinstance(layer, (str, nn.Module)):
            raise TypeError(f"layer must be an nn.Module or a dotted module name, got {layer!r}")
        idx = _as_int_tuple(indices, "indices")
        if not idx:
            raise ValueError("indices must name at least one neuron; got an empty group")
        if min(idx) < 0:
            raise ValueError(f"indices must be non-negative, got {min(idx)}")
        if len(set(idx)) != len(idx):
            dupes = sorted({i for i in idx if idx.count(i) > 1})
            raise ValueError(f"indices must not repeat a neuron; duplicated: {dupes}")
        wts: tuple[float, ...] | None = None
        if weights is not None:
            if isinstance(weights, (Tensor, np.ndarray)):
                weights = weights.tolist()
            wts = tuple(float(w) for w in weights)
            if len(wts) != len(idx):
                raise ValueError(
                    f"weights must have one entry per index: got {len(wts)} weights "
                    f"for {len(idx)} indices"
                )
            if not all(math.isfinite(w) for w in wts):
                raise ValueError("weights must be finite numbers")
        if isinstance(reduction, str):
            if reduction not in _REDUCTIONS:
                raise ValueError(
                    f"reduction must be one of {_REDUCTIONS} or a position tuple, got {reduction!r}"
                )
        else:
            reduction = _as_int_tuple(reduction, "reduction")
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim == 0):
            raise ValueError(
                f"dim must be a non-zero integer (axis 0 is the batch) or None, got {dim!r}"
            )
        if call is not None and (
            isinstance(call, bool) or not isinstance(call, (int, np.integer)) or call < 0
        ):
            raise ParameterError(
                "call",
                f"call must be None or a non-negative integer (0 for the layer's first run in "
                f"a forward pass), got {call!r}",
            )
        call = None if call is None else int(call)
        for slot, value in zip(
            self.__slots__, (layer, idx, wts, name, label, reduction, dim, call), strict=True
        ):
            object.__setattr__(self, slot, value)

    layer = property(lambda self: self._layer, doc="The layer, as given (module or name).")
    indices = property(lambda self: self._indices, doc="Neuron indices, a tuple of int.")
    weights = property(lambda self: self._weights, doc="Per-neuron weights, or None (all ones).")
    name = property(lambda self: self._name, doc="Short identifier, or None.")
    label = property(lambda self: self._label, doc="Human-readable label, or None.")
    reduction = property(lambda self: self._reduction, doc="Reduction over non-channel axes.")
    dim = property(
        lambda self: self._dim,
        doc="Channel axis of the layer output, or None: axis 1, and refused on 3-d outputs.",
    )
    call = property(
        lambda self: self._call,
        doc="Which run of the layer in one forward pass (0 = first), or None (runs once).",
    )

    def __len__(self) -> int:
        return len(self._indices)

    def _key(self) -> tuple:
        return (
            self._layer,
            self._indices,
            self._weights,
            self._name,
            self._label,
            self._reduction,
            self._dim,
            self._call,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NeuronGroup):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError("NeuronGroup is immutable; use replace() to derive a new group")

    def __reduce__(self) -> tuple:
        """Pickle (and copy) through the constructor, which checks the fields again."""
        return (_group_from_fields, self._key())

    def __repr__(self) -> str:
        layer = self._layer if isinstance(self._layer, str) else f"<{type(self._layer).__name__}>"
        parts = [repr(layer), repr(list(self._indices))]
        if self._weights is not None:
            parts.append(f"weights={[round(w, 4) for w in self._weights]}")
        for key in ("name", "label"):
            if getattr(self, key) is not None:
                parts.append(f"{key}={getattr(self, key)!r}")
        if self._reduction != "mean":
            parts.append(f"reduction={self._reduction!r}")
        if self._dim is not None:
            parts.append(f"dim={self._dim}")
        if self._call is not None:
            parts.append(f"call={self._call}")
        return f"NeuronGroup({', '.join(parts)})"

    def replace(self, **changes: object) -> NeuronGroup:
        """Return a copy with some fields changed.

        Examples
        --------
        >>> NeuronGroup("fc1", [1, 2]).replace(label="curves")
        NeuronGroup('fc1', [1, 2], label='curves')
        """
        fields = dict(
            layer=self._layer,
            indices=self._indices,
            weights=self._weights,
            name=self._name,
            label=self._label,
            reduction=self._reduction,
            dim=self._dim,
            call=self._call,
        )
        unknown = set(changes) - set(fields)
        if unknown:
            raise TypeError(f"unknown NeuronGroup field(s): {sorted(unknown)}")
        fields.update(changes)
        layer, indices, weights = fields.pop("layer"), fields.pop("indices"), fields.pop("weights")
        return NeuronGroup(layer, indices, weights, **fields)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        """The group as a JSON-ready dict; :meth:`from_dict` reads it back.

        The layer must be a dotted name (a module cannot be written to JSON);
        ``call`` is written only when the group names one.

        Examples
        --------
        >>> NeuronGroup("relu3", [4, 9], name="g0").to_dict()["indices"]
        [4, 9]
        """
        if not isinstance(self._layer, str):
            raise TypeError("the group must name its layer (a dotted string) to be exported")
        record: dict[str, object] = {
            "layer": self._layer,
            "indices": list(self._indices),
            "weights": None if self._weights is None else list(self._weights),
            "name": self._name,
            "label": self._label,
            "reduction": list(self._reduction)
            if isinstance(self._reduction, tuple)
            else self._reduction,
            "dim": self._dim,
        }
        if self._call is not None:
            record["call"] = self._call
        return record

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> NeuronGroup:
        """A group from a dict with the keys of :meth:`to_dict`.

        Only ``layer`` and ``indices`` are required; ``weights``, ``name``,
        ``label``, ``reduction`` (a name or a position list), ``dim`` and ``call`` are
        optional.

        Examples
        --------
        >>> NeuronGroup.from_dict({"layer": "relu3", "indices": [4, 9], "label": "loops"})
        NeuronGroup('relu3', [4, 9], label='loops')
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"a group must be a dict with 'layer' and 'indices', got {data!r}")
        missing = [key for key in ("layer", "indices") if key not in data]
        unknown = sorted(set(data) - set(_GROUP_KEYS))
        if missing or unknown:
            raise ValueError(
                f"a group dict needs the keys 'layer' and 'indices' and may have "
                f"{list(_GROUP_KEYS[2:])}; missing {missing}, unknown {unknown}"
            )
        reduction = data.get("reduction", "mean")
        return cls(
            data["layer"],  # type: ignore[arg-type]
            data["indices"],  # type: ignore[arg-type]
            data.get("weights"),  # type: ignore[arg-type]
            name=data.get("name"),  # type: ignore[arg-type]
            label=data.get("label"),  # type: ignore[arg-type]
            reduction=tuple(reduction) if isinstance(reduction, list) else reduction,  # type: ignore[arg-type]
            dim=data.get("dim"),  # type: ignore[arg-type]
            call=data.get("call"),  # type: ignore[arg-type]
        )

    def resolve(self, model: object) -> nn.Module:
        """The module this group's layer refers to inside ``model``."""
        return resolve_layer(model, self._layer, "group.layer")

    def channel_axis(self, ndim: int) -> int:
        """The channel axis for a layer output with ``ndim`` dimensions.

        Without ``dim``, axis 1, except for 3-d outputs: (N, tokens, features) and
        (N, channels, length) look alike, and reading tokens as neurons would be silently
        wrong, so the axis must be named.

        Examples
        --------
        >>> conv, tokens = NeuronGroup("conv2", [0]), NeuronGroup("mlp", [0], dim=-1)
        >>> conv.channel_axis(4), tokens.channel_axis(3)
        (1, 2)
        >>> NeuronGroup("block", [0]).channel_axis(3)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        captum_groups.ParameterError: group NeuronGroup('block', [0]) reads a 3-d layer output, ...
        """
        if self._dim is None:
            if ndim == 3:
                raise ParameterError(
                    "dim",
                    f"group {self!r} reads a 3-d layer output, which could be (N, tokens, "
                    f"features) or (N, channels, length); say which axis holds its neurons: "
                    f"dim=-1 for the features of token sequences (transformers), dim=1 for "
                    f"the channels of 1-d convolutions",
                )
            return 1
        axis = self._dim if self._dim > 0 else ndim + self._dim
        if not 1 <= axis < ndim:
            raise ValueError(
                f"dim={self._dim} does not name a non-batch axis of a {ndim}-d layer output"
            )
        return axis

    def validate_output(self, output: Tensor, module: nn.Module | None = None) -> None:
        """Raise a clear error if this group does not fit a layer output (of ``module``,
        where known: a hook point whose units are not on axis 1 needs ``dim``)."""
        unit_axis = getattr(module, "unit_axis", None)
        if self._dim is None and isinstance(unit_axis, int) and unit_axis % output.ndim != 1:
            axes = getattr(module, "axes", ())
            raise ParameterError(
                "dim",
                f"group {self!r} reads a hook point whose output is {tuple(axes)} "
                f"{tuple(output.shape)}; say which axis holds its units: dim={unit_axis} "
                f"for its {axes[unit_axis] if axes else 'unit'} axis",
            )
        if not isinstance(output, Tensor):
            raise TypeError(
                f"the layer output must be a tensor to select a group from, got "
                f"{type(output).__name__}; pass a callable selector for layers with "
                f"tuple outputs"
            )
        if output.ndim < 2:
            raise ValueError(f"the layer output must be batched (N, ...), got shape {output.shape}")
        axis = self.channel_axis(output.ndim)
        size = output.shape[axis]
        if max(self._indices) >= size:
            raise ValueError(
                f"indices out of range: the layer has {size} neurons along dim {axis}, "
                f"group {self!r} asks for index {max(self._indices)}"
            )
        if isinstance(self._reduction, tuple):
            rest = [s for a, s in enumerate(output.shape[1:], 1) if a != axis]
            if len(self._reduction) > len(rest) or any(
                not -s <= p < s for p, s in zip(self._reduction, rest, strict=False)
            ):
                raise ValueError(
                    f"reduction position {self._reduction} does not fit the non-channel "
                    f"axes {tuple(rest)} of the layer output"
                )

    def neuron_activations(self, output: Tensor) -> Tensor:
        """Each member neuron's activation, shape (N, len(group)).

        Examples
        --------
        >>> out = torch.arange(8.0).reshape(1, 2, 2, 2)
        >>> NeuronGroup("conv", [1, 0]).neuron_activations(out)
        tensor([[5.5000, 1.5000]])
        """
        self.validate_output(output)
        axis = self.channel_axis(output.ndim)
        index = torch.tensor(self._indices, device=output.device)
        selected = output.index_select(axis, index).movedim(axis, 1)
        if selected.ndim == 2:
            return selected
        if isinstance(self._reduction, tuple):
            # a position on the leading non-channel axes; the mean over any left (a head
            # at one token, over d_head)
            picked = selected[(slice(None), slice(None), *self._reduction)]
            return picked if picked.ndim == 2 else picked.flatten(2).mean(2)
        flat = selected.flatten(2)
        if self._reduction == "mean":
            return flat.mean(2)
        if self._reduction == "sum":
            return flat.sum(2)
        return flat.amax(2)

    def membership(self, output: Tensor) -> Tensor:
        """Weight of every element of a layer output in this group, shape ``output.shape[1:]``.

        A neuron's weight covers all its positions (or only the chosen position
        for a position reduction). Flows such as conductance are summed over
        these elements: the reduction decides which positions take part, and
        flows are never averaged.

        Examples
        --------
        >>> NeuronGroup("conv", [1], weights=[2.0]).membership(torch.zeros(5, 2, 1, 2))
        tensor([[[0., 0.]],
        <BLANKLINE>
                [[2., 2.]]])
        """
        self.validate_output(output)
        axis = self.channel_axis(output.ndim) - 1
        weights = torch.tensor(
            self._weights if self._weights is not None else [1.0] * len(self._indices),
            dtype=output.dtype,
            device=output.device,
        )
        weights_per_neuron = weights.view(-1, *[1] * (output.ndim - 2))
        membership = output.new_zeros(output.shape[1:])
        by_neuron = membership.movedim(axis, 0)
        index = torch.tensor(self._indices, device=output.device)
        if isinstance(self._reduction, tuple):
            by_neuron[(index, *self._reduction)] = weights
        else:
            by_neuron[index] = weights_per_neuron.expand(-1, *by_neuron.shape[1:])
        return membership

    def __call__(self, output: Tensor) -> Tensor:
        """The group's value per example, shape (N,)."""
        acts = self.neuron_activations(output)
        if self._weights is None:
            return acts.sum(1)
        return acts @ torch.tensor(self._weights, dtype=acts.dtype, device=acts.device)


def _group_from_fields(
    layer: Layer,
    indices: tuple[int, ...],
    weights: tuple[float, ...] | None,
    name: str | None,
    label: str | None,
    reduction: Reduction,
    dim: int,
    call: int | None = None,
) -> NeuronGroup:
    """A group from its fields in the order of ``NeuronGroup._key`` (unpickling)."""
    return NeuronGroup(
        layer, indices, weights, name=name, label=label, reduction=reduction, dim=dim, call=call
    )


def common_call(
    groups: Iterable[NeuronGroup],
    parameter: str = "call",
    where: str = "their layer",
    remedy: str = "make one call per run",
) -> int | None:
    """The run of their layer that all ``groups`` read (None when they name none); groups
    that name different runs are refused, the error naming ``parameter``.

    Examples
    --------
    >>> common_call([NeuronGroup("cell", [0], call=1), NeuronGroup("cell", [2], call=1)])
    1
    """
    calls = {group.call for group in groups}
    if len(calls) > 1:
        shown = ", ".join(sorted(map(str, calls)))
        raise ParameterError(
            parameter,
            f"the groups name different runs of {where} (calls {shown}), but must all read "
            f"the same run; {remedy}",
        )
    return calls.pop() if calls else None
