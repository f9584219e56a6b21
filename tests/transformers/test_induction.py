"""The shipped tiny GPT copies by induction, and patching finds the mechanism: the group of
induction heads carries the copying, no single other head does."""

from __future__ import annotations

import pytest
import torch

from captum_groups import GroupIntegratedGradients, NeuronGroup, layer_activations, patch
from captum_groups.induction import HEADS, induction_data, tiny_gpt
from captum_groups.transformers import hooked


@pytest.fixture(scope="module")
def prompts():
    """Clean prompts, and corrupted ones whose first occurrence of the repeat is replaced
    (nothing left to copy from); the copyable positions and their next tokens."""
    clean, copyable = induction_data(300, random_state=7)
    other, _ = induction_data(300, random_state=8)
    first = torch.zeros_like(copyable)
    for row in range(len(clean)):
        positions = copyable[row].nonzero()[:, 0]
        size = len(positions) + 1
        first[row, positions[0] - size : positions[0]] = True
    corrupted = torch.where(first, other, clean)
    return clean, corrupted, copyable[:, :-1]


def _logit_difference(logits, clean, mask):
    """The next token's logit above the mean logit, at the copyable positions."""
    logits = logits[:, :-1]
    right = logits.gather(-1, clean[:, 1:, None])[..., 0]
    return (right - logits.mean(-1))[mask].mean().item()


def _recovered(model, group, prompts):
    clean, corrupted, mask = prompts
    with torch.no_grad():
        high = _logit_difference(model(clean), clean, mask)
        low = _logit_difference(model(corrupted), clean, mask)
        with patch(model, group, source=corrupted):
            patched = _logit_difference(model(clean), clean, mask)
    return (patched - low) / (high - low)


def _induction_scores(model, prompts, layer):
    """Each head's mean attention from a copyable token to the token after its first
    occurrence (Olsson et al.'s induction score)."""
    clean, _, mask = prompts
    pattern = layer_activations(model, f"blocks.{layer}.attn.hook_pattern", clean)
    scores = []
    for row in range(len(clean)):
        positions = mask[row].nonzero()[:, 0]
        size = len(positions) + 1
        scores.append(pattern[row, :, positions, positions - size + 1].mean(-1))
    return torch.stack(scores).mean(0)


def test_the_tiny_gpt_copies_where_copying_is_possible_and_guesses_elsewhere(prompts):
    clean, _, mask = prompts
    with torch.no_grad():
        right = tiny_gpt()(clean).argmax(-1)[:, :-1] == clean[:, 1:]
    assert right[mask].float().mean() > 0.9
    assert right[~mask].float().mean() < 0.15  # random tokens: chance is 1/24


def test_patching_the_induction_heads_removes_the_copying_and_a_single_other_head_does_not(
    prompts,
):
    model = hooked(tiny_gpt())
    scores = _induction_scores(model, prompts, 1)
    induction = [h for h in range(HEADS) if scores[h] > 0.5]
    assert induction  # layer 1 holds induction heads
    assert _recovered(model, NeuronGroup("blocks.1.attn.hook_z", induction, dim=2), prompts) < 0.2
    for head in range(HEADS):  # the layer-0 heads: none is an induction head
        assert _induction_scores(model, prompts, 0)[head] < 0.2
        other = NeuronGroup("blocks.0.attn.hook_z", [head], dim=2)
        assert _recovered(model, other, prompts) > 0.8


def test_token_attributions_of_a_causal_model_are_zero_after_the_group_s_position(prompts):
    """Token ids in, one value per token: the induction heads at token t read no later
    token (the causal mask), and the values add up to the group's rise from the zero
    embedding (completeness)."""
    clean = prompts[0][:4]
    model = hooked(tiny_gpt().double())
    t = 12
    group = NeuronGroup("blocks.1.attn.hook_z", list(range(HEADS)), dim=2, reduction=(t,))
    method = GroupIntegratedGradients(model, "blocks.1.attn.hook_z")
    per_token = method.attribute(clean, group, n_steps=1000, method="riemann_trapezoid")
    assert per_token.shape == clean.shape
    assert torch.all(per_token[:, t + 1 :] == 0)
    zero = torch.zeros(*clean.shape, model.token_embedding.embedding_dim, dtype=torch.float64)
    handle = model.token_embedding.register_forward_hook(lambda m, i, o: zero)
    try:
        at_zero = group(layer_activations(model, "blocks.1.attn.hook_z", clean))
    finally:
        handle.remove()
    rise = group(layer_activations(model, "blocks.1.attn.hook_z", clean)) - at_zero
    assert torch.allclose(per_token.sum(1), rise, atol=5e-3)  # ReLU kinks: error O(1/n_steps)
