"""How each supported architecture runs through the hook points.

An adapter names a model's blocks and embeddings and gives each block a forward
that computes what the block computes, with the model's own modules and
weights, passing every activation through its :class:`~.hook_points.BlockHooks`.
The block's own forward is replaced only for the duration of a call
(:meth:`captum_groups.transformers.HookedModel.forward`), and restored after it.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .._validation.checks import ParameterError
from ..groups import only_embedding
from .attention import attend, merge_heads, split_heads
from .hook_points import AttentionHooks, BlockHooks

__all__ = [
    "Adapter",
    "MultiheadAttentionAdapter",
    "TorchEncoderAdapter",
    "TorchvisionViTAdapter",
    "mha_heads",
]


class Adapter(ABC):
    """The blocks of one architecture, and a forward for each that reads its hook points."""

    name = ""

    def matches(self, model: nn.Module) -> bool:
        """Whether ``model`` has blocks this adapter knows."""
        return bool(self.blocks(model))

    @abstractmethod
    def blocks(self, model: nn.Module) -> list[nn.Module]:
        """The model's blocks, in forward order."""

    def token_embedding(self, model: nn.Module) -> nn.Module | None:
        """The module whose output is the token embeddings (None for image models)."""
        return None

    def position_embedding(self, model: nn.Module) -> nn.Module | None:
        return None

    @abstractmethod
    def block_forward(self, block: nn.Module, hooks: BlockHooks) -> Callable[..., Any]:
        """A forward for ``block`` that computes what it computes through ``hooks``."""

    def call_options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The keyword arguments of the model's call, with what the hook points need."""
        return kwargs


def mha_heads(
    attention: nn.MultiheadAttention,
    hooks: AttentionHooks,
    x: Tensor,
    key: Tensor | None = None,
    value: Tensor | None = None,
    **masks: Any,
) -> tuple[Tensor, Tensor]:
    """``nn.MultiheadAttention`` of batch-first ``x`` (and ``key``, ``value``: self-attention
    without them), head by head, with the module's own weights (its fused kernel computes
    no per-head tensor a hook can read); the output and the per-head pattern."""
    if attention.bias_k is not None or attention.add_zero_attn:
        raise ParameterError(
            "model",
            "hooked() does not compute attention with add_bias_kv or add_zero_attn; its "
            "per-head tensors would not be those of the layer",
        )
    heads = attention.num_heads
    if attention.in_proj_weight is not None:
        w_q, w_k, w_v = attention.in_proj_weight.chunk(3)
    else:
        w_q, w_k, w_v = attention.q_proj_weight, attention.k_proj_weight, attention.v_proj_weight
    b_q, b_k, b_v = (
        attention.in_proj_bias.chunk(3) if attention.in_proj_bias is not None else (None,) * 3
    )
    key = x if key is None else key
    value = key if value is None else value
    q, k, v = (
        split_heads(F.linear(t, w, b), heads)
        for t, w, b in ((x, w_q, b_q), (key, w_k, b_k), (value, w_v, b_v))
    )
    mask, padding = masks.get("attn_mask"), masks.get("key_padding_mask")
    causal = bool(masks.get("is_causal")) and mask is None
    if mask is not None and mask.dtype == torch.bool:
        mask = ~mask  # torch's boolean masks mark what may NOT be attended
    if padding is not None and padding.dtype != torch.bool:
        # an additive padding mask (N, Tk) joins the additive attention mask
        extra = padding[:, None, None, :]
        mask, padding = (extra if mask is None else mask + extra), None
    if mask is not None and mask.ndim == 3:  # (N * heads, Tq, Tk), torch's per-head layout
        mask = mask.view(-1, heads, *mask.shape[1:])
    dropout = functools.partial(F.dropout, p=attention.dropout, training=attention.training)
    z, pattern = attend(
        hooks, q, k, v, causal=causal, mask=mask, key_padding=padding, dropout=dropout,
        return_pattern=True,
    )  # fmt: skip
    return attention.out_proj(merge_heads(z)), pattern


