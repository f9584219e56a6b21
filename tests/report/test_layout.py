"""The layered drawing: every node gets a place, whatever its edges weigh."""

from __future__ import annotations

import json

import pytest
import torch

from captum_groups import Circuit, NeuronGroup, ParameterError, build_circuit
from captum_groups.datasets import digits_cnn, load_digits
from captum_groups.report import layered_layout, write_report


def _circuit_with_silent_nodes() -> Circuit:
    """Four groups of relu3: one feeds the target, one feeds it with weight 0 (a dead
    group), one has no edge at all, one feeds the target negatively."""
    nodes = {
        "live": NeuronGroup("relu3", [0, 1], name="live"),
        "dead": NeuronGroup("relu3", [2, 3], name="dead"),
        "alone": NeuronGroup("relu3", [4, 5], name="alone"),
        "against": NeuronGroup("relu3", [6], name="against"),
    }
    edges = {("live", "target"): 0.7, ("dead", "target"): 0.0, ("against", "target"): -0.3}
    return Circuit(3, ["relu3"], nodes, edges)


def test_nodes_without_edges_or_with_zero_weight_edges_get_a_place_like_any_other():
    drawing = layered_layout(_circuit_with_silent_nodes())
    placed = {shape.node: (shape.x, shape.y) for shape in drawing.nodes}
    assert set(placed) == {"target", "live", "dead", "alone", "against"}
    row = [placed[n] for n in ("live", "dead", "alone", "against")]
    assert len({y for _, y in row}) == 1  # one row: the layer
    assert len({x for x, _ in row}) == 4  # four distinct places
    assert len(drawing.edges) == 3


def test_a_circuit_json_with_zero_weight_edges_reports_without_error(tmp_path):
    circuit = Circuit.from_json(_circuit_with_silent_nodes().to_json())
    assert json.loads(circuit.to_json())["edges"]
    x, _ = load_digits("test")
    files = write_report(
        digits_cnn(), circuit, x[:60], tmp_path, render_steps=0, n_draws=2, progress=False
    )
    html = files.html.read_text(encoding="utf-8")
    assert all(f'data-node="{node}"' in html for node in ("live", "dead", "alone", "against"))


def test_a_cnn_circuit_with_a_dead_layer_reports_without_error(tmp_path):
    """relu2 outputs 0 everywhere: every edge from it weighs 0, and its groups still get a
    place in the drawing and a card in the report."""
    model = digits_cnn()
    with torch.no_grad():
        model.conv2.bias.fill_(-1e3)
    x, _ = load_digits("test")
    circuit = build_circuit(
        model, ["relu2", "relu3"], 9, x, tau=4, k=10, n_groups=2, n_steps=8, progress=False
    )
    from_dead = {edge: w for edge, w in circuit.edges.items() if edge[0].startswith("relu2")}
    assert from_dead and all(w == 0 for w in from_dead.values())
    files = write_report(model, circuit, x[:60], tmp_path, render_steps=0, n_draws=2,
                         progress=False)  # fmt: skip
    html = files.html.read_text(encoding="utf-8")
    assert all(f'data-node="{node}"' in html for node in circuit.nodes)


def test_a_report_of_a_class_no_image_is_predicted_as_gives_the_advice_that_fits(tmp_path):
    model, (x, _) = digits_cnn(), load_digits("test")
    every = build_circuit(model, ["relu3"], 3, x, tau=4, k=10, n_groups=2, n_steps=8,
                          predicted_only=False, progress=False)  # fmt: skip
    with torch.no_grad():
        threes = model(x).argmax(1) == 3
    no_three = x.clone()
    no_three[threes] = x[~threes][0]  # same indices, but no image the model calls 3
    with pytest.raises(ParameterError, match="no image to measure the circuit's fidelity on"):
        write_report(model, every, no_three, tmp_path, render_steps=0, progress=False)
    predicted = every.replace(settings=every.settings.replace(predicted_only=True))
    with pytest.raises(ParameterError, match="--no-predicted-only"):
        write_report(model, predicted, no_three, tmp_path, render_steps=0, progress=False)
