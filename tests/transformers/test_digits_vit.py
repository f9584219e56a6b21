"""The shipped digits ViT: classifies the digits, runs through its hook points unchanged,
and its token t reads exactly the pixels of patch_box(t, 8, 2)."""

from __future__ import annotations

import torch

from captum_groups.datasets import load_digits
from captum_groups.digits_vit import digits_vit
from captum_groups.transformers import hooked

from ._models import assert_tokens_read_their_patch_boxes


def test_the_digits_vit_classifies_and_runs_through_its_hook_points_unchanged():
    x, y = load_digits("test")
    plain, model = digits_vit(), hooked(digits_vit())
    with torch.no_grad():
        assert (plain(x).argmax(1) == y).float().mean() > 0.9
        assert torch.allclose(model(x), plain(x), atol=1e-5)


def test_each_patch_token_reads_the_pixels_of_its_patch_box():
    image = load_digits("test")[0][:1]
    assert_tokens_read_their_patch_boxes(hooked(digits_vit()), image, 8, 2)
