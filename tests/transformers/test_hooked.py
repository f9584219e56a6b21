"""hooked(): TransformerLens's hook points on stock transformers, checked against
TransformerLens itself, against the models' own fused outputs and attention weights, and
against Captum's neuron classes with hand-written selectors."""

from __future__ import annotations

import warnings

import pytest
import torch
from captum.attr import NeuronIntegratedGradients
from torch import nn

from captum_groups import (
    GroupIntegratedGradients,
    NeuronGroup,
    ParameterError,
    ablate,
    layer_activations,
)
from captum_groups.transformers import HookPoint, hooked

from ._models import gpt2_and_bridge, torchvision_vit


def _encoder(norm_first: bool, batch_first: bool, dtype=torch.float32) -> nn.Module:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(
        8, 2, 16, dropout=0.0, batch_first=batch_first, norm_first=norm_first
    )
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).to(dtype).eval()


def _hook_names(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, HookPoint)]


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_an_encoder_runs_through_its_hook_points_to_the_same_output(norm_first, batch_first):
    model = _encoder(norm_first, batch_first)
    x = torch.randn(3, 5, 8) if batch_first else torch.randn(5, 3, 8)
    padding = torch.tensor([[False] * 5, [False] * 3 + [True] * 2, [False] * 4 + [True]])
    wrapped = hooked(model)
    for kwargs in ({}, {"src_key_padding_mask": padding}, {"is_causal": True, "mask": None}):
        if kwargs.get("is_causal"):
            kwargs = {"mask": nn.Transformer.generate_square_subsequent_mask(5), "is_causal": True}
        assert torch.allclose(wrapped(x, **kwargs), model(x, **kwargs), atol=1e-5)


def test_the_attention_pattern_is_the_layers_own_per_head_attention_weights():
    model = _encoder(norm_first=True, batch_first=True)
    wrapped = hooked(model)
    x = torch.randn(3, 5, 8)
    layer = model.layers[0]
    with torch.no_grad():
        _, weights = layer.self_attn(
            layer.norm1(x), layer.norm1(x), layer.norm1(x), average_attn_weights=False
        )
        attn_out = layer.self_attn(layer.norm1(x), layer.norm1(x), layer.norm1(x))[0]
    pattern = layer_activations(wrapped, "blocks.0.attn.hook_pattern", x)
    assert pattern.shape == (3, 2, 5, 5)
    assert torch.allclose(pattern, weights, atol=1e-6)
    assert torch.allclose(
        layer_activations(wrapped, "blocks.0.hook_attn_out", x), attn_out, atol=1e-6
    )
    # the output projection now runs as a module: it can be read and grouped
    out_proj = layer_activations(wrapped, "model.layers.0.self_attn.out_proj", x)
    assert torch.allclose(out_proj, attn_out, atol=1e-6)


def test_a_nested_tensor_fast_path_is_off_during_a_call_and_restored_after():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=True).eval()
    padding = torch.tensor([[False] * 5, [False] * 2 + [True] * 3])
    x = torch.randn(2, 5, 8)
    wrapped = hooked(model)
    captured = {}
    handle = wrapped.blocks[1].hook_resid_post.register_forward_hook(
        lambda m, i, o: captured.setdefault("resid", o)
    )
    with torch.no_grad():
        wrapped(x, src_key_padding_mask=padding)
    handle.remove()
    assert captured["resid"].shape == (2, 5, 8)  # every row, the padded ones too
    assert not captured["resid"].is_nested
    assert model.use_nested_tensor is True
    assert "forward" not in model.layers[0].__dict__


def test_the_model_is_left_as_it_was_also_after_an_error():
    model = _encoder(norm_first=True, batch_first=True)
    before = {name: p.clone() for name, p in model.state_dict().items()}
    wrapped = hooked(model)
    with pytest.raises(RuntimeError):
        wrapped(torch.randn(3, 5, 7))  # wrong width
    wrapped(torch.randn(3, 5, 8))
    for module in model.modules():
        assert "forward" not in module.__dict__
        assert not module._forward_hooks and not module._forward_pre_hooks
    assert all(torch.equal(before[n], p) for n, p in model.state_dict().items())
    assert not model.training