class TorchEncoderAdapter(Adapter):
    """``nn.TransformerEncoderLayer`` blocks (alone, in ``nn.TransformerEncoder``, or in a
    model of one's own), pre- or post-norm, batch-first or not."""

    name = "nn.TransformerEncoderLayer"

    def blocks(self, model: nn.Module) -> list[nn.Module]:
        return [m for m in model.modules() if isinstance(m, nn.TransformerEncoderLayer)]

    def token_embedding(self, model: nn.Module) -> nn.Module | None:
        return only_embedding(model)

    def block_forward(self, block: nn.Module, hooks: BlockHooks) -> Callable[..., Any]:
        def forward(src, src_mask=None, src_key_padding_mask=None, is_causal=False):  # type: ignore[no-untyped-def]
            batch_first = block.self_attn.batch_first
            x = hooks.hook_resid_pre(src if batch_first else src.transpose(0, 1))

            def attention(h: Tensor) -> Tensor:
                out, _ = mha_heads(
                    block.self_attn,
                    hooks.attn,
                    h,
                    attn_mask=src_mask,
                    key_padding_mask=src_key_padding_mask,
                    is_causal=is_causal,
                )
                return hooks.hook_attn_out(block.dropout1(out))

            def mlp(h: Tensor) -> Tensor:
                pre = hooks.mlp.hook_pre(block.linear1(h))
                post = hooks.mlp.hook_post(block.activation(pre))
                return hooks.hook_mlp_out(block.dropout2(block.linear2(block.dropout(post))))

            if block.norm_first:
                mid = hooks.hook_resid_mid(x + attention(block.norm1(x)))
                out = hooks.hook_resid_post(mid + mlp(block.norm2(mid)))
            else:
                mid = hooks.hook_resid_mid(block.norm1(x + attention(x)))
                out = hooks.hook_resid_post(block.norm2(mid + mlp(mid)))
            return out if batch_first else out.transpose(0, 1)

        return forward


class TorchvisionViTAdapter(Adapter):
    """torchvision's ``VisionTransformer``: its ``EncoderBlock`` layers (pre-norm)."""

    name = "torchvision VisionTransformer"

    def blocks(self, model: nn.Module) -> list[nn.Module]:
        return [m for m in model.modules() if type(m).__name__ == "EncoderBlock"
                and type(m).__module__.startswith("torchvision.")]  # fmt: skip

    def block_forward(self, block: nn.Module, hooks: BlockHooks) -> Callable[..., Any]:
        def forward(input: Tensor) -> Tensor:  # noqa: A002 (torchvision's name)
            x = hooks.hook_resid_pre(input)
            attended, _ = mha_heads(block.self_attention, hooks.attn, block.ln_1(x))
            mid = hooks.hook_resid_mid(x + hooks.hook_attn_out(block.dropout(attended)))
            first, activation, *rest = block.mlp
            pre = hooks.mlp.hook_pre(first(block.ln_2(mid)))
            post = hooks.mlp.hook_post(activation(pre))
            out = post
            for module in rest:
                out = module(out)
            return hooks.hook_resid_post(mid + hooks.hook_mlp_out(out))

        return forward


class MultiheadAttentionAdapter(Adapter):
    """Any model's ``nn.MultiheadAttention`` modules, where no known block holds them: each
    one is a "block" with the attention hook points and ``hook_attn_out`` (its output)."""

    name = "nn.MultiheadAttention"

    def blocks(self, model: nn.Module) -> list[nn.Module]:
        return [m for m in model.modules() if isinstance(m, nn.MultiheadAttention)]

    def token_embedding(self, model: nn.Module) -> nn.Module | None:
        return only_embedding(model)

    def block_forward(self, block: nn.Module, hooks: BlockHooks) -> Callable[..., Any]:
        def forward(  # type: ignore[no-untyped-def]
            query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
            average_attn_weights=True, is_causal=False,
        ):  # fmt: skip
            first = (lambda t: t) if block.batch_first else (lambda t: t.transpose(0, 1))
            out, pattern = mha_heads(
                block,
                hooks.attn,
                first(query),
                first(key),
                first(value),
                attn_mask=attn_mask,
                key_padding_mask=key_padding_mask,
                is_causal=is_causal,
            )
            out = first(hooks.hook_attn_out(out))
            if not need_weights:
                return out, None
            return out, pattern.mean(1) if average_attn_weights else pattern

        return forward
