"""HuggingFace transformers' models through the hook points: GPT-2, BERT and ViT.

Any model built from their configs (``GPT2Config``, ``BertConfig``, ``ViTConfig``) in
the ``transformers`` 5 module layout. The package never imports ``transformers``: a
model is recognised by its classes' names, and computed with its own modules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from .._validation.checks import ParameterError
from .adapters import Adapter
from .attention import attend, merge_heads, split_heads
from .hook_points import BlockHooks

__all__ = ["BertAdapter", "GPT2Adapter", "HFViTAdapter"]


class _HuggingFaceAdapter(Adapter):
    """A HuggingFace architecture, recognised by its base model (``GPT2Model``, ...), alone
    or under a task head's ``attribute``."""

    attribute, base = "", ""

    def _body(self, model: nn.Module) -> nn.Module | None:
        body = getattr(model, self.attribute, model)
        return body if type(body).__name__ == self.base else None

    def matches(self, model: nn.Module) -> bool:
        return self._body(model) is not None


def _mask(attention_mask: Any) -> Tensor | None:
    """HuggingFace's 4-d attention mask as given to a layer (boolean: True where attention
    is allowed; or additive), or None."""
    return attention_mask if isinstance(attention_mask, Tensor) else None


class GPT2Adapter(_HuggingFaceAdapter):
    """HuggingFace GPT-2 (``GPT2Model``, ``GPT2LMHeadModel`` and the other heads)."""

    name = "HuggingFace GPT-2"

    attribute, base = "transformer", "GPT2Model"

    def blocks(self, model: nn.Module) -> list[nn.Module]:
        return list(self._body(model).h)  # type: ignore[union-attr]

    def token_embedding(self, model: nn.Module) -> nn.Module | None:
        return self._body(model).wte  # type: ignore[union-attr]

    def position_embedding(self, model: nn.Module) -> nn.Module | None:
        return self._body(model).wpe  # type: ignore[union-attr]

    def call_options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        # the hooked forward keeps no key-value cache: every call sees the whole sequence
        return {"use_cache": False, **kwargs}

    def block_forward(self, block: nn.Module, hooks: BlockHooks) -> Callable[..., Any]:
        attention, mlp = block.attn, block.mlp

        def forward(
            hidden_states, *args, attention_mask=None, encoder_hidden_states=None, **kwargs
        ):  # type: ignore[no-untyped-def]
            if encoder_hidden_states is not None:
                raise ParameterError(
                    "model", "hooked() reads GPT-2's self-attention only, not cross-attention"
                )
            x = hooks.hook_resid_pre(hidden_states)
            q, k, v = attention.c_attn(block.ln_1(x)).split(attention.split_size, dim=2)
            heads = attention.num_heads
            z = attend(
                hooks.attn,
                split_heads(q, heads),
                split_heads(k, heads),
                split_heads(v, heads),
                scale=attention.scaling,
                causal=True,
                mask=_mask(attention_mask),
                dropout=attention.attn_dropout,
            )
            attn_out = attention.resid_dropout(attention.c_proj(merge_heads(z)))
            mid = hooks.hook_resid_mid(x + hooks.hook_attn_out(attn_out))
            pre = hooks.mlp.hook_pre(mlp.c_fc(block.ln_2(mid)))
            post = hooks.mlp.hook_post(mlp.act(pre))
            mlp_out = hooks.hook_mlp_out(mlp.dropout(mlp.c_proj(post)))
            return hooks.hook_resid_post(mid + mlp_out)

        return forward


class BertAdapter(_HuggingFaceAdapter):
    """HuggingFace BERT (``BertModel`` and its task heads): post-norm encoder blocks."""

    name = "HuggingFace BERT"

    attribute, base = "bert", "BertModel"

    def blocks(self, model: nn.Module) -> list[nn.Module]:
        return list(self._body(model).encoder.layer)  # type: ignore[union-attr]

    def token_embedding(self, model: nn.Module) -> nn.Module | None:
        return self._body(model).embeddings.word_embeddings  # type: ignore[union-attr]

    def position_embedding(self, model: nn.Module) -> nn.Module | None:
        return self._body(model).embeddings.position_embeddings  # type: ignore[union-attr]

    def block_forward(self, block: nn.Module, hooks: BlockHooks) -> Callable[..., Any]:
        attention, attention_out = block.attention.self, block.attention.output

        def forward(
            hidden_states, attention_mask=None, *args, encoder_hidden_states=None, **kwargs
        ):  # type: ignore[no-untyped-def]
            if encoder_hidden_states is not None:
                raise ParameterError("model", "hooked() reads BERT's self-attention only")
            x = hooks.hook_resid_pre(hidden_states)
            heads = attention.num_attention_heads
            z = attend(
                hooks.attn,
                split_heads(attention.query(x), heads),
                split_heads(attention.key(x), heads),
                split_heads(attention.value(x), heads),
                scale=attention.scaling,
                causal=bool(attention.is_causal),
                mask=_mask(attention_mask),
                dropout=attention.dropout,
            )
            out = attention_out.dropout(attention_out.dense(merge_heads(z)))
            # post-norm: the stream between attention and MLP is after the first LayerNorm
            mid = hooks.hook_resid_mid(attention_out.LayerNorm(hooks.hook_attn_out(out) + x))
            pre = hooks.mlp.hook_pre(block.intermediate.dense(mid))
            post = hooks.mlp.hook_post(block.intermediate.intermediate_act_fn(pre))
            mlp_out = hooks.hook_mlp_out(block.output.dropout(block.output.dense(post)))
            return hooks.hook_resid_post(block.output.LayerNorm(mlp_out + mid))

        return forward


class HFViTAdapter(_HuggingFaceAdapter):
    """HuggingFace ViT (``ViTModel``, ``ViTForImageClassification``): pre-norm blocks over
    the class token and the patches."""

    name = "HuggingFace ViT"

    attribute, base = "vit", "ViTModel"

    def blocks(self, model: nn.Module) -> list[nn.Module]:
        return list(self._body(model).layers)  # type: ignore[union-attr]

    def block_forward(self, block: nn.Module, hooks: BlockHooks) -> Callable[..., Any]:
        attention, mlp = block.attention, block.mlp

        def forward(hidden_states, attention_mask=None, *args, **kwargs):  # type: ignore[no-untyped-def]
            x = hooks.hook_resid_pre(hidden_states)
            h = block.layernorm_before(x)
            heads = attention.num_attention_heads
            dropout = nn.functional.dropout if attention.training else None
            z = attend(
                hooks.attn,
                split_heads(attention.q_proj(h), heads),
                split_heads(attention.k_proj(h), heads),
                split_heads(attention.v_proj(h), heads),
                scale=attention.scaling,
                mask=_mask(attention_mask),
                dropout=(lambda p: dropout(p, attention.attention_dropout)) if dropout else None,
            )
            attn_out = hooks.hook_attn_out(block.dropout(attention.o_proj(merge_heads(z))))
            mid = hooks.hook_resid_mid(x + attn_out)
            pre = hooks.mlp.hook_pre(mlp.fc1(block.layernorm_after(mid)))
            post = hooks.mlp.hook_post(mlp.activation_fn(pre))
            return hooks.hook_resid_post(mid + hooks.hook_mlp_out(block.dropout(mlp.fc2(post))))

        return forward