def test_torchvision_vit_runs_through_its_hook_points():
    vit = torchvision_vit()
    wrapped = hooked(vit)
    x = torch.randn(2, 3, 8, 8)
    assert torch.allclose(wrapped(x), vit(x), atol=1e-5)
    assert len(wrapped.blocks) == 2
    z = layer_activations(wrapped, "blocks.1.attn.hook_z", x)
    assert z.shape == (2, 5, 2, 8)  # class token + 4 patches, 2 heads of 8


def test_unknown_architectures_are_refused_by_name():
    with pytest.raises(ParameterError, match="knows no transformer blocks in Sequential"):
        hooked(nn.Sequential(nn.Linear(2, 2)))


def test_gpt2_hook_points_equal_transformer_lens_run_with_cache():
    gpt, bridge = gpt2_and_bridge()
    tokens = torch.randint(0, 50, (2, 7))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, cache = bridge.run_with_cache(tokens)
    model = hooked(gpt)
    names = _hook_names(model)
    assert len(names) == 2 + 2 * 13
    for name in names:
        ours, theirs = layer_activations(model, name, tokens), cache[name]
        assert ours.shape == theirs.shape, name
        assert torch.equal(torch.isinf(ours), torch.isinf(theirs)), name
        finite = torch.isfinite(theirs)
        assert torch.allclose(ours[finite], theirs[finite], atol=1e-5), name


@pytest.mark.parametrize(
    ("layer", "group", "selector"),
    [
        ("blocks.1.mlp.hook_post", NeuronGroup("blocks.1.mlp.hook_post", [3, 7], dim=-1),
         lambda out: out[..., [3, 7]].mean(1).sum(-1)),
        ("blocks.0.attn.hook_z", NeuronGroup("blocks.0.attn.hook_z", [1], dim=2),
         lambda out: out[:, :, 1, :].mean((1, 2))),
        ("blocks.0.attn.hook_z", NeuronGroup("blocks.0.attn.hook_z", [0], dim=2, reduction=(3,)),
         lambda out: out[:, 3, 0, :].mean(-1)),
        ("blocks.1.attn.hook_pattern",
         NeuronGroup("blocks.1.attn.hook_pattern", [1], reduction=(4, 2)),
         lambda out: out[:, 1, 4, 2]),
    ],
)  # fmt: skip
def test_head_and_mlp_groups_equal_captums_neuron_classes_with_hand_selectors(
    layer, group, selector
):
    model = hooked(_encoder(norm_first=True, batch_first=True, dtype=torch.float64))
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    module = model.get_submodule(layer)
    ours = GroupIntegratedGradients(model, layer).attribute(x, group, n_steps=16)
    captum = NeuronIntegratedGradients(model, module).attribute(x, selector, n_steps=16)
    assert torch.allclose(ours, captum, atol=1e-6)


def test_a_group_on_token_features_without_dim_is_refused_not_read_as_tokens():
    # the user's case: three neurons of a ViT-style MLP (N, T, F), dim left out
    model = hooked(_encoder(norm_first=True, batch_first=True))
    x = torch.randn(3, 5, 8)
    method = GroupIntegratedGradients(model, "blocks.0.mlp.hook_post")
    with pytest.raises(ParameterError, match="dim=-1") as caught:
        method.attribute(x, NeuronGroup("blocks.0.mlp.hook_post", [3, 7, 11]))
    assert caught.value.parameter == "dim"
    plain = _encoder(norm_first=True, batch_first=True)
    with pytest.raises(ParameterError, match="could be \\(N, tokens, features\\)"):
        GroupIntegratedGradients(plain, plain.layers[0].linear1).attribute(
            x, NeuronGroup("layers.0.linear1", [3])
        )


def test_a_head_group_without_dim_is_refused_with_the_head_axis_to_name():
    model = hooked(_encoder(norm_first=True, batch_first=True))
    x = torch.randn(3, 5, 8)
    with pytest.raises(ParameterError, match="dim=2 for its head axis"):
        GroupIntegratedGradients(model, "blocks.0.attn.hook_z").attribute(
            x, NeuronGroup("blocks.0.attn.hook_z", [1])
        )
    with pytest.raises(ParameterError, match="dim=2 for its head axis"):
        with ablate(model, [NeuronGroup("blocks.0.attn.hook_z", [1])]):
            model(x)


