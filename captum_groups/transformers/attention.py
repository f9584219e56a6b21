"""Multi-head attention computed head by head, through the hook points.

Fused kernels (PyTorch's scaled-dot-product attention, ``nn.MultiheadAttention``'s
fast path) never hold the per-head queries, keys, values, pattern or outputs as
tensors a hook can read. :func:`attend` computes them with the layer's own
weights, in TransformerLens's layout, passing each through its hook point, so
that each can be read, attributed to and edited; the adapters check the result
against the layer's own output (see the tests).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .hook_points import AttentionHooks

__all__ = ["attend", "merge_heads", "split_heads"]


def split_heads(x: Tensor, n_heads: int) -> Tensor:
    """(N, T, d_model) -> (N, T, heads, d_head)."""
    return x.view(*x.shape[:-1], n_heads, x.shape[-1] // n_heads)


def merge_heads(z: Tensor) -> Tensor:
    """(N, T, heads, d_head) -> (N, T, d_model)."""
    return z.reshape(*z.shape[:-2], z.shape[-2] * z.shape[-1])


def attend(
    hooks: AttentionHooks,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    scale: float | None = None,
    causal: bool = False,
    mask: Tensor | None = None,
    key_padding: Tensor | None = None,
    dropout: torch.nn.Module | None = None,
    return_pattern: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Softmax attention of per-head ``q``, ``k``, ``v`` (N, T, heads, d_head); returns
    the per-head outputs z (N, Tq, heads, d_head), and with ``return_pattern`` the
    pattern (N, heads, Tq, Tk) too.

    Parameters
    ----------
    hooks : AttentionHooks
        The hook points each tensor passes through.
    q, k, v : Tensor
        Queries, keys and values, (N, T, heads, d_head).
    scale : float, optional
        The factor of the scores; ``1 / sqrt(d_head)`` by default.
    causal : bool
        Mask the keys after each query (a decoder).
    mask : Tensor, optional
        (Tq, Tk) or (N, 1 or heads, Tq, Tk): boolean (True where attention is
        allowed, as HuggingFace's masks) or additive (0 or a large negative number).
    key_padding : Tensor, optional
        (N, Tk) boolean, True at padded keys (``nn.MultiheadAttention``'s convention).
    dropout : nn.Module, optional
        Applied to the pattern, as the layer does (a no-op in eval mode).
    return_pattern : bool
        Return the pattern (before dropout) with z.

    Examples
    --------
    >>> _ = torch.manual_seed(0)
    >>> q, k, v = torch.randn(3, 2, 5, 4, 8).unbind(0)
    >>> z = attend(AttentionHooks(), q, k, v, causal=True)
    >>> fused = torch.nn.functional.scaled_dot_product_attention(
    ...     q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
    >>> torch.allclose(z, fused.transpose(1, 2), atol=1e-6)
    True
    """
    q, k, v = hooks.hook_q(q), hooks.hook_k(k), hooks.hook_v(v)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    # scores[n, h, i, j]: how much query i of head h attends to key j
    scores = torch.einsum("nqhd,nkhd->nhqk", q, k) * scale
    # the causal mask is -inf, as TransformerLens's hook_attn_scores shows it (every query
    # keeps its own key); padding masks get the dtype's lowest finite value, as
    # HuggingFace's do, so a query whose keys are all padding stays finite, not NaN
    lowest = torch.finfo(scores.dtype).min
    if causal:
        allowed = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).tril()
        scores = scores.masked_fill(~allowed, float("-inf"))
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, lowest)
        else:
            scores = (scores + mask).clamp_min(lowest)
    if key_padding is not None:
        scores = scores.masked_fill(key_padding[:, None, None, :], lowest)
    scores = hooks.hook_attn_scores(scores)
    pattern = hooks.hook_pattern(scores.softmax(-1))
    dropped = dropout(pattern) if dropout is not None else pattern
    z = hooks.hook_z(torch.einsum("nhqk,nkhd->nqhd", dropped, v))
    return (z, pattern) if return_pattern else z
