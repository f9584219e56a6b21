"""Circuits through the residual stream: the graph computes the model, EAP equals a hand-written
EAP, patching every edge gives the corrupted model, and bad input is refused by name."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from captum_groups import NeuronGroup, ParameterError
from captum_groups.circuits import CircuitSettings
from captum_groups.circuits.edge_scores import eap_scores, exact_scores, metric_of, recovered
from captum_groups.circuits.stream import StreamGraph
from captum_groups.induction import TinyGPT

from .._helpers import assert_same_state, model_state


@pytest.fixture(scope="module")
def gpt():
    torch.manual_seed(3)
    model = TinyGPT(vocab=11, length=7).eval()
    for parameter in model.parameters():  # away from initial biases of zero and unit norms
        parameter.data += 0.2 * torch.randn_like(parameter)
    return model


@pytest.fixture(scope="module")
def prompts():
    generator = torch.Generator().manual_seed(0)
    clean = torch.randint(11, (5, 7), generator=generator)
    corrupted = torch.randint(11, (5, 7), generator=generator)
    return clean, corrupted


_LAST = torch.zeros(5, 7, dtype=torch.bool)
_LAST[:, -1] = True
"""Read the logits at the last position (a class's default for token ids is elsewhere: the
positions followed by that token)."""


def _edges(graph, keep):
    return torch.tensor([[1.0 if keep(u, v) else 0.0 for u, v in graph.edges]])


def test_every_edge_kept_is_the_clean_model_and_none_the_corrupted_one(gpt, prompts):
    clean, corrupted = prompts
    graph = StreamGraph(gpt, clean)
    reference = graph.reference(corrupted)
    keep = torch.stack([torch.ones(len(graph.edges)), torch.zeros(len(graph.edges))])
    with torch.no_grad():
        outputs, _, _ = graph.run(clean, keep, reference)
        torch.testing.assert_close(outputs[0], gpt(clean), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(outputs[1], gpt(corrupted), atol=1e-5, rtol=1e-5)


def test_patching_every_edge_into_a_head_is_patching_the_head(gpt, prompts):
    """A node all of whose in-edges are patched computes its corrupted output: the graph agrees
    with the package's activation patching of that head (an independent implementation)."""
    from captum_groups import patch
    from captum_groups.transformers import hooked

    clean, corrupted = prompts
    graph = StreamGraph(gpt, clean)
    keep = _edges(graph, lambda u, v: not v.startswith("a1.h2."))
    with torch.no_grad():
        outputs, _, _ = graph.run(clean, keep, graph.reference(corrupted))
        model = hooked(gpt)
        with patch(model, NeuronGroup("blocks.1.attn.hook_z", [2], dim=2), source=corrupted):
            expected = model(clean)
    torch.testing.assert_close(outputs[0], expected, atol=1e-5, rtol=1e-5)


