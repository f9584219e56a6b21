"""Masked forward passes from cached activations: a circuit's fidelity, without recomputing.

NeurFlow's evaluation runs the model many times on the same images with some
neurons of the circuit layers switched off: the circuit's, then as many
random ones, for many draws, per layer and for all layers at once. Everything
below the lowest masked layer is the same in every run. So each batch of
images goes forward once, its activations at the circuit layers are kept,
and each run computes only the part of the network above its lowest masked
layer: stage by stage, from one masked layer to the next
(:func:`~captum_groups._model.subnetwork.subnetwork` between them), its masks applied
to the stage's output as :func:`~captum_groups.ablate` applies them, then up
to the output (or the target group's layer).

Each run goes through the stages on the same batches of images the plain
way uses, so its outputs are the numbers its own forward pass with
:func:`~captum_groups.ablate` gives, bit for bit (tested against that plain
implementation). Stacking the runs of a scope into larger batches was tried:
on a 2-core CPU it gave no measurable gain (resnet18 at 128 px, 10.98 s
against 10.82 s for a report's curves), and on small convolutions (the digits
CNN) a kernel chosen by batch size changes the last bits of the results.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .._model.capture import LayerCapture
from .._model.guards import preserve_buffers
from .._model.subnetwork import subnetwork
from ..ablation import masked_output
from ..data import Data, iter_batches
from ..groups import NeuronGroup
from .graph import Circuit

__all__ = ["MaskedRuns", "Run"]


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

    def _masked(self, layer: str, values: Tensor, run: Run) -> Tensor:
        """``values`` of ``layer`` masked as ``run`` says (as :func:`~captum_groups.ablate`)."""
        group = NeuronGroup(layer, list(dict(run.masks)[layer]))
        return masked_output(self.model, [group], values, keep=run.keep)

    def _run(self, run: Run, cached: dict[str, Tensor]) -> Tensor:
        """One run's outputs: from its lowest masked layer up, stage by stage."""
        layers = run.layers
        # Below the lowest masked layer the run equals the intact one: start from the
        # intact pass's cached activations there. Each layer cuts the network (build_circuit
        # checked it), so the stage from one masked layer to the next sees all it needs.
        values = self._masked(layers[0], cached[layers[0]], run)
        for lower, upper in zip(layers, [*layers[1:], self.end], strict=True):
            values = self._stage(lower, upper)(values)
            if upper is not None and upper in layers:
                values = self._masked(upper, values, run)
        return self._read(values)

    def outputs(self, data: Data, runs: Sequence[Run]) -> list[Tensor]:
        """Every run's per-example outputs over all of ``data`` (concatenated in order)."""
        needed = {layer for run in runs for layer in run.layers}
        found: list[list[Tensor]] = [[] for _ in runs]
        # no gradients, and batch-norm running statistics restored: a fidelity measure must
        # not train the model it measures
        with torch.no_grad(), preserve_buffers(self.model):
            for images in iter_batches(data, self.batch_size, "data"):
                if not len(images):
                    continue
                intact, cached = self._forward(images, needed)
                for index, run in enumerate(runs):
                    found[index].append(self._run(run, cached) if run.masks else self._read(intact))
        return [torch.cat(parts) for parts in found]
