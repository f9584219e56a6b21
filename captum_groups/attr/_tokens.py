"""Token ids as inputs: attribution at the output of the model's token embedding.

Integer token ids cannot be interpolated, perturbed or differentiated, so a group
attribution of token ids runs on the embedded tokens instead, as Captum's
``LayerIntegratedGradients`` on the embedding does: the model is called with the
ids, and its token embedding's output is replaced by the (interpolated,
perturbed) embeddings the algorithm chooses. Results shaped like the embeddings
(N, T, d_model) are summed over d_model: one value per token. The baseline is the
zero embedding unless ``baselines`` gives one: token ids (e.g. a pad token,
embedded by the model's own embedding) or embeddings.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from .._model.capture import model_of
from .._validation.checks import ParameterError
from ..groups import only_embedding

__all__ = ["attribute_tokens", "is_token_ids", "token_embedding"]


def is_token_ids(inputs: object) -> bool:
    """Whether ``inputs`` is one tensor of integer ids (not floating point, not boolean)."""
    return (
        isinstance(inputs, Tensor)
        and not inputs.is_floating_point()
        and not inputs.is_complex()
        and inputs.dtype != torch.bool
    )


def token_embedding(model: nn.Module | None) -> nn.Module:
    """The module whose output embeds the token ids: a hooked model's token embedding,
    else the model's one ``nn.Embedding``."""
    found = getattr(model, "token_embedding", None)
    if isinstance(found, nn.Module):
        return found
    embedding = only_embedding(model)
    if embedding is not None:
        return embedding
    count = 0 if model is None else sum(isinstance(m, nn.Embedding) for m in model.modules())
    raise ParameterError(
        "inputs",
        f"inputs are integer token ids, so they are attributed at the model's token embedding, "
        f"but the model has {count} nn.Embedding modules; wrap it with "
        f"captum_groups.transformers.hooked(model), which knows its token embedding, or pass "
        f"the embedded tokens (float) instead",
    )


class _FromEmbeddings(nn.Module):
    """The model as a function of its token embeddings: called with the ids (repeated to
    the batch of embeddings), its embedding's output replaced by the given embeddings. A
    module, as Captum's guided backpropagation requires; :func:`model_of` names the model
    it wraps, so layer names resolve as on the model."""

    def __init__(self, forward_func: Callable[..., Any], embedding: nn.Module, ids: Tensor):
        super().__init__()
        self.wrapped_model = forward_func
        self.embedding, self.ids = embedding, ids

    def forward(self, embedded: Tensor, *args: Any) -> Any:
        n_ids = len(self.ids)
        if len(embedded) % n_ids:
            raise ValueError(
                f"the embeddings' batch ({len(embedded)}) is not a multiple of the token ids' "
                f"({n_ids}); give internal_batch_size as a multiple of the batch"
            )
        ids = self.ids.repeat(len(embedded) // n_ids, *[1] * (self.ids.ndim - 1))
        handle = self.embedding.register_forward_hook(lambda module, inputs, output: embedded)
        try:
            return self.wrapped_model(ids, *args)
        finally:
            handle.remove()


def attribute_tokens(
    method: Callable[..., Any], attribution: Any, args: tuple, kwargs: dict[str, Any]
) -> Any:
    """``method`` of ``attribution`` on the embeddings of the token ids in ``args``/``kwargs``."""
    bound = inspect.signature(method).bind(attribution, *args, **kwargs)
    ids = bound.arguments["inputs"]
    embedding = token_embedding(model_of(attribution.forward_func))
    with torch.no_grad():
        embedded = embedding(ids)
        baselines = bound.arguments.get("baselines")
        if is_token_ids(baselines):
            # a baseline of token ids (a pad token): the model's own embedding of them
            baselines = embedding(baselines.expand_as(ids))
    sibling = copy.copy(attribution)  # its own forward function: no state shared across calls
    sibling.forward_func = _FromEmbeddings(attribution.forward_func, embedding, ids)
    bound.arguments["self"] = sibling
    bound.arguments["inputs"] = embedded.detach()
    if "baselines" in bound.arguments:
        bound.arguments["baselines"] = baselines
    result = method(*bound.args, **bound.kwargs)
    if isinstance(result, Tensor) and result.shape[-embedded.ndim + 1 :] == embedded.shape[1:]:
        return result.sum(-1)  # one value per token
    return result