def test_ablating_a_head_through_its_hook_point_changes_the_output_as_zeroing_it_by_hand():
    model = hooked(_encoder(norm_first=True, batch_first=True))
    x = torch.randn(3, 5, 8)
    with ablate(model, [NeuronGroup("blocks.1.attn.hook_z", [0], dim=2)]), torch.no_grad():
        ablated = model(x)
    handle = model.blocks[1].attn.hook_z.register_forward_hook(
        lambda m, i, o: o * torch.tensor([0.0, 1.0]).view(1, 1, 2, 1)
    )
    with torch.no_grad():
        by_hand = model(x)
    handle.remove()
    assert torch.allclose(ablated, by_hand, atol=1e-6)
    assert not torch.allclose(ablated, model(x).detach(), atol=1e-4)


def test_a_head_group_s_integrated_gradients_equal_those_from_transformer_lens_hooks():
    """IG of head 2 of block 1 over the token embeddings: ours through hooked(GPT-2), and by
    hand through TransformerLens's own hooks (run_with_hooks), the same quadrature."""
    from captum.attr._utils.approximation_methods import approximation_parameters

    gpt, bridge = gpt2_and_bridge()
    assert hooked(bridge) is bridge  # TransformerLens's models have hook points already
    ids = torch.randint(0, 50, (2, 7))
    step_sizes, alphas = approximation_parameters("gausslegendre")
    embedded = bridge.run_with_cache(ids)[1]["hook_embed"].detach()
    total = torch.zeros_like(embedded)
    for alpha, size in zip(alphas(24), step_sizes(24), strict=True):
        point, store = (alpha * embedded).requires_grad_(), {}
        bridge.run_with_hooks(
            ids,
            fwd_hooks=[
                ("hook_embed", lambda t, hook, point=point: point),
                ("blocks.1.attn.hook_z", lambda t, hook, store=store: store.setdefault("z", t)),
            ],
        )
        (gradient,) = torch.autograd.grad(store["z"][:, :, 2, :].mean((1, 2)).sum(), point)
        total += size * gradient
    theirs = (embedded * total).sum(-1)
    head = NeuronGroup("blocks.1.attn.hook_z", [2], dim=2)
    ours = GroupIntegratedGradients(hooked(gpt), "blocks.1.attn.hook_z").attribute(
        ids, head, n_steps=24
    )
    assert torch.allclose(ours, theirs, atol=1e-5 * float(theirs.abs().max()))


def test_huggingface_bert_runs_through_its_hook_points_with_the_model_s_own_attentions():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=16, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, attn_implementation="eager",
    )  # fmt: skip
    bert = transformers.BertForSequenceClassification(config).eval()
    ids = torch.randint(0, 40, (3, 6))
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 5 + [0]])
    model = hooked(bert)
    with torch.no_grad():
        own = bert(ids, attention_mask=mask, output_attentions=True)
        ours = model(ids, attention_mask=mask)
    assert torch.allclose(ours.logits, own.logits, atol=1e-5)
    seen = {}
    point = model.blocks[1].attn.hook_pattern
    handle = point.register_forward_hook(lambda m, i, o: seen.update(pattern=o))
    with torch.no_grad():
        model(ids, attention_mask=mask)
    handle.remove()
    assert torch.allclose(seen["pattern"], own.attentions[1], atol=1e-5)
    assert torch.all(seen["pattern"][1, :, :, 4:] == 0)  # no attention to padding
    assert "forward" not in bert.bert.encoder.layer[0].__dict__


