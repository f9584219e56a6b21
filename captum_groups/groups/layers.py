"""Layers as groups name them: a module or its dotted name, resolved in a model, named back,
and a layer output reduced to one value per neuron."""

from __future__ import annotations

from torch import Tensor, nn

from .._validation.errors import ParameterError

Layer = str | nn.Module


def resolve_layer(model: object, layer: Layer, parameter: str = "layer") -> nn.Module:
    """Return the module a layer refers to.

    Parameters
    ----------
    model : nn.Module or callable
        The model; needed only when ``layer`` is a dotted name. When it is an
        ``nn.Module``, a module given as ``layer`` must be one of its
        submodules (not, say, a module of a copy of the model).
    layer : str or nn.Module
        A module, or a dotted name such as ``"layer3.1.conv2"``.
    parameter : str
        Name of the argument, used in error messages.

    Examples
    --------
    >>> model = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    >>> resolve_layer(model, "1")
    ReLU()
    """
    if isinstance(layer, nn.Module):
        if isinstance(model, nn.Module) and not any(m is layer for m in model.modules()):
            raise ParameterError(
                parameter,
                f"{parameter} is a {type(layer).__name__} module that is not part of "
                f"{type(model).__name__} (a module of another model, or of a copy of it?); "
                f"give a module of this model or its dotted name",
            )
        return layer
    if not isinstance(layer, str):
        raise ParameterError(
            parameter, f"{parameter} must be an nn.Module or a dotted module name, got {layer!r}"
        )
    if not isinstance(model, nn.Module):
        raise ParameterError(
            parameter,
            f"{parameter}={layer!r} is a name, so the model must be an nn.Module to look it "
            f"up in; got {type(model).__name__}. Pass the module itself instead.",
        )
    try:
        return model.get_submodule(layer)
    except AttributeError:
        names = [name for name, _ in model.named_modules() if name]
        hint = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        raise ParameterError(
            parameter,
            f"{parameter}={layer!r} is not a submodule of {type(model).__name__}; "
            f"known names: {hint}",
        ) from None


def only_embedding(model: nn.Module | None) -> nn.Module | None:
    """The model's one ``nn.Embedding`` (its token embedding), or None: none, or several.

    Examples
    --------
    >>> only_embedding(nn.Sequential(nn.Embedding(5, 2), nn.Linear(2, 1)))
    Embedding(5, 2)
    """
    found = [] if model is None else [m for m in model.modules() if isinstance(m, nn.Embedding)]
    return found[0] if len(found) == 1 else None


def layer_name(model: object, layer: Layer) -> str:
    """Dotted name of ``layer`` inside ``model`` (or the class name if not found).

    Examples
    --------
    >>> model = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    >>> layer_name(model, model[1])
    '1'
    """
    if isinstance(layer, str):
        return layer
    if isinstance(model, nn.Module):
        for name, module in model.named_modules():
            if module is layer:
                return name
    return type(layer).__name__


def neuron_means(output: Tensor, dim: int = 1) -> Tensor:
    """Each neuron's activation, (N, C): a layer output's mean over every axis but the batch
    and the neuron axis ``dim`` (1 for (N, C, H, W); -1 for channels-last (N, T, F)).

    This is the activation NeurFlow ranks exemplars by; (N, C) outputs are
    returned as they are.

    Examples
    --------
    >>> import torch
    >>> neuron_means(torch.arange(8.0).reshape(1, 2, 2, 2))
    tensor([[1.5000, 5.5000]])
    >>> neuron_means(torch.arange(6.0).reshape(1, 3, 2), dim=-1)  # 3 tokens, 2 features
    tensor([[2., 3.]])
    """
    moved = output.movedim(dim, 1)
    return moved.flatten(2).mean(2) if moved.ndim > 2 else moved
