"""Transformers, first class: TransformerLens's hook points on stock models.

:func:`hooked` gives HuggingFace's GPT-2, BERT and ViT, torchvision's ViT or a
model of ``nn.TransformerEncoderLayer`` blocks the hook points TransformerLens names
(``blocks.0.attn.hook_z``, ``blocks.1.hook_resid_post``, ...), the per-head
queries, keys, values, patterns and outputs included, computed with the
model's own weights. Every tool of the package then reads, attributes to and
edits them as layers. ``transformers`` (HuggingFace) is needed only for its
models, and imported by them.
"""

from .attention import attend
from .exemplars import (
    TokenExemplars,
    patch_box,
    plot_token_exemplars,
    token_exemplars,
    token_exemplars_html,
)
from .hook_points import HookPoint
from .hooked import HookedModel, hooked

__all__ = [
    "HookPoint",
    "HookedModel",
    "TokenExemplars",
    "attend",
    "hooked",
    "patch_box",
    "plot_token_exemplars",
    "token_exemplars",
    "token_exemplars_html",
]
