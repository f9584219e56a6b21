"""Image debugging: a planted circuit read back from single images, scores, flows, digits flips."""

from __future__ import annotations

import math
import warnings

import matplotlib
import pytest
import torch
from captum.attr import LayerConductance
from matplotlib.figure import Figure
from torch import nn

from captum_groups import Circuit, NeuronGroup, ablate, build_circuit, debug_image
from captum_groups.circuits import TARGET, compare_classes, expression_score

from .._helpers import (
    A0,
    A1,
    B0,
    B1,
    PlantedCircuit,
    assert_same_state,
    model_state,
    planted_images,
)

matplotlib.use("Agg")


def _blob(factors: dict[int, tuple[int, int, int, float]]) -> torch.Tensor:
    """An image with square blobs: factor -> (top, left, side, intensity)."""
    image = torch.zeros(4, 8, 8)
    for factor, (top, left, side, value) in factors.items():
        image[factor, top : top + side, left : left + side] = value
    return image


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def planted():
    model, images = PlantedCircuit().eval(), planted_images()
    circuit = build_circuit(
        model, ["relu_a", "relu_b"], 0, images, tau=6, k=30, n_groups=2, n_steps=24, progress=False
    )
    node = {(group.layer, tuple(sorted(group.indices))): n for n, group in circuit.nodes.items()}
    planted_nodes = {
        "A0": node[("relu_a", A0)],
        "A1": node[("relu_a", A1)],
        "B0": node[("relu_b", B0)],
        "B1": node[("relu_b", B1)],
    }
    return model, images, circuit, planted_nodes


def test_an_image_with_a_planted_pattern_activates_exactly_its_groups(planted):
    model, _, circuit, nodes = planted
    cases = {
        "factor 0": (_blob({0: (2, 1, 4, 1.4)}), {"A0", "B0"}),
        "factor 1": (_blob({1: (0, 3, 4, 1.4)}), {"A1", "B1"}),
        "both": (_blob({0: (0, 0, 4, 1.4), 1: (4, 4, 4, 1.4)}), {"A0", "A1", "B0", "B1"}),
        "distractors only": (_blob({2: (0, 0, 4, 1.4), 3: (4, 4, 4, 1.4)}), set()),
    }
    for case, (image, expected) in cases.items():
        debug = debug_image(model, circuit, image, n_steps=16)
        assert set(debug.active) == {nodes[name] for name in expected}, case
        for name, node in nodes.items():
            row = debug.groups[node]
            if name in expected:
                assert row.score > 0.8 and row.coverage == 1.0, (case, name, row)
            else:
                assert row.score < 1e-3 and not row.crops, (case, name, row)
    # the crops that express A0 all overlap the blob (rows 2-5, columns 1-4)
    debug = debug_image(model, circuit, cases["factor 0"][0], n_steps=16)
    crops = debug.groups[nodes["A0"]].crops
    assert crops and all(
        top < 6 and top + h > 2 and left < 5 and left + w > 1 for (top, left, h, w), _ in crops
    )
    best_top, best_left, best_h, best_w = crops[0][0]
    assert 2 <= best_top and best_top + best_h <= 6 and 1 <= best_left and best_left + best_w <= 5


def test_debugging_a_fooling_image_names_the_planted_group(planted):
    """A class-1 image with a small patch of factor 0 is called class 0: the debug names B0
    (and A0 below it), and masking B0 gives the class-1 answer back."""
    model, _, circuit, nodes = planted
    honest = _blob({2: (0, 0, 3, 0.8)})
    fooling = _blob({2: (0, 0, 3, 0.8), 0: (5, 5, 2, 1.5)})
    with torch.no_grad():
        assert model(honest[None]).argmax().item() == 1
        assert model(fooling[None]).argmax().item() == 0
    debug = debug_image(model, circuit, fooling, versus=1, n_steps=16)
    assert debug.prediction == 0
    assert set(debug.active) == {nodes["A0"], nodes["B0"]}
    assert debug.top(1, layer="relu_b")[0].node == nodes["B0"]
    assert debug.top(1, layer="relu_a")[0].node == nodes["A0"]
    assert set(debug.active_path) == {(nodes["A0"], nodes["B0"]), (nodes["B0"], TARGET)}
    (box, _), *_ = debug.groups[nodes["B0"]].crops
    assert box[0] + box[2] > 5 and box[1] + box[3] > 5, "the expressing crop holds the patch"
    with torch.no_grad(), ablate(model, circuit.nodes[nodes["B0"]]):
        assert model(fooling[None]).argmax().item() == 1
    comparison = compare_classes(model, circuit, _class1_circuit(model), fooling, n_steps=16)
    which, row, push = comparison.separating()[0]
    assert (which, row.node) == ("A", nodes["B0"]) and push > 0


