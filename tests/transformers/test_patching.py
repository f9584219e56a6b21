"""Patching and position-aware ablation, against the same edits made by hand with a hook."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from captum_groups import NeuronGroup, ParameterError, ablate, layer_activations, patch, retain
from captum_groups.transformers import hooked


@pytest.fixture
def model():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True, norm_first=True)
    return hooked(nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval())


def _by_hand(model, point, edit, x):
    """The model's output with ``edit(output)`` applied at hook point ``point``."""
    handle = model.get_submodule(point).register_forward_hook(lambda m, i, o: edit(o))
    try:
        with torch.no_grad():
            return model(x)
    finally:
        handle.remove()


def _z(model, x):
    got = {}
    handle = model.blocks[0].attn.hook_z.register_forward_hook(lambda m, i, o: got.update(z=o))
    with torch.no_grad():
        model(x)
    handle.remove()
    return got["z"]


def test_patching_a_head_from_a_corrupted_input_equals_the_edit_by_hand(model):
    clean, corrupted = torch.randn(3, 5, 8), torch.randn(3, 5, 8)
    source = _z(model, corrupted)

    def edit(z):
        z = z.clone()
        z[:, :, 1] = source[:, :, 1]
        return z

    with patch(model, NeuronGroup("blocks.0.attn.hook_z", [1], dim=2), source=corrupted):
        with torch.no_grad():
            patched = model(clean)
    assert torch.allclose(patched, _by_hand(model, "blocks.0.attn.hook_z", edit, clean), atol=1e-6)
    assert not any(m._forward_hooks for m in model.modules())


def test_a_head_at_one_position_is_patched_and_ablated_at_that_position_only(model):
    clean, corrupted = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    source = _z(model, corrupted)
    at_3 = NeuronGroup("blocks.0.attn.hook_z", [0], dim=2, reduction=(3,))

    def patched_at_3(z):
        z = z.clone()
        z[:, 3, 0] = source[:, 3, 0]
        return z

    def zero_at_3(z):
        z = z.clone()
        z[:, 3, 0] = 0
        return z

    with patch(model, at_3, source=corrupted), torch.no_grad():
        patched = model(clean)
    expected = _by_hand(model, "blocks.0.attn.hook_z", patched_at_3, clean)
    assert torch.allclose(patched, expected, atol=1e-6)
    every = NeuronGroup("blocks.0.attn.hook_z", [0], dim=2)
    with patch(model, every, source=corrupted, positions=[3]), torch.no_grad():
        assert torch.allclose(model(clean), expected, atol=1e-6)
    with ablate(model, at_3), torch.no_grad():
        ablated = model(clean)
    assert torch.allclose(ablated, _by_hand(model, "blocks.0.attn.hook_z", zero_at_3, clean))
    # the earlier positions of a causal model, or here the other heads' values, are untouched
    with retain(model, at_3), torch.no_grad():
        kept = model(clean)

    def keep_only(z):
        out = torch.zeros_like(z)
        out[:, 3, 0] = z[:, 3, 0]
        return out

    assert torch.allclose(kept, _by_hand(model, "blocks.0.attn.hook_z", keep_only, clean))


def test_resampling_draws_each_example_from_the_source_reproducibly(model):
    clean, source = torch.randn(4, 5, 8), torch.randn(6, 5, 8)
    group = NeuronGroup("blocks.1.hook_resid_mid", [0, 1, 2], dim=-1)
    with patch(model, group, source=source, resample=True, random_state=3), torch.no_grad():
        first = model(clean)
    with patch(model, group, source=source, resample=True, random_state=3), torch.no_grad():
        again = model(clean)
    assert torch.equal(first, again)
    rows = torch.randint(6, (4,), generator=torch.Generator().manual_seed(3))
    with patch(model, group, source=source[rows]), torch.no_grad():
        assert torch.allclose(first, model(clean), atol=1e-6)


def test_bad_sources_and_positions_are_refused_by_name(model):
    group = NeuronGroup("blocks.0.attn.hook_z", [0], dim=2)
    with pytest.raises(ParameterError, match="same shape per example") as caught:
        with patch(model, group, source=torch.randn(2, 4, 8)):
            model(torch.randn(2, 5, 8))
    assert caught.value.parameter == "source"
    with pytest.raises(ParameterError, match="3 examples and the patched input 2"):
        with patch(model, group, source=torch.randn(3, 5, 8)):
            model(torch.randn(2, 5, 8))
    with pytest.raises(ParameterError, match="out of range for 5 positions") as caught:
        with patch(model, group, source=torch.randn(2, 5, 8), positions=[7]):
            model(torch.randn(2, 5, 8))
    assert caught.value.parameter == "positions"
    assert not any(m._forward_hooks for m in model.modules())


def test_layer_group_ablation_of_a_head_at_one_position_ablates_that_position_only(model):
    from captum_groups import LayerGroupAblation

    x = torch.randn(3, 5, 8)
    at_2 = NeuronGroup("blocks.1.attn.hook_z", [1], dim=2, reduction=(2,))

    class Summed(nn.Module):
        """The model's output summed to one number per example (a target for the drop)."""

        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(x).sum((1, 2))[:, None]

    summed = Summed()
    point = model.get_submodule("blocks.1.attn.hook_z")
    drop = LayerGroupAblation(summed, point).attribute(
        x, NeuronGroup(point, [1], dim=2, reduction=(2,)), target=0
    )

    def zero_at_2(z):
        z = z.clone()
        z[:, 2, 1] = 0
        return z

    with torch.no_grad():
        expected = summed(x)[:, 0] - _by_hand(model, "blocks.1.attn.hook_z", zero_at_2, x).sum(
            (1, 2)
        )
    assert at_2.reduction == (2,)
    assert torch.allclose(drop, expected, atol=1e-5)


def test_mean_ablation_per_position_puts_each_token_s_own_mean(model):
    x, data = torch.randn(2, 5, 8), torch.randn(40, 5, 8)
    group = NeuronGroup("blocks.0.attn.hook_z", [1], dim=2)
    mean = layer_activations(model, "blocks.0.attn.hook_z", data).mean(0)  # (T, heads, d_head)

    def put_mean(z):
        z = z.clone()
        z[:, :, 1] = mean[:, 1]
        return z

    with ablate(model, group, value="position_mean", data=data), torch.no_grad():
        ablated = model(x)
    assert torch.allclose(ablated, _by_hand(model, "blocks.0.attn.hook_z", put_mean, x), atol=1e-5)
    with pytest.raises(ParameterError, match="same length as the inputs") as caught:
        with ablate(model, group, value="position_mean", data=data[:, :4]):
            model(x)
    assert caught.value.parameter == "value"
