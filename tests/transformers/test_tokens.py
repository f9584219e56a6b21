"""Token ids as inputs: every group attribution class attributes at the token embedding's
output, one value per token, equal to the same class run on the embeddings by hand and to
Captum's LayerIntegratedGradients on the embedding with a hand-written group selector."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import LayerIntegratedGradients
from torch import nn

from captum_groups import (
    GroupConductance,
    GroupDeconvolution,
    GroupFeatureAblation,
    GroupGradient,
    GroupGradientShap,
    GroupGuidedBackprop,
    GroupIntegratedGradients,
    LayerGroupConductance,
    LayerGroupGradientXActivation,
    NeuronGroup,
    ParameterError,
)
from captum_groups.transformers import hooked

transformers = pytest.importorskip("transformers")

HEAD = NeuronGroup("blocks.1.attn.hook_z", [2], dim=2)


@pytest.fixture(scope="module")
def gpt():
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=2, n_head=4, n_embd=16, n_positions=16, vocab_size=30,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config).eval().double()


def _head_value(model, ids):
    """The group by hand: head 2 of block 1, its output averaged over tokens and d_head."""
    got = {}
    handle = model.blocks[1].attn.hook_z.register_forward_hook(lambda m, i, o: got.update(z=o))
    try:
        model(ids)
    finally:
        handle.remove()
    return got["z"][:, :, 2, :].mean((1, 2))


def test_token_ids_equal_captums_layer_integrated_gradients_on_the_embedding(gpt):
    model = hooked(gpt)
    ids = torch.randint(0, 30, (3, 6))
    method = GroupIntegratedGradients(model, "blocks.1.attn.hook_z")
    # Captum's LayerIntegratedGradients starts from the embedding of token id 0
    ours = method.attribute(ids, HEAD, baselines=torch.zeros_like(ids), n_steps=20)
    captum = LayerIntegratedGradients(lambda i: _head_value(model, i), gpt.transformer.wte)
    assert ours.shape == (3, 6)
    assert torch.allclose(ours, captum.attribute(ids, n_steps=20).sum(-1), atol=1e-10)


def test_the_default_baseline_is_the_zero_embedding_and_completeness_holds(gpt):
    model = hooked(gpt)
    ids = torch.randint(0, 30, (3, 6))
    ours = GroupIntegratedGradients(model, "blocks.1.attn.hook_z").attribute(ids, HEAD, n_steps=64)
    zero = torch.zeros(3, 6, 16, dtype=torch.float64)
    handle = gpt.transformer.wte.register_forward_hook(lambda m, i, o: zero)
    try:
        at_zero = _head_value(model, ids)
    finally:
        handle.remove()
    assert torch.allclose(ours.sum(1), _head_value(model, ids) - at_zero, atol=1e-8)


@pytest.mark.parametrize(
    ("cls", "options"),
    [
        (GroupGradient, {}),
        (GroupIntegratedGradients, {"n_steps": 8}),
        (GroupConductance, {"n_steps": 8, "target": 1}),
        (GroupGradientShap, {"n_samples": 4, "stdevs": 0.1}),
        (GroupGuidedBackprop, {}),
        (GroupDeconvolution, {}),
        (GroupFeatureAblation, {}),
    ],
)
def test_every_group_class_on_token_ids_equals_itself_on_the_embeddings(cls, options):
    model = hooked(_TokenClassifier().eval().double())
    ids = torch.randint(0, 20, (2, 5))
    embedded = model.model.embed(ids).detach()
    layer = model.get_submodule("blocks.0.mlp.hook_post")
    group = NeuronGroup(layer, [1, 5, 9], dim=-1)
    if cls is GroupGradientShap:
        options = {**options, "baselines": torch.zeros(1, 5, 8, dtype=torch.float64)}
    torch.manual_seed(1), np.random.seed(1)  # noqa: NPY002 (GradientShap draws from both)
    ours = cls(model, layer).attribute(ids, group, **options)
    torch.manual_seed(1), np.random.seed(1)  # noqa: NPY002
    by_hand = cls(_Embedded(model), layer).attribute(embedded, group, **options)
    assert ours.shape == (2, 5)
    assert torch.allclose(ours, by_hand.sum(-1), atol=1e-8)


class _Embedded(nn.Module):
    """The hooked token classifier as a function of its token embeddings, by hand."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, embedded):
        handle = self.model.model.embed.register_forward_hook(lambda m, i, o: embedded)
        try:
            return self.model(torch.zeros(embedded.shape[:2], dtype=torch.long))
        finally:
            handle.remove()


class _TokenClassifier(nn.Module):
    """Tokens -> embedding -> one encoder block -> mean over tokens -> 3 classes."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(20, 8)
        layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.head = nn.Linear(8, 3)

    def forward(self, ids):
        return self.head(self.encoder(self.embed(ids)).mean(1))


def test_a_layer_class_on_token_ids_splits_the_class_logit_among_groups_as_on_embeddings():
    model = hooked(_TokenClassifier().eval().double())
    ids = torch.randint(0, 20, (4, 6))
    layer = model.get_submodule("blocks.0.mlp.hook_post")
    groups = [NeuronGroup(layer, [i, i + 1], dim=-1) for i in (0, 4, 8)]
    method = LayerGroupConductance(model, layer)
    ours = method.attribute(ids, groups, target=1, n_steps=16)

    embedded = model.model.embed(ids).detach()
    by_hand = LayerGroupConductance(_Embedded(model), layer)
    expected = by_hand.attribute(embedded, groups, target=1, n_steps=16)
    assert ours.shape == (4, 3)
    assert torch.allclose(ours, expected, atol=1e-10)
    gxa = LayerGroupGradientXActivation(model, layer).attribute(ids, groups, 1)
    assert gxa.shape == (4, 3)


def test_token_ids_for_a_model_with_several_embeddings_are_refused_by_name():
    class TwoEmbeddings(nn.Module):
        def __init__(self):
            super().__init__()
            self.tokens, self.positions = nn.Embedding(10, 4), nn.Embedding(6, 4)
            self.out = nn.Linear(4, 2)

        def forward(self, ids):
            return self.out(self.tokens(ids) + self.positions.weight[: ids.shape[1]]).mean(1)

    model = TwoEmbeddings()
    with pytest.raises(ParameterError, match="2 nn.Embedding modules; wrap it with") as caught:
        GroupGradient(model, "out").attribute(
            torch.zeros(2, 3, dtype=torch.long), NeuronGroup("out", [0])
        )
    assert caught.value.parameter == "inputs"


def test_token_ids_with_an_attention_mask_attribute_only_what_the_model_reads():
    """BERT takes its attention mask second: given as additional_forward_args, the padded
    tokens get exactly zero (the model never reads them), as in Captum."""
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=16, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    model = hooked(transformers.BertModel(config).eval().double())
    ids = torch.randint(1, 40, (2, 6))
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    group = NeuronGroup("blocks.1.attn.hook_z", [0], dim=2, reduction=(0,))  # at token 0
    method = GroupIntegratedGradients(model, "blocks.1.attn.hook_z")
    per_token = method.attribute(ids, group, additional_forward_args=(mask,), n_steps=16)
    assert per_token.shape == (2, 6)
    assert torch.all(per_token[1, 4:] == 0) and torch.all(per_token[0] != 0)
