"""Circuits: a planted circuit recovered, the data structure, fidelity on the digits CNN."""

from __future__ import annotations

import json

import matplotlib
import networkx as nx
import pytest
from sklearn.metrics import adjusted_rand_score

from captum_groups import Circuit, NeuronGroup, build_circuit
from captum_groups.circuits import TARGET, edge_fidelity, masking_fidelity, sufficiency

from .._helpers import PlantedCircuit, assert_same_state, model_state, planted_images

matplotlib.use("Agg")


def _labels_of(circuit: Circuit, layer: str, neurons: list[int]) -> list[int]:
    label = {}
    for g, node in enumerate(circuit.node_ids(layer)):
        for neuron in circuit.nodes[node].indices:
            label.setdefault(neuron, g)
    return [label[n] for n in neurons]


@pytest.fixture(scope="module")
def planted():
    model, images = PlantedCircuit().eval(), planted_images()
    circuit = build_circuit(
        model, ["relu_a", "relu_b"], 0, images, tau=6, k=30, n_groups=2, n_steps=24, progress=False
    )
    return model, images, circuit


def test_planted_circuit_is_recovered(planted):
    _, _, circuit = planted
    kept_b = sorted({i for node in circuit.node_ids("relu_b") for i in circuit.nodes[node].indices})
    kept_a = sorted({i for node in circuit.node_ids("relu_a") for i in circuit.nodes[node].indices})
    assert kept_b == [0, 1, 2, 3, 4, 5], "the distractors 6, 7 of layer b must be left out"
    assert kept_a == [0, 1, 2, 3, 4, 5], "the distractors 6-11 of layer a must be left out"
    planted_groups = [0, 0, 0, 1, 1, 1]
    assert adjusted_rand_score(planted_groups, _labels_of(circuit, "relu_b", kept_b)) >= 0.9
    assert adjusted_rand_score(planted_groups, _labels_of(circuit, "relu_a", kept_a)) >= 0.9
    # the true edges (A0 -> B0, A1 -> B1) carry the largest weights into each upper group
    for upper in circuit.node_ids("relu_b"):
        incoming = circuit.in_edges(upper)
        strongest = max(incoming, key=lambda lower: abs(incoming[lower]))
        same_block = set(circuit.nodes[upper].indices) <= {0, 1, 2}
        assert set(circuit.nodes[strongest].indices) <= ({0, 1, 2} if same_block else {3, 4, 5})
        weakest = min(abs(w) for w in incoming.values())
        assert abs(incoming[strongest]) > 10 * weakest
    # B0 (weight 2 into class 0) carries more of the target than B1 (weight 1)
    into_target = circuit.in_edges(TARGET)
    b0 = next(n for n in into_target if set(circuit.nodes[n].indices) <= {0, 1, 2})
    b1 = next(n for n in into_target if set(circuit.nodes[n].indices) <= {3, 4, 5})
    assert into_target[b0] > into_target[b1] > 0


def test_planted_circuit_fidelity(planted):
    model, images, circuit = planted
    class0 = images[model(images).argmax(1) == 0]
    masked = masking_fidelity(model, circuit, class0, n_draws=20, random_state=0)
    assert masked["all layers"].circuit == 0.0
    assert masked["all layers"].random_mean > 0.2
    kept = sufficiency(model, circuit, class0, n_draws=20, random_state=0)
    assert kept.circuit == 1.0 and kept.random_mean < kept.circuit
    assert edge_fidelity(model, circuit, class0, sizes=(1, 2, 3, 5), random_state=0).pearson < -0.8


def test_same_seed_same_circuit(planted):
    model, images, circuit = planted
    again = build_circuit(
        model, ["relu_a", "relu_b"], 0, images, tau=6, k=30, n_groups=2, n_steps=24, progress=False
    )
    assert again == circuit


def test_json_round_trip_networkx_and_plot(planted, tmp_path):
    _, images, circuit = planted
    text = circuit.to_json()
    assert "pickle" not in text and json.loads(text)["format"] == "captum-groups circuit"
    loaded = Circuit.from_json(text)
    assert loaded == circuit
    assert all(loaded.edges[e] == w for e, w in circuit.edges.items())  # floats bit-exact
    graph = circuit.to_networkx()
    assert isinstance(graph, nx.DiGraph)
    assert graph.number_of_edges() == len(circuit.edges)
    for (lower, upper), weight in circuit.edges.items():
        assert graph.edges[lower, upper]["weight"] == weight
    assert graph.nodes[circuit.node_ids("relu_b")[0]]["layer"] == "relu_b"
    path = tmp_path / "circuit.png"
    circuit.plot(images).savefig(path)
    assert path.stat().st_size > 10_000