def _hand_written_eap(model: TinyGPT, clean, corrupted, target):
    """EAP written out for the two blocks: each head's output from its own query, key and value
    inputs and each MLP's from its own input, the stream as their sum, the gradient at each
    input, times the clean - corrupted outputs."""
    blocks = model.blocks.layers
    heads, width = blocks[0].self_attn.num_heads, blocks[0].self_attn.embed_dim
    d_head = width // heads
    length = clean.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool).tril()

    def head_out(block, h, x_q, x_k, x_v):
        w_q, w_k, w_v = block.self_attn.in_proj_weight.chunk(3)
        b_q, b_k, b_v = block.self_attn.in_proj_bias.chunk(3)
        rows = slice(h * d_head, (h + 1) * d_head)
        q = block.norm1(x_q) @ w_q[rows].T + b_q[rows]
        k = block.norm1(x_k) @ w_k[rows].T + b_k[rows]
        v = block.norm1(x_v) @ w_v[rows].T + b_v[rows]
        scores = (q @ k.transpose(1, 2)) / d_head**0.5
        pattern = scores.masked_fill(~causal, float("-inf")).softmax(-1)
        return (pattern @ v) @ block.self_attn.out_proj.weight[:, rows].T

    def mlp_out(block, x):
        return block.linear2(F.relu(block.linear1(block.norm2(x)))) - block.linear2.bias

    def run(tokens):
        """Outputs of every node, and each receiver's input (its own copy when asked)."""
        embed = model.embed(tokens) + model.positions[:length]
        outputs, inputs, reads = {"embed": embed}, {}, {}
        biases = torch.zeros(width)

        def stream(receiver, upstream):
            value = sum(outputs[u] for u in upstream) + biases
            inputs[receiver], reads[receiver] = value, upstream
            return value

        for layer, block in enumerate(blocks):
            upstream = list(outputs)
            for h in range(heads):
                x_q, x_k, x_v = (stream(f"a{layer}.h{h}.{r}", upstream) for r in "qkv")
                outputs[f"a{layer}.h{h}"] = head_out(block, h, x_q, x_k, x_v)
            biases = biases + block.self_attn.out_proj.bias
            upstream = list(outputs)
            outputs[f"m{layer}"] = mlp_out(block, stream(f"m{layer}", upstream))
            biases = biases + block.linear2.bias
        final = stream("target", list(outputs))
        logits = model.unembed(model.norm(final))[:, -1]
        return logits[:, target] - logits.mean(-1), outputs, inputs, reads

    with torch.no_grad():
        _, corrupted_out, _, _ = run(corrupted)
        _, clean_out, _, _ = run(clean)
    metric, _, inputs, reads = run(clean)
    receivers = list(inputs)
    found = torch.autograd.grad(metric.mean(), [inputs[r] for r in receivers])
    gradients = dict(zip(receivers, found, strict=True))
    return {
        (u, v): ((clean_out[u] - corrupted_out[u]) * gradients[v]).sum().item()
        for v in receivers
        for u in reads[v]
    }


def test_eap_equals_a_hand_written_eap_on_a_two_layer_model(gpt, prompts):
    clean, corrupted = prompts
    graph = StreamGraph(gpt, clean)
    metric = metric_of(4, clean, _LAST)
    scores = eap_scores(graph, clean, graph.reference(corrupted), metric, n_steps=1)
    expected = _hand_written_eap(gpt, clean, corrupted, target=4)
    assert set(expected) == set(graph.edges)
    for edge, score in zip(graph.edges, scores.tolist(), strict=True):
        assert score == pytest.approx(expected[edge], abs=1e-6), edge


def test_integrated_gradients_of_the_edges_sum_to_the_metric_difference(gpt, prompts):
    """Completeness: every path from the embedding starts with one of its edges, so their
    EAP-IG scores add up to m(clean) - m(corrupted), up to the quadrature's error (the MLPs'
    ReLU kinks: 0.3% with 256 trapezoids)."""
    clean, corrupted = prompts
    graph = StreamGraph(gpt, clean)
    reference = graph.reference(corrupted)
    metric = metric_of(4, clean, _LAST)
    scores = eap_scores(graph, clean, reference, metric, n_steps=256, method="riemann_trapezoid",
                        path="inputs")  # fmt: skip
    first = [i for i, (u, _) in enumerate(graph.edges) if u == "embed"]
    ends = torch.stack([torch.ones(len(graph.edges)), torch.zeros(len(graph.edges))])
    with torch.no_grad():
        high, low = metric(graph.run(clean, ends, reference)[0]).tolist()
    assert scores[first].sum().item() == pytest.approx(high - low, rel=5e-3)


