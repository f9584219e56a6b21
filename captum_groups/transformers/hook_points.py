"""Hook points: identity modules placed where a transformer's activations are read.

A :class:`HookPoint` returns its input unchanged; because it runs as a module,
every tool of the package that reads or edits a layer's output (attribution,
ablation, capture, exemplar mining) reads or edits the activation there. Each
knows its axes, so a group that does not say which axis holds its units is
refused with the axis to name (``dim``). The names and shapes are
TransformerLens's (``blocks.0.attn.hook_z``: batch, position, head, d_head).
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["AttentionHooks", "BlockHooks", "HookPoint", "MLPHooks"]


class HookPoint(nn.Module):
    """An identity module with named axes, where an activation is read or edited.

    Parameters
    ----------
    axes : tuple of str
        The names of the output's axes, batch first.
    unit_axis : int
        The axis that holds the units a group selects by default (features of
        the residual stream, heads of per-head tensors).

    Examples
    --------
    >>> import torch
    >>> point = HookPoint(("batch", "position", "d_model"), unit_axis=-1)
    >>> x = torch.randn(2, 3, 4)
    >>> point(x) is x, point.unit_axis
    (True, -1)
    """

    def __init__(self, axes: tuple[str, ...], unit_axis: int) -> None:
        super().__init__()
        self.axes = axes
        self.unit_axis = unit_axis

    def forward(self, x: Tensor) -> Tensor:
        return x

    def extra_repr(self) -> str:
        return f"axes={self.axes}, unit_axis={self.unit_axis}"


_TOKENS = ("batch", "position", "d_model")
_HEADS = ("batch", "position", "head", "d_head")
_PATTERN = ("batch", "head", "query_position", "key_position")


class AttentionHooks(nn.Module):
    """The per-head hook points of one attention layer (TransformerLens's ``attn.hook_*``)."""

    def __init__(self) -> None:
        super().__init__()
        self.hook_q = HookPoint(_HEADS, 2)
        self.hook_k = HookPoint(_HEADS, 2)
        self.hook_v = HookPoint(_HEADS, 2)
        self.hook_attn_scores = HookPoint(_PATTERN, 1)
        self.hook_pattern = HookPoint(_PATTERN, 1)
        self.hook_z = HookPoint(_HEADS, 2)


class MLPHooks(nn.Module):
    """The hidden units of one MLP, before and after its activation function."""

    def __init__(self) -> None:
        super().__init__()
        self.hook_pre = HookPoint(("batch", "position", "d_mlp"), -1)
        self.hook_post = HookPoint(("batch", "position", "d_mlp"), -1)


class BlockHooks(nn.Module):
    """The hook points of one transformer block, TransformerLens's names."""

    def __init__(self) -> None:
        super().__init__()
        self.hook_resid_pre = HookPoint(_TOKENS, -1)
        self.attn = AttentionHooks()
        self.hook_attn_out = HookPoint(_TOKENS, -1)
        self.hook_resid_mid = HookPoint(_TOKENS, -1)
        self.mlp = MLPHooks()
        self.hook_mlp_out = HookPoint(_TOKENS, -1)
        self.hook_resid_post = HookPoint(_TOKENS, -1)