def test_circuit_queries_by_hand():
    nodes = {
        "a0": NeuronGroup("l1", [0, 1], name="a0"),
        "a1": NeuronGroup("l1", [2], name="a1"),
        "b0": NeuronGroup("l2", [5], name="b0"),
        "b1": NeuronGroup("l2", [6, 7], name="b1"),
    }
    edges = {
        ("a0", "b0"): 2.0,
        ("a1", "b0"): -0.5,
        ("a1", "b1"): 3.0,
        ("b0", TARGET): 1.0,
        ("b1", TARGET): 0.1,
    }
    circuit = Circuit(7, ["l1", "l2"], nodes, edges, params={"by": "hand"})
    assert circuit.in_edges("b0") == {"a0": 2.0, "a1": -0.5}
    assert circuit.out_edges("a1") == {"b0": -0.5, "b1": 3.0}
    # path strengths: a0-b0: 2*1 = 2; a1-b1: 3*0.1 = 0.3; a1-b0: -0.5*1 = -0.5
    assert circuit.top_paths(3, "l1") == [
        ([TARGET, "b0", "a0"], 2.0),
        ([TARGET, "b0", "a1"], -0.5),
        ([TARGET, "b1", "a1"], 0.3),
    ]
    assert set(circuit.subcircuit("b0").nodes) == {"b0", "a0", "a1"}
    pruned = circuit.prune(min_weight=0.6)
    assert set(pruned.edges) == {("a0", "b0"), ("b0", TARGET), ("a1", "b1")} - {("a1", "b1")}
    assert set(pruned.nodes) == {"a0", "b0"}
    top1 = circuit.prune(n=1)
    assert set(top1.edges) == {("a0", "b0"), ("b0", TARGET)}
    assert circuit.groups("l2")[1].indices == (6, 7)
    with pytest.raises(ValueError, match="lower to an upper layer"):
        Circuit(7, ["l1", "l2"], nodes, {("b0", "a0"): 1.0})
    with pytest.raises(ValueError, match="unknown node"):
        Circuit(7, ["l1", "l2"], nodes, {("zz", TARGET): 1.0})


def test_circuits_of_all_digit_classes_are_faithful():
    """For every class: masking the circuit's top-layer neurons hurts far more, and keeping
    only the circuit hurts far less, than doing so with as many random neurons."""
    from captum_groups.datasets import digits_cnn, load_digits

    model = digits_cnn()
    images, labels = load_digits("all")
    for digit in range(10):
        circuit = build_circuit(
            model,
            ["relu2", "relu3"],
            digit,
            images,
            tau=6,
            k=20,
            n_groups=3,
            scales=(1.0,),
            n_steps=16,
            progress=False,
        )
        class_images = images[labels == digit]
        masked = masking_fidelity(model, circuit, class_images, n_draws=10, random_state=0)
        kept = sufficiency(model, circuit, class_images, n_draws=10, random_state=0)
        top, every = masked["relu3"], masked["all layers"]
        circuit_drop, random_drop = top.baseline - top.circuit, top.baseline - top.random_mean
        assert circuit_drop >= max(0.2, 5 * random_drop), (digit, top)
        assert every.circuit <= every.random_mean - 0.15, (digit, every)
        assert kept.circuit >= kept.random_mean + 0.5, (digit, kept)


def test_build_circuit_leaves_the_model_untouched_and_checks_input(digits_model, digits_test):
    x = digits_test[0]
    before = model_state(digits_model)
    build_circuit(
        digits_model,
        ["relu3"],
        1,
        x,
        tau=4,
        k=10,
        n_groups=2,
        scales=(1.0,),
        n_steps=8,
        progress=False,
    )
    assert_same_state(before, model_state(digits_model))
    kwargs = {"k": 10, "scales": (1.0,), "n_steps": 4, "progress": False}
    with pytest.raises(ValueError, match="forward order"):
        build_circuit(digits_model, ["relu3", "relu2"], 1, x, **kwargs)
    with pytest.raises(ValueError, match="'conv9' is not a submodule"):
        build_circuit(digits_model, ["conv9"], 1, x, **kwargs)
    with pytest.raises(ValueError, match="tau=100 is larger than layer 'relu3'"):
        build_circuit(digits_model, ["relu3"], 1, x, tau=100, **kwargs)
    with pytest.raises(ValueError, match="target class 12 is out of range for 10 outputs"):
        build_circuit(digits_model, ["relu3"], 12, x, **kwargs)
    assert_same_state(before, model_state(digits_model))


def test_labels_and_their_details_round_trip_and_are_checked(tmp_path):
    nodes = {"a": NeuronGroup("l1", [0, 1], name="a"), "b": NeuronGroup("l2", [3], name="b")}
    circuit = Circuit(2, ["l1", "l2"], nodes, {("a", "b"): 1.0, ("b", TARGET): 0.5})
    details = {"a": {"score": 0.75, "labeler": "hand", "evidence": {"counts": (3, 4)}}}
    labelled = circuit.relabel({"a": "loops", "b": "bars"}, details)
    assert circuit.nodes["a"].label is None, "relabel returns a copy"
    assert labelled.nodes["a"].label == "loops" and labelled.nodes["b"].label == "bars"
    assert labelled.label_details["a"]["evidence"] == {"counts": [3, 4]}  # JSON values
    loaded = Circuit.from_json(labelled.to_json())
    assert loaded == labelled and loaded.nodes["b"].label == "bars"
    assert labelled.to_networkx().nodes["a"]["label_score"] == 0.75
    assert labelled.subcircuit("b").label_details == labelled.label_details
    unlabelled = labelled.relabel({"a": None})
    assert unlabelled.nodes["a"].label is None and "a" not in unlabelled.label_details
    with pytest.raises(ValueError, match="unknown node 'zz'"):
        circuit.relabel({"zz": "x"})
    with pytest.raises(ValueError, match=r"label_details\['a'\]\['score'\] must be a finite"):
        circuit.relabel({"a": "x"}, {"a": {"score": float("nan")}})
    with pytest.raises(ValueError, match=r"label_details\['a'\] must hold JSON values"):
        circuit.relabel({"a": "x"}, {"a": {"evidence": {"model": object()}}})
    with pytest.raises(ValueError, match="keys among"):
        circuit.relabel({"a": "x"}, {"a": {"colour": "red"}})