def _class1_circuit(model: nn.Module) -> Circuit:
    return build_circuit(
        model,
        ["relu_b"],
        1,
        planted_images(),
        tau=2,
        k=20,
        n_steps=16,
        progress=False,
    )


def test_flows_and_conductance_against_captum_and_the_planted_wiring(planted):
    model, _, circuit, nodes = planted
    image = _blob({0: (0, 0, 4, 1.2), 1: (3, 3, 5, 0.9), 2: (0, 4, 4, 1.0)})
    debug = debug_image(model, circuit, image, versus=1, n_steps=64)
    with torch.no_grad():
        logits = model(image[None])[0]
        zero = model(torch.zeros(1, 4, 8, 8))[0]
    assert debug.target_change == pytest.approx(float(logits[0] - zero[0]), rel=1e-5)
    for name in ("B0", "B1", "A0", "A1"):
        group = circuit.nodes[nodes[name]]
        layer = model.get_submodule(group.layer)
        captum = LayerConductance(model, layer)
        to_0, to_1 = (
            captum.attribute(image[None], target=t, n_steps=64)[0, list(group.indices)].sum().item()
            for t in (0, 1)
        )
        row = debug.groups[nodes[name]]
        assert row.conductance == pytest.approx(to_0, rel=1e-4, abs=1e-5)
        if name.startswith("B"):  # top layer: the contrast is the margin's conductance
            assert row.contrast == pytest.approx(to_0 - to_1, rel=1e-4, abs=1e-5)
    # A0 feeds only B0 and B0 reads only A0, so all of B0's flow runs through A0
    for lower, upper in (("A0", "B0"), ("A1", "B1")):
        assert debug.groups[nodes[lower]].flow == pytest.approx(
            debug.groups[nodes[upper]].flow, rel=1e-2
        )
        assert debug.edge_flows[(nodes[lower], nodes[upper])] == pytest.approx(
            debug.groups[nodes[lower]].flow
        )
    # B0 and B1 are all of class 0's input: their shares add up to the whole change
    assert debug.groups[nodes["B0"]].share + debug.groups[nodes["B1"]].share == pytest.approx(
        1.0, abs=1e-3
    )


def test_the_score_is_a_geometric_mean_and_an_and_over_neurons():
    typical = torch.tensor([2.0, 4.0, 1.0, 5.0])
    ratios = torch.tensor([0.5, 2.0, 1.0, 0.25])
    expected = math.prod(ratios.tolist()) ** (1 / 4)
    assert float(expression_score(ratios * typical, typical, eps=1e-12)) == pytest.approx(expected)
    # one silent neuron of n caps the score near eps ** (1 / n) (the documented table)
    for n, cap in ((2, 1e-3), (5, 0.063), (10, 0.251), (20, 0.501), (40, 0.708)):
        activations = torch.ones(n)
        activations[0] = 0.0
        score = float(expression_score(activations, torch.ones(n), eps=1e-6))
        assert score == pytest.approx(cap, rel=0.01), n
    assert float(expression_score(-torch.ones(3), torch.ones(3))) < 1e-5  # clamped at zero


