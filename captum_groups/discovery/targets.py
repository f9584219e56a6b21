"""What the core-neuron scores integrate: the target values (a class logit or an upper group)
read from the upper layer, and how many rows an integration pass takes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .._validation.checks import check_positive_int
from ..groups import NeuronGroup, neuron_means

ELEMENTS_PER_PASS = 4_000_000
"""Lower-layer activation elements per integration pass when no row count is given.

Chosen on a 2-core CPU: about 500 rows of resnet50's layer4 at 64x64 pixels
(2048 x 2 x 2) per pass, and whole exemplar sets of small models."""

Target = int | NeuronGroup


class TargetValues:
    """Evaluates each row's own target on an upper output, from one reduction of it.

    Class targets read one column of an (N, classes) output. Group targets of
    one upper layer are reduced once over all channels (per reduction kind),
    and each row gathers its own target's channels and weights from that, so
    the cost does not grow with the number of targets.

    Examples
    --------
    >>> one, two = NeuronGroup("l", [1], dim=1), NeuronGroup("l", [0, 2], [1.0, 2.0], dim=1)
    >>> values = TargetValues([one, two])
    >>> output = torch.arange(12.0).reshape(2, 3, 2)  # (N, C, positions): dim=1 names C
    >>> values(output, torch.tensor([0, 1]))  # row 0: channel 1; row 1: ch 0 + 2 * ch 2
    tensor([ 2.5000, 27.5000])
    """

    def __init__(self, targets: Sequence[Target]) -> None:
        self.targets = list(targets)
        self.classes = all(isinstance(t, int) for t in self.targets)
        kinds = (
            [] if self.classes else sorted({(t.reduction, t.dim) for t in self.targets}, key=str)
        )
        self.kinds = kinds
        width = max(1 if isinstance(t, int) else len(t) for t in self.targets)
        self._index = torch.zeros(len(self.targets), width, dtype=torch.long)
        self._weight = torch.zeros(len(self.targets), width, dtype=torch.float64)
        self._kind = torch.zeros(len(self.targets), dtype=torch.long)
        for row, target in enumerate(self.targets):
            if isinstance(target, int):
                self._index[row, 0], self._weight[row, 0] = target, 1.0
                continue
            weights = target.weights if target.weights is not None else [1.0] * len(target)
            self._index[row, : len(target)] = torch.tensor(target.indices)
            self._weight[row, : len(target)] = torch.tensor(weights, dtype=torch.float64)
            self._kind[row] = kinds.index((target.reduction, target.dim))

    def reduce(self, output: Tensor) -> Tensor:
        """Every channel of ``output`` reduced as the targets need: (N, kinds * C)."""
        if self.classes:
            if output.ndim != 2:
                raise ValueError(
                    f"class targets need an (N, classes) output, got shape {tuple(output.shape)}"
                )
            if max(self.targets) >= output.shape[1]:
                raise ValueError(
                    f"target class {max(self.targets)} is out of range for "
                    f"{output.shape[1]} outputs"
                )
            return output
        for target in self.targets:
            target.validate_output(output)
        parts = []
        for reduction, dim in self.kinds:
            if reduction == "mean" and dim in (None, 1):
                parts.append(neuron_means(output))
                continue
            axis = NeuronGroup("all", [0], dim=dim).channel_axis(output.ndim)
            channels = range(output.shape[axis])
            every = NeuronGroup("all", channels, reduction=reduction, dim=dim)
            parts.append(every.neuron_activations(output))
        return torch.cat(parts, 1)

    @property
    def channelwise(self) -> bool:
        """Whether every target reads channels on axis 1 (so a channel head can serve it)."""
        return self.classes or all(dim in (None, 1) for _, dim in self.kinds)

    def channels(self, owners: Tensor) -> Tensor:
        """The channels each row's target reads, (N, L) (padded with channel 0 at weight 0)."""
        return self._index[owners.to(self._index.device)]

    def gathered(self, values: Tensor, owners: Tensor) -> Tensor:
        """Each row's target value from its own channels only: ``values`` is (N, L, ...),
        row ``i`` holding the channels ``channels(owners)[i]`` (see ``ChannelHead``)."""
        owners = owners.to(self._index.device)
        per_channel = values
        if values.ndim > 2:
            flat = values.flatten(2)
            reduced = [
                self._reduce_positions(values, flat, reduction) for reduction, _ in self.kinds
            ]
            kinds = self._kind[owners].to(values.device)
            per_channel = torch.stack(reduced).gather(
                0, kinds.view(1, -1, 1).expand(1, *values.shape[:2])
            )[0]
        weights = self._weight[owners].to(values.device, values.dtype)
        return (per_channel * weights).sum(1)

    @staticmethod
    def _reduce_positions(values: Tensor, flat: Tensor, reduction: object) -> Tensor:
        if reduction == "mean":
            return flat.mean(2)
        if reduction == "sum":
            return flat.sum(2)
        if reduction == "max":
            return flat.amax(2)
        return values[(slice(None), slice(None), *reduction)]  # type: ignore[misc]

    def __call__(self, output: Tensor, owners: Tensor, reduced: Tensor | None = None) -> Tensor:
        """Value of target ``owners[i]`` on row ``i`` of ``output``: shape (N,)."""
        reduced = self.reduce(output) if reduced is None else reduced
        width = reduced.shape[1] // max(1, len(self.kinds))
        owners = owners.to(self._index.device)
        columns = self._index[owners] + (self._kind[owners] * width)[:, None]
        weights = self._weight[owners].to(reduced.dtype)
        columns, weights = columns.to(reduced.device), weights.to(reduced.device)
        return (reduced.gather(1, columns) * weights).sum(1)


def rows_per_pass(
    activations: Tensor, internal_batch_size: int | None, row_elements: int | None = None
) -> int:
    """Rows (exemplars x steps) per integration pass: given, or from :data:`ELEMENTS_PER_PASS`
    and the elements of a row (by default, of an activation row)."""
    if internal_batch_size is not None:
        check_positive_int(internal_batch_size, "internal_batch_size")
        return internal_batch_size
    per_row = max(1, row_elements or activations[0].numel())
    return max(1, ELEMENTS_PER_PASS // per_row)