def test_each_nodes_edges_sum_to_the_drop_when_the_node_is_patched(gpt, prompts):
    """Completeness on the activations path: a node's output goes from corrupted to clean
    on its own, and every use of it downstream is one of its edges, so their scores add up
    to m(clean) - m(the node patched), measured here by patching all its edges (up to the
    quadrature's error: 0.5% with 256 trapezoids)."""
    clean, corrupted = prompts
    graph = StreamGraph(gpt, clean)
    reference = graph.reference(corrupted)
    metric = metric_of(4, clean, _LAST)
    scores = eap_scores(graph, clean, reference, metric, n_steps=256, method="riemann_trapezoid",
                        steps_per_pass=128)  # fmt: skip
    sources = list(dict.fromkeys(u for u, _ in graph.edges))
    patched = torch.stack([_edges(graph, lambda u, v, s=s: u != s)[0] for s in sources])
    with torch.no_grad():
        whole = metric(gpt(clean)[None])
        drops = whole - metric(graph.run(clean, patched, reference)[0])
    for source, drop in zip(sources, drops.tolist(), strict=True):
        own = [i for i, (u, _) in enumerate(graph.edges) if u == source]
        assert scores[own].sum().item() == pytest.approx(drop, rel=1e-2, abs=1e-4), source
    assert drops.abs().max() > 0.1  # the identity is not met by nodes that do nothing


def test_exact_scores_are_the_drop_when_one_edge_is_patched(gpt, prompts):
    clean, corrupted = prompts
    graph = StreamGraph(gpt, clean)
    reference = graph.reference(corrupted)
    metric = metric_of(4, clean, _LAST)
    exact = exact_scores(graph, clean, reference, metric)
    index = graph.edge_index[("a0.h1", "m0")]
    with torch.no_grad():
        patched = metric(graph.run(clean, _edges(graph, lambda u, v: (u, v) != ("a0.h1", "m0")),
                                   reference)[0])  # fmt: skip
        whole = metric(gpt(clean)[None])
    assert exact[index].item() == pytest.approx((whole - patched).item(), abs=1e-5)


def test_groups_of_heads_and_mlp_neurons_are_nodes(gpt, prompts):
    clean, corrupted = prompts
    groups = [
        NeuronGroup("blocks.1.attn.hook_z", [0, 3], dim=2, name="pair"),
        NeuronGroup("blocks.0.mlp.hook_post", range(10), dim=-1),
    ]
    graph = StreamGraph(gpt, clean, groups)
    ids = [n.id for n in graph.nodes]
    assert ids == ["embed", "a0.h0", "a0.h1", "a0.h2", "a0.h3", "m0.g0", "m0.rest",
                   "pair", "a1.h1", "a1.h2", "m1"]  # fmt: skip
    assert "pair.k" in graph.receivers and ("m0.rest", "pair.k") in graph.edge_index
    keep = torch.ones(1, len(graph.edges))
    with torch.no_grad():
        outputs, _, _ = graph.run(clean, keep, graph.reference(corrupted))
    torch.testing.assert_close(outputs[0], gpt(clean), atol=1e-5, rtol=1e-5)


def test_recovered_is_one_for_the_whole_graph_and_zero_for_none(gpt, prompts):
    clean, corrupted = prompts
    graph = StreamGraph(gpt, clean)
    keep = torch.stack([torch.ones(len(graph.edges)), torch.zeros(len(graph.edges))])
    fractions = recovered(
        graph, clean, graph.reference(corrupted), metric_of(4, clean, _LAST), keep
    )
    torch.testing.assert_close(fractions, torch.tensor([1.0, 0.0]), atol=1e-4, rtol=0)


def test_the_model_is_left_as_it_was(gpt, prompts):
    clean, corrupted = prompts
    before = model_state(gpt)
    graph = StreamGraph(gpt, clean)
    eap_scores(graph, clean, graph.reference(corrupted), metric_of(4, clean, _LAST), n_steps=2)
    assert_same_state(before, model_state(gpt))
    assert all(p.grad is None for p in gpt.parameters())


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ([NeuronGroup("blocks.0.hook_resid_pre", [0], dim=-1)], "groups\\[0\\] is a group of"),
        (
            [
                NeuronGroup("blocks.0.attn.hook_z", [0, 1], dim=2),
                NeuronGroup("blocks.0.attn.hook_z", [1], dim=2),
            ],
            "overlap",
        ),  # fmt: skip
        ([NeuronGroup("blocks.0.attn.hook_z", [9], dim=2)], "selects unit 9"),
    ],
)
def test_bad_groups_are_refused_by_name(gpt, prompts, groups, message):
    with pytest.raises(ParameterError, match=message):
        StreamGraph(gpt, prompts[0], groups)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_steps": 0}, "n_steps must be a positive int"),
        ({"n_steps": 2.5}, "n_steps must be a positive int"),
        ({"method": "simpson"}, "method must be one of"),
        ({"steps_per_pass": 0}, "steps_per_pass must be a positive int"),
    ],
)
def test_bad_integration_settings_are_refused_by_name(gpt, prompts, options, message):
    clean, corrupted = prompts
    graph = StreamGraph(gpt, clean)
    with pytest.raises(ParameterError, match=message):
        eap_scores(graph, clean, graph.reference(corrupted), metric_of(4, clean, _LAST), **options)