def test_a_polysemantic_group_reads_low_but_its_value_ratio_does_not(planted):
    """A group of A0 and A1 (two concepts), on an image of one concept: the log barrier
    collapses (its A1 half is silent); value_ratio and coverage show the half that fires."""
    model, images, circuit, nodes = planted
    both = NeuronGroup("relu_a", [*A0, *A1], name="mixed")
    typical = list(circuit.typical_activations[nodes["A0"]])
    typical += list(circuit.typical_activations[nodes["A1"]])
    mixed = Circuit(
        0,
        ["relu_a"],
        {"mixed": both},
        {("mixed", TARGET): 1.0},
        None,
        None,
        None,
        {"mixed": typical},
    )
    debug = debug_image(model, mixed, _blob({0: (2, 2, 4, 1.4)}), n_steps=8)
    row = debug.groups["mixed"]
    assert row.score < 0.01 and not row.active
    assert row.coverage == pytest.approx(0.5)
    assert 0.3 < row.value_ratio < 0.8


def test_typical_activations_from_stored_exemplars(planted):
    """For a circuit without typical activations, they come from its stored exemplars:
    a uniform factor-0 image of value v gives neuron i of A0 exactly w_i * v."""
    model, _, _, _ = planted
    data = torch.zeros(3, 4, 8, 8)
    data[1, 0] = 0.7
    data[2, 0] = 1.3
    group = NeuronGroup("relu_a", list(A0), name="a0")
    circuit = Circuit(
        0,
        ["relu_a"],
        {"a0": group},
        {("a0", TARGET): 1.0},
        {"a0": [(1, (0, 0, 8, 8)), (2, (0, 0, 8, 8))]},
    )
    with pytest.raises(ValueError, match=r"\['a0'\] have no typical activations; pass data="):
        debug_image(model, circuit, data[1], n_steps=4)
    debug = debug_image(model, circuit, data[1], data=data, n_steps=4)
    weights = model.conv_a.weight[list(A0), 0, 0, 0].detach()
    expected = weights * 1.0  # mean of 0.7 and 1.3
    from captum_groups.circuits import typical_activations

    assert torch.allclose(typical_activations(circuit, model, data)["a0"], expected, atol=1e-6)
    assert debug.groups["a0"].image_score == pytest.approx(0.7, rel=1e-4)
    mixed = NeuronGroup("relu_a", [0, 3], name="mixed")  # neuron 3 is silent on factor 0
    silent = Circuit(0, ["relu_a"], {"mixed": mixed}, {}, {"mixed": circuit.exemplars["a0"]})
    with pytest.warns(UserWarning, match="node 'mixed' has member neurons whose typical"):
        debug_image(model, silent, data[1], data=data, n_steps=4)
    no_exemplars = Circuit(0, ["relu_a"], {"a0": group}, {("a0", TARGET): 1.0})
    with pytest.raises(ValueError, match="node 'a0' has no typical activations and no stored"):
        debug_image(model, no_exemplars, data[1], data=data, n_steps=4)


def test_debug_leaves_the_model_untouched_checks_input_and_plots(planted, tmp_path):
    model, images, circuit, nodes = planted
    before = model_state(model)
    image = _blob({0: (2, 1, 4, 1.4)})
    debug = debug_image(model, circuit, image[None], versus=2, n_steps=8)
    again = debug_image(
        model, circuit, image, versus=2, n_steps=8, baselines=torch.zeros(1, 4, 8, 8)
    )
    assert again.groups[nodes["B0"]].flow == pytest.approx(debug.groups[nodes["B0"]].flow)
    figure = debug.plot(images)
    assert isinstance(figure, Figure) and len(figure.axes) == 3  # two active groups + circuit
    figure.savefig(tmp_path / "debug.png")
    assert (tmp_path / "debug.png").stat().st_size > 10_000
    assert nodes["B0"] in debug.table() and "predicted 0" in str(debug)
    comparison = compare_classes(model, circuit, _class1_circuit(model), image, n_steps=8)
    assert isinstance(comparison.plot(), Figure) and "0 over 1" in comparison.table()
    assert_same_state(before, model_state(model))
    with pytest.raises(ValueError, match="one image"):
        debug_image(model, circuit, images[:2])
    with pytest.raises(ValueError, match="NaN or inf"):
        debug_image(model, circuit, torch.full((4, 8, 8), float("nan")))
    with pytest.raises(ValueError, match="threshold must be a positive number"):
        debug_image(model, circuit, image, threshold=0)
    with pytest.raises(ValueError, match="versus=0 is the circuit's own target"):
        debug_image(model, circuit, image, versus=0)
    with pytest.raises(ValueError, match="eps must be positive"):
        debug_image(model, circuit, image, eps=0.0)
    with pytest.raises(ValueError, match="by='contrast' needs a debug made with versus"):
        debug_image(model, circuit, image, n_steps=4).top(by="contrast")
    with pytest.raises(TypeError, match="circuit must be a Circuit"):
        debug_image(model, "circuit", image)
    with pytest.raises(ValueError, match="versus needs a circuit whose target is a class"):
        group_target = Circuit(
            NeuronGroup("relu_b", [0]), ["relu_a"], {"a": NeuronGroup("relu_a", [0])}, {}
        )
        debug_image(model, group_target, image, versus=1)
    model.train()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        debug_image(model, circuit, image, n_steps=4)
    model.eval()
    assert not any("training mode" in str(w.message) for w in caught)  # no dropout / batch norm