def test_huggingface_vit_runs_through_its_hook_points_with_the_model_s_own_attentions():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        image_size=8, patch_size=4, num_channels=1, hidden_size=16, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=32, num_labels=10,
        attn_implementation="eager",
    )  # fmt: skip
    vit = transformers.ViTForImageClassification(config).eval()
    x = torch.randn(2, 1, 8, 8)
    model = hooked(vit)
    with torch.no_grad():
        own = vit(x, output_attentions=True)
        ours = model(x)
    assert torch.allclose(ours.logits, own.logits, atol=1e-5)
    pattern = layer_activations(model, "blocks.0.attn.hook_pattern", x)
    assert pattern.shape == (2, 2, 5, 5)  # class token and 4 patches
    assert torch.allclose(pattern, own.attentions[0], atol=1e-5)


def test_the_silent_cases_of_a_vit_user_are_errors_that_name_the_fix():
    """The user's cases on a torchvision ViT: a group on an MLP GELU without dim, a circuit
    over block outputs, the attention's out_proj that never runs as a module."""
    from captum_groups import build_circuit

    vit = torchvision_vit()
    x = torch.randn(20, 3, 8, 8)
    gelu = "encoder.layers.encoder_layer_0.mlp.1"
    with pytest.raises(ParameterError, match="dim=-1 for the features") as caught:
        GroupIntegratedGradients(vit, gelu).attribute(x[:2], NeuronGroup(gelu, [3, 7, 11]))
    assert caught.value.parameter == "dim"
    blocks = ["encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1"]
    with pytest.raises(
        ParameterError, match="a sequence of tokens.*build_stream_circuit"
    ) as caught:
        build_circuit(vit, blocks, 3, x, tau=2, k=4, n_steps=4, predicted_only=False,
                      progress=False)  # fmt: skip
    assert caught.value.parameter == "layers"
    out_proj = "encoder.layers.encoder_layer_0.self_attention.out_proj"
    with pytest.raises(ValueError, match="wrap the model with captum_groups.transformers.hooked"):
        layer_activations(vit, out_proj, x)
    assert layer_activations(hooked(vit), f"model.{out_proj}", x).shape == (20, 5, 16)


def test_layer_activations_of_a_padded_nested_tensor_encoder_keep_every_row():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=True).eval()

    class Padded(nn.Module):
        """Tokens that are all zero are padding."""

        def __init__(self):
            super().__init__()
            self.encoder = encoder

        def forward(self, x):
            return self.encoder(x, src_key_padding_mask=(x == 0).all(-1))

    model = Padded()
    x = torch.randn(2, 5, 8)
    x[1, 2:] = 0
    out = layer_activations(model, "encoder.layers.0", x)
    assert not out.is_nested and out.shape == (2, 5, 8)
    assert encoder.use_nested_tensor is True


@pytest.mark.parametrize("batch_first", [False, True])
def test_bare_multihead_attention_runs_through_hook_points_with_its_own_weights(batch_first):
    class CrossAttender(nn.Module):
        """Self-attention, then cross-attention to a memory, then a head."""

        def __init__(self):
            super().__init__()
            self.mix = nn.MultiheadAttention(8, 2, batch_first=batch_first)
            self.read = nn.MultiheadAttention(8, 2, batch_first=batch_first)
            self.head = nn.Linear(8, 3)

        def forward(self, x, memory):
            mixed, _ = self.mix(x, x, x, need_weights=False)
            read, weights = self.read(mixed, memory, memory, average_attn_weights=False)
            return self.head(read).sum(0 if not batch_first else 1), weights

    torch.manual_seed(0)
    plain = CrossAttender().eval()
    x, memory = torch.randn(4, 3, 8), torch.randn(6, 3, 8)
    if batch_first:
        x, memory = x.transpose(0, 1), memory.transpose(0, 1)
    model = hooked(plain)
    with torch.no_grad():
        ours, our_weights = model(x, memory)
        theirs, their_weights = plain(x, memory)
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert torch.allclose(our_weights, their_weights, atol=1e-6)
    seen = {}
    handle = model.blocks[1].attn.hook_pattern.register_forward_hook(
        lambda m, i, o: seen.update(pattern=o)
    )
    with torch.no_grad():
        model(x, memory)
    handle.remove()
    assert seen["pattern"].shape == (3, 2, 4, 6)  # (N, heads, queries, memory keys)
    assert torch.allclose(seen["pattern"], their_weights, atol=1e-6)
