"""``hooked(model)``: a transformer with TransformerLens's hook points as layers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from torch import Tensor, nn

from .._model.guards import dense_tokens
from .._validation.checks import ParameterError
from .adapters import (
    Adapter,
    MultiheadAttentionAdapter,
    TorchEncoderAdapter,
    TorchvisionViTAdapter,
)
from .hook_points import BlockHooks, HookPoint
from .huggingface import BertAdapter, GPT2Adapter, HFViTAdapter

__all__ = ["ADAPTERS", "HookedModel", "adapter_for", "hooked"]

ADAPTERS: tuple[Adapter, ...] = (
    GPT2Adapter(),
    BertAdapter(),
    HFViTAdapter(),
    TorchvisionViTAdapter(),
    TorchEncoderAdapter(),
    MultiheadAttentionAdapter(),
)
"""The architectures :func:`hooked` knows, the most specific first (a model of torch's
encoder layers is recognised by them wherever they are)."""


def adapter_for(model: nn.Module) -> Adapter:
    """The adapter of ``model``'s architecture; refused by name when none fits."""
    for adapter in ADAPTERS:
        if adapter.matches(model):
            return adapter
    known = ", ".join(a.name for a in ADAPTERS)
    raise ParameterError(
        "model",
        f"hooked() knows no transformer blocks in {type(model).__name__}; it reads {known}",
    )


_MISSING = object()


class HookedModel(nn.Module):
    """A transformer and its hook points: the model itself (same modules and parameters,
    no copy), run so that each activation passes through a :class:`HookPoint`.

    Made by :func:`hooked`. Its layers are TransformerLens's hook points
    (``hook_embed``, ``blocks.L.hook_resid_pre``, ``blocks.L.attn.hook_z``, ...,
    ``blocks.L.hook_resid_post``) and, under ``model.``, the model's own modules.
    Calling it calls the model, with the same arguments and result.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True).eval()
    >>> model = hooked(nn.TransformerEncoder(layer, 2, enable_nested_tensor=False))
    >>> x = torch.randn(3, 5, 8)
    >>> torch.allclose(model(x), model.model(x), atol=1e-6)
    True
    >>> model.get_submodule("blocks.1.attn.hook_z").axes
    ('batch', 'position', 'head', 'd_head')
    """

    def __init__(self, model: nn.Module, adapter: Adapter) -> None:
        super().__init__()
        self.model = model
        self.adapter = adapter
        self.hook_embed = HookPoint(("batch", "position", "d_model"), -1)
        self.hook_pos_embed = HookPoint(("batch", "position", "d_model"), -1)
        self.blocks = nn.ModuleList(BlockHooks() for _ in adapter.blocks(model))

    @property
    def token_embedding(self) -> nn.Module | None:
        """The model's token embedding (its output is where token ids become vectors)."""
        return self.adapter.token_embedding(self.model)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with self._installed():
            return self.model(*args, **self.adapter.call_options(kwargs))

    @contextmanager
    def _installed(self) -> Iterator[None]:
        """Each block's forward through its hook points, the embeddings' outputs through
        theirs, and fast paths off; all restored on exit (also after an error)."""
        blocks = self.adapter.blocks(self.model)
        with ExitStack() as stack:
            for block, hooks in zip(blocks, self.blocks, strict=True):
                stack.enter_context(
                    _replaced(block, "forward", self.adapter.block_forward(block, hooks))
                )
            # nested tensors drop padded rows: the dense path while hook points read them
            stack.enter_context(dense_tokens(self.model))
            batch: list[int] = []
            embedding = self.adapter.token_embedding(self.model)
            if embedding is not None:
                stack.enter_context(_through(embedding, self.hook_embed, batch))
            positions = self.adapter.position_embedding(self.model)
            if positions is not None:
                stack.enter_context(_through(positions, self.hook_pos_embed, batch))
            yield


@contextmanager
def _replaced(owner: nn.Module, name: str, value: Any) -> Iterator[None]:
    """``owner.name = value`` for the block, then exactly what was there before."""
    before = owner.__dict__.get(name, _MISSING)
    setattr(owner, name, value)
    try:
        yield
    finally:
        if before is _MISSING:
            delattr(owner, name)
        else:
            setattr(owner, name, before)


@contextmanager
def _through(module: nn.Module, point: HookPoint, batch: list[int]) -> Iterator[None]:
    """``module``'s output passes through ``point``. Position embeddings come out (1, T, d)
    and are broadcast to the batch of the token embeddings, as TransformerLens shows them."""

    def hook(_: nn.Module, __: Any, output: Tensor) -> Tensor:
        if point.axes[0] == "batch" and batch and output.shape[0] == 1 and batch[0] != 1:
            output = output.expand(batch[0], *output.shape[1:])
        elif not batch:
            batch.append(output.shape[0])
        return point(output)

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
        batch.clear()


def hooked(model: nn.Module) -> nn.Module:
    """``model`` with TransformerLens's hook points as layers, to group and attribute on.

    Known architectures: HuggingFace GPT-2, BERT and ViT (any model built from their
    configs, ``transformers`` 5), torchvision's ``VisionTransformer``, and
    ``nn.TransformerEncoderLayer`` blocks (alone, in ``nn.TransformerEncoder`` or in
    one's own model), and, in any other model, its ``nn.MultiheadAttention`` modules
    (each a "block" with the attention hook points and ``hook_attn_out``; cross-attention
    too). A model that already
    has hook points (TransformerLens's ``HookedTransformer`` or ``TransformerBridge``)
    is returned as it is.

    Parameters
    ----------
    model : nn.Module
        The model; it is not copied or changed: its blocks run through the hook
        points only during a call of the result.

    Returns
    -------
    nn.Module
        A :class:`HookedModel` around ``model`` (or ``model`` itself, if it has
        hook points already).

    Raises
    ------
    ParameterError
        ``model`` for an architecture with no known blocks.

    Examples
    --------
    >>> import torch
    >>> from captum_groups import NeuronGroup, layer_activations
    >>> from transformers import GPT2Config, GPT2LMHeadModel
    >>> gpt = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=4, n_embd=32, vocab_size=50)).eval()
    >>> model = hooked(gpt)
    >>> tokens = torch.randint(0, 50, (2, 7))
    >>> layer_activations(model, "blocks.1.attn.hook_z", tokens).shape  # (N, T, heads, d_head)
    torch.Size([2, 7, 4, 8])
    >>> head = NeuronGroup("blocks.1.attn.hook_z", [2], dim=2)  # head 2 of block 1
    >>> head(layer_activations(model, "blocks.1.attn.hook_z", tokens)).shape
    torch.Size([2])
    """
    if not isinstance(model, nn.Module):
        raise ParameterError("model", f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(model, HookedModel) or _has_hook_points(model):
        return model
    return HookedModel(model, adapter_for(model))


def _has_hook_points(model: nn.Module) -> bool:
    """TransformerLens's models: their own ``HookPoint`` modules, named as ours."""
    return any(type(m).__name__ == "HookPoint" for m in model.modules())
