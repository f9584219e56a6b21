"""Circuits through the stream on the shipped models: the tiny GPT's induction circuit and a
digit class of the tiny ViT, faithful against random circuits, EAP-IG against exact patching."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import spearmanr

from captum_groups import ParameterError, layer_activations
from captum_groups.circuits import Circuit, build_stream_circuit, faithfulness_curve
from captum_groups.circuits.corruption import corrupt
from captum_groups.circuits.edge_scores import exact_scores, metric_of
from captum_groups.circuits.stream import StreamGraph
from captum_groups.datasets import load_digits
from captum_groups.digits_vit import digits_vit
from captum_groups.induction import HEADS, induction_prompts, tiny_gpt
from captum_groups.transformers import hooked


@pytest.fixture(scope="module")
def induction():
    model = tiny_gpt()
    clean, corrupted, copyable = induction_prompts(100, random_state=7)
    # EAP-IG with its defaults: each node's output interpolated, five Gauss-Legendre steps
    circuit = build_stream_circuit(model, clean, "next_token", corrupted, positions=copyable,
                                   progress=False)  # fmt: skip
    return model, clean, corrupted, copyable, circuit


def _attention_scores(model, clean, copyable):
    """Each layer-1 head's induction score (attention from a copyable token to the token
    after its first occurrence) and each layer-0 head's previous-token score."""
    patterns = [layer_activations(hooked(model), f"blocks.{b}.attn.hook_pattern", clean)
                for b in range(2)]  # fmt: skip
    induction = []
    for row in range(len(clean)):
        positions = copyable[row, :-1].nonzero()[:, 0]
        size = len(positions) + 1
        induction.append(patterns[1][row, :, positions, positions - size + 1].mean(-1))
    previous = patterns[0].diagonal(offset=-1, dim1=2, dim2=3).mean((0, 2))
    return torch.stack(induction).mean(0), previous


def test_the_induction_circuit_holds_the_induction_heads_and_the_heads_they_read_from(induction):
    model, clean, corrupted, copyable, circuit = induction
    curve = faithfulness_curve(model, circuit, clean, corrupted, positions=copyable,
                               sizes=[20, 40, 55, 70], n_random=20, random_state=0)  # fmt: skip
    size = curve.smallest(0.8)
    assert size is not None and size <= 55  # of 110 edges through the stream (measured: 55)
    stream = [edge for edge in circuit.edges if not edge[0].endswith((".q", ".k", ".v"))]
    kept = sorted(stream, key=lambda e: -abs(circuit.edges[e]))[:size]
    induction_scores, previous_scores = _attention_scores(model, clean, copyable)
    # this model spreads both steps over all its heads (measured: every layer-1 head an
    # induction head, every layer-0 head attending a third of the time to the previous token)
    assert (induction_scores > 0.5).all() and (previous_scores > 0.3).all()
    assert {(f"a1.h{h}", "target") for h in range(HEADS)} <= set(kept)
    # the induction heads' keys read the previous tokens the layer-0 heads wrote, through
    # the layer-0 MLP (measured: m0 -> a1.hH.k for every head; a0.hH -> m0)
    assert {("m0", f"a1.h{h}.k") for h in range(HEADS)} <= set(kept)
    assert {u for u, v in kept if v == "m0"} & {f"a0.h{h}" for h in range(HEADS)}
    for point, recovered in enumerate(curve.recovered):
        assert recovered > curve.random_ci[point][1]  # above the random circuits' interval
    assert curve.random_mean[curve.sizes.index(size)] < 0.2


def test_eap_ig_ranks_the_edges_as_exact_patching_does(induction):
    model, clean, corrupted, copyable, circuit = induction
    graph = StreamGraph(model, clean)
    exact = exact_scores(graph, clean, graph.reference(corrupted),
                         metric_of("next_token", clean, copyable))  # fmt: skip
    scores = [circuit.edges[edge] for edge in graph.edges]
    assert spearmanr(scores, exact).statistic > 0.9  # measured: 0.964
    inputs = build_stream_circuit(
        model, clean, "next_token", corrupted, positions=copyable,
        eap_path="inputs", method="riemann_left", progress=False,
    )  # fmt: skip
    scores = [inputs.edges[edge] for edge in graph.edges]
    assert spearmanr(scores, exact).statistic > 0.75  # Hanna et al.'s EAP-IG-inputs: 0.815


@pytest.mark.slow
def test_with_neurflow_groups_of_mlp_neurons_a_tenth_of_the_edges_keeps_the_induction(induction):
    """The transformer-circuits issue's nodes: heads, and each MLP's core neurons grouped
    NeurFlow's way (the rest of its neurons one node)."""
    model, clean, corrupted, copyable, _ = induction
    circuit = build_stream_circuit(model, clean, "next_token", corrupted, positions=copyable,
                                   mlp_groups="neurflow", progress=False)  # fmt: skip
    stream = circuit.stream_edges()
    tenth = len(stream) // 10  # measured: 56 of 568 edges keep 0.89
    curve = faithfulness_curve(model, circuit, clean, corrupted, positions=copyable,
                               sizes=[tenth], n_random=20, random_state=0)  # fmt: skip
    assert curve.recovered[0] >= 0.8  # measured: 0.89
    assert curve.random_ci[0][1] < 0.2  # measured: mean 0.002 or less
    kept = sorted(stream, key=lambda e: -abs(circuit.edges[e]))[:tenth]
    assert {(f"a1.h{h}", "target") for h in range(HEADS)} <= set(kept)
    keys = {u for u, v in kept if v.startswith("a1.") and v.endswith(".k")}
    assert keys & {f"a0.h{h}" for h in range(HEADS)}  # K-composition, as on the whole MLPs


def test_a_digit_class_of_the_tiny_vit_has_a_circuit_above_random():
    model, (images, _) = digits_vit(), load_digits("test")
    circuit = build_stream_circuit(model, images, 3, progress=False, random_state=0)
    assert circuit.settings.corrupt == "resample" and circuit.params["examples"] > 20
    clean = images[model(images).argmax(1) == 3]
    corrupted = corrupt(clean, "resample", 0, pool=images[model(images).argmax(1) != 3])
    curve = faithfulness_curve(model, circuit, clean, corrupted, sizes=[20, 40, 60, 110],
                               n_random=20)  # fmt: skip
    assert curve.recovered[-1] == pytest.approx(1.0, abs=1e-4)
    for point in range(3):
        assert curve.recovered[point] > curve.random_ci[point][1]
    assert Circuit.from_json(circuit.to_json()) == circuit
    assert circuit.plot() is not None


def test_bad_requests_are_refused_by_name():
    model, (images, _) = digits_vit(), load_digits("test")
    with pytest.raises(ParameterError, match="corrupted must be a tensor like data"):
        build_stream_circuit(model, images[:8], 3, images[:4], progress=False)
    with pytest.raises(ParameterError, match="data holds NaN"):
        build_stream_circuit(model, images[:8] * float("nan"), 3, progress=False)
    with pytest.raises(ParameterError, match="corrupt='shuffle' reorders token ids"):
        build_stream_circuit(model, images[:40], 3, corrupt="shuffle", progress=False)
    with pytest.raises(ParameterError, match="no example of data is predicted as class 9"):
        build_stream_circuit(model, images[:1], 9, progress=False)