def test_a_circuit_of_a_hidden_group_target(planted):
    """The target may be a group of a later layer: the flows then go into that group."""
    model, images, _, _ = planted
    target = NeuronGroup("relu_b", list(B0))
    circuit = build_circuit(
        model, ["relu_a"], target, images, tau=3, k=20, n_steps=16, progress=False
    )
    debug = debug_image(model, circuit, _blob({0: (0, 0, 4, 1.4)}), n_steps=32)
    assert {i for group in circuit.nodes.values() for i in group.indices} == set(A0)
    assert set(debug.active) == set(circuit.nodes)
    assert sum(row.share for row in debug.groups.values()) == pytest.approx(1.0, abs=1e-2)


def test_digits_misclassified_images_flip_back_when_the_debugged_group_is_masked():
    """Every misclassified digit (test and train splits): mask the top group of the circuit of
    the wrong class (its top layer, most margin over the true class); the prediction returns
    to the true class more often than when masking random groups of the same size."""
    from captum_groups.datasets import digits_cnn, load_digits

    model = digits_cnn()
    cases = []
    for split in ("test", "train"):
        x, y = load_digits(split)
        with torch.no_grad():
            predicted = model(x).argmax(1)
        cases += [(x[i], int(y[i]), int(predicted[i])) for i in (predicted != y).nonzero()[:, 0]]
    images, labels = load_digits("all")
    with torch.no_grad():
        correct = images[model(images).argmax(1) == labels]
    assert len(cases) == 10
    circuits: dict[int, Circuit] = {}
    generator = torch.Generator().manual_seed(0)
    top_back, random_back = 0, []
    for image, true, wrong in cases:
        if wrong not in circuits:
            circuits[wrong] = build_circuit(
                model, ["relu2", "relu3"], wrong, correct, tau=6, k=20, n_groups=3,
                scales=(1.0, 0.5), n_steps=8, random_state=0, progress=False,
            )  # fmt: skip
        debug = debug_image(model, circuits[wrong], image, versus=true, n_steps=8)
        assert debug.prediction == wrong
        group = debug.top(1, layer="relu3")[0].group
        with torch.no_grad(), ablate(model, group):
            top_back += int(model(image[None]).argmax()) == true
        for _ in range(100):
            neurons = torch.randperm(64, generator=generator)[: len(group)].tolist()
            with torch.no_grad(), ablate(model, NeuronGroup("relu3", neurons)):
                random_back.append(int(model(image[None]).argmax()) == true)
    top_rate, random_rate = top_back / len(cases), sum(random_back) / len(random_back)
    assert top_rate >= random_rate + 0.3, (top_rate, random_rate)


def test_class_comparison_by_layer(planted):
    model, _, circuit, nodes = planted
    fooling = _blob({2: (0, 0, 3, 0.8), 0: (5, 5, 2, 1.5)})
    comparison = compare_classes(model, circuit, _class1_circuit(model), fooling, n_steps=8)
    top_layer = comparison.separating(layer="relu_b")
    assert {row.group.layer for _, row, _ in top_layer} == {"relu_b"}
    assert top_layer[0][1].node == nodes["B0"]
    with pytest.raises(ValueError, match="neither circuit has a group in layer 'fc'"):
        comparison.separating(layer="fc")
