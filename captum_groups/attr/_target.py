"""What a layer attribution explains: a Captum target, or a group of a later layer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from .._model.captum import TargetType, _expand_target
from .._model.capture import LayerCapture, chosen_call, model_of
from ..groups import NeuronGroup
from ._engine import selector_value

Target = TargetType | NeuronGroup


class LayerTarget:
    """A Captum ``target`` on the model output, or a NeuronGroup of a later (hidden) layer.

    Parameters
    ----------
    forward_func : callable
        The model.
    target : int, tuple, Tensor, list, NeuronGroup or None
        The output to explain.
    attributed_layer : nn.Module
        The layer being attributed to; a target group must come after it.
        A target group of the same module must read a later run of it than
        the attributed groups (a recurrent cell's state at step t+1 explained
        by its state at step t).
    """

    def __init__(
        self,
        forward_func: Callable[..., Any],
        target: Target,
        attributed_layer: nn.Module,
    ):
        self.forward_func = forward_func
        self.group = target if isinstance(target, NeuronGroup) else None
        self.captum_target = None if self.group is not None else target
        self.layer: nn.Module | None = None
        if self.group is not None:
            self.layer = self.group.resolve(model_of(forward_func, attributed_layer))
            calls = (chosen_call(attributed_layer), self.group.call)
            if self.layer is attributed_layer and (None in calls or calls[1] <= calls[0]):
                raise ValueError(
                    f"target group {self.group!r} belongs to the attributed layer itself; "
                    f"a target group must belong to a later layer, or to a later run of this "
                    f"one (call={calls[1]} after the groups' call={calls[0]})"
                )

    def later_layers(self) -> list[tuple[nn.Module, list[NeuronGroup]]]:
        """The (layer, groups) to check along with the attributed layer: a group target's layer."""
        return [] if self.group is None else [(self.layer, [self.group])]

    def evaluate(
        self,
        inputs: tuple[Tensor, ...],
        additional_forward_args: Any = None,
        n_copies: int = 1,
        lower: LayerCapture | None = None,
    ) -> Tensor:
        """The target's value per example, shape (batch,).

        ``inputs`` hold ``n_copies`` stacked copies of the batch (integration
        steps); a Captum target is expanded to match. With a group target the
        forward pass stops at the target's layer, after checking that
        ``lower`` (if given) has already run.
        """
        runner = lower if lower is not None else LayerCapture(nn.Identity())
        if self.group is None:
            target = _expand_target(self.captum_target, n_copies)
            output = runner.run(self.forward_func, inputs, additional_forward_args, target)
            if output.numel() != output.shape[0]:
                raise ValueError(
                    "target must select one output per example; the model output selected "
                    f"by target has shape {tuple(output.shape)}"
                )
            return output.reshape(-1)
        model = model_of(self.forward_func, self.layer)
        with LayerCapture(
            self.layer, stop=True, after=lower, model=model, call=self.group.call
        ) as upper:
            runner.run(self.forward_func, inputs, additional_forward_args)
        return self.group(selector_value(upper.output))
