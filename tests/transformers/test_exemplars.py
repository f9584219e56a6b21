"""Token exemplars against brute force on a planted maximum, their HTML escaped, and a
ViT token's patch box against the pixels that change its embedding."""

from __future__ import annotations

import matplotlib
import pytest
import torch
from torch import nn

from captum_groups import NeuronGroup, ParameterError
from captum_groups.transformers import (
    hooked,
    patch_box,
    plot_token_exemplars,
    token_exemplars,
    token_exemplars_html,
)

from ._models import assert_tokens_read_their_patch_boxes, torchvision_vit


def test_token_exemplars_are_the_top_example_position_pairs_by_brute_force():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4))
    x = torch.randn(30, 7, 4)
    x[12, 5, :] = 6.0  # a planted maximum
    group = NeuronGroup("0", [1, 3], dim=-1, weights=[1.0, -0.5])
    found = token_exemplars(model, group, x, k=5, batch_size=8)
    with torch.no_grad():
        out = model(x)
    every = out[..., 1] - 0.5 * out[..., 3]  # (N, T): the group at each token, by hand
    values, flat = every.flatten().topk(5)
    assert torch.allclose(found.values, values)
    assert found.examples.tolist() == (flat // 7).tolist()
    assert found.positions.tolist() == (flat % 7).tolist()
    assert torch.allclose(found.contexts, every[flat // 7])


def test_text_exemplars_escape_the_tokens_and_frame_the_exemplar_s_own_token():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 3))
    tokens = torch.tensor([[0, 1, 2, 3], [4, 0, 1, 0], [2, 2, 0, 1]])
    found = token_exemplars(model, NeuronGroup("1", [0], dim=-1), tokens, k=2)
    names = ["<b>", "&", "'q'", '"x"', "ok"]
    text = token_exemplars_html(found, tokens, names.__getitem__, context=3)
    assert "&lt;b&gt;" in text and "&amp;" in text  # token texts escaped
    assert text.count("<b>") == 2  # the two value labels are the only <b> markup
    assert text.count("outline: 1px solid") == 2  # each exemplar's own token framed
    matplotlib.use("Agg")
    figure = plot_token_exemplars(found, tokens, names.__getitem__)
    framed = [patch for patch in figure.axes[0].patches if patch.get_edgecolor()[3] > 0]
    assert len(framed) == 2


def test_a_vit_token_reads_exactly_the_pixels_of_its_patch_box():
    model = hooked(torchvision_vit(num_layers=1))
    assert_tokens_read_their_patch_boxes(model, torch.randn(1, 3, 8, 8), 8, 4)
    with pytest.raises(ParameterError, match="class token"):
        patch_box(0, 8, 4)
    with pytest.raises(ParameterError, match="out of range for 4 patches"):
        patch_box(5, 8, 4)
