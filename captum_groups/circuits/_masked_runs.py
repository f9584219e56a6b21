"""Masked forward passes from cached activations: a circuit's fidelity, without recomputing.

NeurFlow's evaluation runs the model many times on the same images with some
neurons of the circuit layers switched off: the circuit's, then as many
random ones, for many draws, per layer and for all layers at once. Everything
below the lowest masked layer is the same in every run. So each batch of
images goes forward once, its activations at the circuit layers are kept,
and each run computes only the part of the network above its lowest masked
layer: stage by stage, from one masked layer to the next
(:func:`~captum_groups._subnetwork.subnetwork` between them), its masks applied
to the stage's output as :func:`~captum_groups.ablate` applies them, then up
to the output (or the target group's layer).

Runs with the same masked layers (the draws of one scope) are stacked along
the batch and computed together, a bounded number of rows per pass. A row's
result does not depend on the rows beside it, so every run's outputs are the
numbers its own forward pass with :func:`~captum_groups.ablate` gives (tested
against that plain implementation). In training mode, where batch norm mixes
the rows of a batch, each run is computed alone, as the plain way does.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .._data import Data, iter_batches
from .._hooks import LayerCapture, preserve_buffers, training_modules
from .._subnetwork import subnetwork
from ..ablation import masked_output
from ..groups import NeuronGroup
from .graph import Circuit

__all__ = ["ELEMENTS_PER_PASS", "MaskedRuns", "Run"]

ELEMENTS_PER_PASS = 16_000_000
"""Activation elements of the stacked runs per pass (64 MB at float32)."""


@dataclass(frozen=True)
class Run:
    """One masked run: the neurons switched off (or, with ``keep``, the only ones kept) at
    each masked layer, in forward order. No masks: the intact model."""

    masks: tuple[tuple[str, tuple[int, ...]], ...] = ()
    keep: bool = False

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(layer for layer, _ in self.masks)


class MaskedRuns:
    """Each run's per-example output on some data: the predicted class, or the value of the
    circuit's target group.

    Parameters
    ----------
    model : nn.Module
        The model; the circuit's layers are its layers.
    circuit : Circuit
        Its layers are where runs may mask; its target says what is read.
    batch_size : int
        Images per forward pass.
    """

    def __init__(self, model: nn.Module, circuit: Circuit, batch_size: int) -> None:
        self.model, self.circuit, self.batch_size = model, circuit, batch_size
        self.end = None if isinstance(circuit.target, int) else str(circuit.target.layer)
        self.stacked = not training_modules(model)
        self._between: dict[tuple[str, str | None], nn.Module] = {}

    def can_run(self, runs: Sequence[Run]) -> bool:
        """Whether fx can cut the model into the stages the runs need (else a caller runs
        the plain way: one full forward pass per run, the masks as hooks)."""
        try:
            for run in runs:
                layers = run.layers
                if not layers:
                    continue  # the intact run needs no stage
                for lower, upper in zip(layers, [*layers[1:], self.end], strict=True):
                    self._stage(lower, upper)
        except ValueError:
            return False
        return True

    def _stage(self, lower: str, upper: str | None) -> nn.Module:
        if (lower, upper) not in self._between:
            self._between[(lower, upper)] = subnetwork(self.model, lower, upper)
        return self._between[(lower, upper)]

    def _read(self, output: Tensor) -> Tensor:
        """What a run yields per example: the class, or the target group's value."""
        if isinstance(self.circuit.target, int):
            return output.argmax(1)
        return self.circuit.target(output)

    def _forward(self, images: Tensor, layers: set[str]) -> tuple[Tensor, dict[str, Tensor]]:
        """The intact run's output, and the activations of ``layers``, in one pass."""
        watched = sorted(layers | ({self.end} if self.end else set()))
        with ExitStack() as stack:
            captures = {
                name: stack.enter_context(LayerCapture(self.model.get_submodule(name)))
                for name in watched
            }
            output = self.model(images)
        cached = {name: capture.output[0] for name, capture in captures.items()}
        return (cached[self.end] if self.end else output), cached

    def _masked(self, layer: str, values: Tensor, runs: Sequence[Run]) -> Tensor:
        """``values`` (runs stacked, each len(values) // len(runs) rows) masked as each run
        says at ``layer``."""
        rows = len(values) // len(runs)
        parts = []
        for index, run in enumerate(runs):
            neurons = dict(run.masks)[layer]
            group = NeuronGroup(layer, list(neurons))
            part = values[index * rows : (index + 1) * rows]
            parts.append(masked_output(self.model, [group], part, keep=run.keep))
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def _stacked(self, runs: Sequence[Run], cached: dict[str, Tensor]) -> list[Tensor]:
        """The outputs of runs that mask the same layers, computed together."""
        layers = runs[0].layers
        start = cached[layers[0]]
        values = start.repeat(len(runs), *[1] * (start.ndim - 1)) if len(runs) > 1 else start
        values = self._masked(layers[0], values, runs)
        for lower, upper in zip(layers, [*layers[1:], self.end], strict=True):
            values = self._stage(lower, upper)(values)
            if upper is not None and upper in layers:
                values = self._masked(upper, values, runs)
        return list(self._read(values).split(len(start)))

    def _chunks(self, runs: Sequence[Run], rows: int, row_elements: int) -> list[list[Run]]:
        per_pass = 1 if not self.stacked else max(1, ELEMENTS_PER_PASS // (rows * row_elements))
        return [list(runs[i : i + per_pass]) for i in range(0, len(runs), per_pass)]

    def outputs(self, data: Data, runs: Sequence[Run]) -> list[Tensor]:
        """Every run's per-example outputs over all of ``data`` (concatenated in order)."""
        needed = {layer for run in runs for layer in run.layers}
        found: list[list[Tensor]] = [[] for _ in runs]
        by_layers: dict[tuple[str, ...], list[int]] = {}
        for index, run in enumerate(runs):
            by_layers.setdefault(run.layers, []).append(index)
        with torch.no_grad(), preserve_buffers(self.model):
            for images in iter_batches(data, self.batch_size, "data"):
                if not len(images):
                    continue
                intact, cached = self._forward(images, needed)
                for layers, indices in by_layers.items():
                    if not layers:
                        for index in indices:
                            found[index].append(self._read(intact))
                        continue
                    row = cached[layers[0]][0].numel()
                    done = 0
                    for chunk in self._chunks([runs[i] for i in indices], len(images), row):
                        for result in self._stacked(chunk, cached):
                            found[indices[done]].append(result)
                            done += 1
        return [torch.cat(parts) for parts in found]
