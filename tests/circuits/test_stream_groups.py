"""MLP neurons grouped NeurFlow's way as nodes of a circuit through the stream: the neuron
scores equal attribution patching computed on the plain model, the groups are the core
neurons without overlap, and the circuit with them computes the model."""

from __future__ import annotations

import pytest
import torch

from captum_groups import NeuronGroup, ParameterError, build_stream_circuit
from captum_groups.circuits import CircuitSettings, StreamGraph, metric_of
from captum_groups.circuits.stream_groups import mlp_groups, neuron_scores
from captum_groups.induction import induction_prompts, tiny_gpt
from captum_groups.transformers import hooked


@pytest.fixture(scope="module")
def setting():
    model = tiny_gpt()
    clean, corrupted, copyable = induction_prompts(24, random_state=3)
    graph = StreamGraph(model, clean)
    return model, clean, corrupted, graph, graph.reference(corrupted), \
        metric_of("next_token", clean, copyable)  # fmt: skip


def _plain_attribution_patching(model, clean, corrupted, metric):
    """(post(clean) - post(corrupted)) . d metric / d post at the clean run, with hooks on
    the plain hooked model."""
    wrapped = hooked(model)
    points = [wrapped.get_submodule(f"blocks.{b}.mlp.hook_post") for b in range(2)]
    kept = []
    handles = [p.register_forward_hook(lambda _m, _a, out: kept.append(out)) for p in points]
    try:
        with torch.no_grad():
            wrapped(corrupted)
        corrupted_post = kept[:2]
        kept.clear()
        value = metric(wrapped(clean)[None]).sum()
        gradients = torch.autograd.grad(value, kept)
    finally:
        for handle in handles:
            handle.remove()
    return [((kept[b] - corrupted_post[b]) * gradients[b]).flatten(0, -2).sum(0).detach()
            for b in range(2)]  # fmt: skip


def test_one_step_scores_are_attribution_patching_on_the_plain_model(setting):
    model, clean, corrupted, graph, reference, metric = setting
    scores, _ = neuron_scores(graph, clean, reference, metric, n_steps=1)
    expected = _plain_attribution_patching(model, clean, corrupted, metric)
    for block in range(2):
        torch.testing.assert_close(scores[block], expected[block], atol=1e-5, rtol=1e-4)


def test_groups_are_the_core_neurons_without_overlap(setting):
    _, clean, _, graph, reference, metric = setting
    groups = mlp_groups(graph, clean, reference, metric, tau=10, k=20, n_groups=3)
    scores, _ = neuron_scores(graph, clean, reference, metric)
    for block in range(2):
        layer = [g for g in groups if g.layer == f"blocks.{block}.mlp.hook_post"]
        members = [i for g in layer for i in g.indices]
        assert len(layer) == 3 and len(members) == len(set(members)) == 10
        assert set(members) == set(scores[block].abs().argsort(descending=True)[:10].tolist())


def test_a_circuit_with_neurflow_groups_computes_the_model(setting):
    model, clean, corrupted, _, _, _ = setting
    circuit = build_stream_circuit(
        model, clean, "next_token", corrupted, mlp_groups="neurflow",
        tau=8, k=20, n_groups=2, eap_steps=3, progress=False,
    )  # fmt: skip
    nodes = set(circuit.nodes)
    assert {"m0.g0", "m0.g1", "m0.rest", "m1.g0", "m1.g1", "m1.rest"} <= nodes
    assert len(circuit.nodes["m0.rest"]) == 128 - 8
    assert circuit.settings.mlp_groups == "neurflow"
    with pytest.raises(ParameterError, match="mlp_groups='neurflow'"):
        build_stream_circuit(model, clean, "next_token", corrupted, groups="neurflow",
                             progress=False)  # fmt: skip
    with pytest.raises(ParameterError, match="groups holds MLP groups"):
        build_stream_circuit(model, clean, "next_token", corrupted, mlp_groups="neurflow",
                             groups=[NeuronGroup("blocks.0.mlp.hook_post", [0], dim=-1)],
                             progress=False)  # fmt: skip
    with pytest.raises(ParameterError, match="mlp_groups"):
        CircuitSettings(mlp_groups="kmeans")


def test_neurflow_mlp_groups_go_with_head_groups(setting):
    model, clean, corrupted, _, _, _ = setting
    pair = NeuronGroup("blocks.1.attn.hook_z", [0, 3], dim=2, name="pair")
    circuit = build_stream_circuit(
        model, clean, "next_token", corrupted, groups=[pair], mlp_groups="neurflow",
        tau=4, k=10, n_groups=2, eap_steps=1, progress=False,
    )  # fmt: skip
    assert {"pair", "pair.k", "a1.h1", "m0.g1", "m1.rest"} <= set(circuit.nodes)
    assert "a1.h0" not in circuit.nodes