def test_an_unknown_integration_path_is_refused_by_name(gpt, prompts):
    clean, corrupted = prompts
    graph = StreamGraph(gpt, clean)
    with pytest.raises(ParameterError, match="path must be one of \\['activations', 'inputs'\\]"):
        eap_scores(graph, clean, graph.reference(corrupted), metric_of(4, clean, _LAST),
                   path="embedding")  # fmt: skip
    with pytest.raises(ParameterError, match="eap_path"):
        CircuitSettings(eap_path="embedding")


def test_post_norm_and_bare_attention_are_refused_by_name():
    post = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True), 2,
        enable_nested_tensor=False,
    ).eval()  # fmt: skip
    with pytest.raises(ParameterError, match="post-norm"):
        StreamGraph(post, torch.randn(2, 3, 8))
    bare = nn.MultiheadAttention(8, 2, batch_first=True)
    with pytest.raises(ParameterError, match="bare nn.MultiheadAttention"):
        StreamGraph(_Bare(bare), torch.randn(2, 3, 8))


class _Bare(nn.Module):
    def __init__(self, attention: nn.MultiheadAttention) -> None:
        super().__init__()
        self.attention = attention

    def forward(self, x):
        return self.attention(x, x, x)[0]


def test_bad_metrics_are_refused_by_name(prompts):
    clean, _ = prompts
    with pytest.raises(ParameterError, match="target"):
        metric_of(-1, clean)
    with pytest.raises(ParameterError, match="target 'next_token' reads token ids"):
        metric_of("next_token", torch.randn(3, 4, 5))
    with pytest.raises(ParameterError, match="positions must be boolean"):
        metric_of("next_token", clean, positions=torch.ones(5, 7))
    with pytest.raises(ParameterError, match="positions selects no position"):
        metric_of("next_token", clean, positions=torch.zeros(5, 7, dtype=torch.bool))


def test_a_class_of_a_language_model_is_read_where_the_next_token_is_it(prompts):
    clean, _ = prompts
    logits = torch.randn(1, 5, 7, 11)
    followed = torch.zeros(5, 7, dtype=torch.bool)
    followed[:, :-1] = clean[:, 1:] == 4
    above = logits[0, ..., 4] - logits[0].mean(-1)
    expected = above[followed].mean()
    torch.testing.assert_close(metric_of(4, clean)(logits)[0], expected)


def test_scores_and_faithfulness_do_not_depend_on_the_examples_per_pass(gpt, prompts):
    from captum_groups.circuits.stream_groups import neuron_scores

    clean, corrupted = prompts
    found = []
    half = (torch.rand(110, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    for per_pass in (2, 5):
        graph = StreamGraph(gpt, clean, examples_per_pass=per_pass)
        reference = graph.reference(corrupted)
        metric = metric_of(4, clean, _LAST)
        found.append((
            eap_scores(graph, clean, reference, metric, n_steps=3),
            eap_scores(graph, clean, reference, metric, n_steps=3, path="inputs"),
            exact_scores(graph, clean, reference, metric),
            recovered(graph, clean, reference, metric, half[None]),
            neuron_scores(graph, clean, reference, metric, n_steps=2)[0][1],
        ))  # fmt: skip
    for one, other in zip(*found, strict=True):
        torch.testing.assert_close(one, other, atol=1e-5, rtol=1e-4)
