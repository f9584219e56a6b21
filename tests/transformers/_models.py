"""Small transformers and checks shared by the transformer tests."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

from captum_groups.transformers import patch_box


def torchvision_vit(num_layers: int = 2) -> nn.Module:
    """torchvision's VisionTransformer on 8 x 8 images, 4 patches of 4 x 4, in eval mode."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return torchvision.models.VisionTransformer(
        image_size=8, patch_size=4, num_layers=num_layers, num_heads=2, hidden_dim=16,
        mlp_dim=32, num_classes=10,
    ).eval()  # fmt: skip


def gpt2_and_bridge() -> tuple[nn.Module, nn.Module]:
    """A HuggingFace GPT-2 from a small config, random weights, and TransformerLens's
    TransformerBridge around a copy of it, in HookedTransformer compatibility mode."""
    transformers = pytest.importorskip("transformers")
    builder = pytest.importorskip("transformer_lens.model_bridge.sources._bridge_builder")
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=2, n_head=4, n_embd=32, n_positions=16, vocab_size=50,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    gpt = transformers.GPT2LMHeadModel(config).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge = builder.build_bridge_from_module(
            copy.deepcopy(gpt), "GPT2LMHeadModel", hf_config=config
        )
        bridge.enable_compatibility_mode(no_processing=True, disable_warnings=True)
    return gpt, bridge


def assert_tokens_read_their_patch_boxes(model, image, size: int, patch: int) -> None:
    """Raising the pixels of patch_box(t) moves the first block's input at token t only."""
    read = {}
    point = model.blocks[0].hook_resid_pre
    handle = point.register_forward_hook(lambda m, i, o: read.update(x=o))
    try:
        with torch.no_grad():
            model(image)
            before = read["x"].clone()
            for position in range(1, (size // patch) ** 2 + 1):
                top, left, height, width = patch_box(position, size, patch)
                changed = image.clone()
                changed[..., top : top + height, left : left + width] += 1.0
                model(changed)
                moved = (read["x"] - before).abs().sum(-1)[0]
                assert moved.nonzero()[:, 0].tolist() == [position]
    finally:
        handle.remove()
