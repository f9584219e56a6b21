"""The report: shares against Captum, the layout, a self-contained page, the model untouched."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from captum.attr import LayerConductance
from PIL import Image
from torch import nn

from captum_groups import Circuit, GroupSet, NeuronGroup, build_circuit
from captum_groups._model.subnetwork import subnetwork
from captum_groups.circuits import edge_fidelity, masking_curves, masking_fidelity
from captum_groups.datasets import digits_cnn
from captum_groups.report import assemble, layered_layout, target_shares, write_report
from captum_groups.report.assemble import _curve_circuits, evaluation_images
from captum_groups.report.images import array_uri
from captum_groups.report.layout import MAX_EDGE_WIDTH

from .._helpers import (
    assert_same_state,
    captured_output,
    model_state,
    plain_edge_changes,
    plain_masking_fidelity,
)


def hand_circuit(label: str | None = None) -> Circuit:
    """Two groups of relu3 and two of relu2 for digit 3, with a few stored exemplars."""
    nodes = {
        "a": NeuronGroup("relu3", [0, 5, 9], name="a", label=label),
        "b": NeuronGroup("relu3", [1, 2], name="b"),
        "c": NeuronGroup("relu2", [3, 4], name="c"),
        "d": NeuronGroup("relu2", [7], name="d"),
    }
    edges = {
        ("a", "target"): 0.8,
        ("b", "target"): -0.3,
        ("c", "a"): 0.5,
        ("d", "a"): 0.1,
        ("d", "b"): -0.6,
    }
    exemplars = {
        node: [(3, (0, 0, 8, 8)), (11, (0, 0, 4, 4)), (20, (2, 2, 4, 4))] for node in nodes
    }
    return Circuit(3, ["relu2", "relu3"], nodes, edges, exemplars)


def test_shares_match_captum_layer_conductance(digits_model64, digits_test):
    images = digits_test[0][digits_test[1] == 3][:12].double()
    circuit = hand_circuit()
    shares, mean_rise = target_shares(digits_model64, circuit, images, n_steps=24, batch_size=5)
    with torch.no_grad():
        rise = digits_model64(images)[:, 3] - digits_model64(torch.zeros_like(images))[:, 3]
    assert mean_rise == pytest.approx(float(rise.mean()))
    for layer in ("relu2", "relu3"):
        flows = (
            LayerConductance(digits_model64, digits_model64.get_submodule(layer))
            .attribute(images, target=3, n_steps=24)
            .detach()
        )
        for node in circuit.node_ids(layer):
            channels = list(circuit.nodes[node].indices)
            expected = float(flows[:, channels].sum() / rise.sum())
            assert shares[node] == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_shares_of_a_partition_of_a_bottleneck_add_up_to_one(digits_model64, digits_test):
    images = digits_test[0][digits_test[1] == 5][:10].double()
    partition = GroupSet.from_labels("relu3", np.arange(64) % 4)
    nodes = {g.name: g for g in partition}
    circuit = Circuit(5, ["relu3"], nodes, {(name, "target"): 1.0 for name in nodes})
    shares, _ = target_shares(digits_model64, circuit, images, n_steps=128)
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-3)  # every path crosses relu3


def test_evaluation_images_are_the_images_predicted_as_the_target(digits_model, digits_test):
    images = digits_test[0]
    with torch.no_grad():
        predicted = digits_model(images).argmax(1)
    chosen = evaluation_images(digits_model, hand_circuit(), images, limit=1000, batch_size=64)
    torch.testing.assert_close(chosen, images[predicted == 3])
    first = evaluation_images(digits_model, hand_circuit(), images, limit=7, batch_size=3)
    torch.testing.assert_close(first, images[predicted == 3][:7])


def test_layout_orders_rows_and_scales_edges():
    upper = {"u1": NeuronGroup("relu3", [0], name="u1"), "u2": NeuronGroup("relu3", [1], name="u2")}
    lower = {"l1": NeuronGroup("relu2", [0], name="l1"), "l2": NeuronGroup("relu2", [1], name="l2")}
    edges = {("u1", "target"): 1.0, ("u2", "target"): 0.5, ("l1", "u2"): -2.0, ("l2", "u1"): 1.0}
    drawing = layered_layout(Circuit(3, ["relu2", "relu3"], {**upper, **lower}, edges))
    where = {shape.node: shape for shape in drawing.nodes}
    assert where["target"].y < where["u1"].y == where["u2"].y < where["l1"].y == where["l2"].y
    assert where["u1"].x < where["u2"].x
    assert where["l2"].x < where["l1"].x  # l2 feeds u1 (left), l1 feeds u2 (right): no crossing
    widths = {(e.lower, e.upper): e.width for e in drawing.edges}
    assert widths[("l1", "u2")] == MAX_EDGE_WIDTH
    assert widths[("l2", "u1")] == widths[("u1", "target")] > widths[("u2", "target")]
    signs = {(e.lower, e.upper): e.sign for e in drawing.edges}
    assert signs[("l1", "u2")] == "negative" and signs[("l2", "u1")] == "positive"


def test_array_uri_is_a_png_of_the_pixels():
    image = np.array([[0.0, 1.0], [0.5, 1.0]])[..., None]
    data = base64.b64decode(array_uri(image).removeprefix("data:image/png;base64,"))
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
    assert pixels[0, 0] == 255 and pixels[0, 1] == 0  # gray_r: ink dark on white
    assert 100 < pixels[1, 0] < 160
    colour = np.zeros((1, 2, 3))
    colour[0, 1] = (1.0, 0.0, 0.0)
    data = base64.b64decode(array_uri(colour).removeprefix("data:image/png;base64,"))
    assert np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))[0].tolist() == [
        [0, 0, 0],
        [255, 0, 0],
    ]


class PageParts(HTMLParser):
    """The tags, attributes and text of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def test_page_is_self_contained_escaped_and_the_model_untouched(
    digits_model, digits_test, tmp_path
):
    label = "<script>alert('x')</script> loops & curls"
    circuit = hand_circuit(label)
    before = model_state(digits_model)
    files = write_report(
        digits_model, circuit, digits_test[0], tmp_path / "out", render_steps=3,
        n_draws=3, n_points=2, n_steps=4, progress=False,
    )  # fmt: skip
    assert_same_state(before, model_state(digits_model))
    assert Circuit.from_json(files.circuit.read_text()) == circuit
    page = files.html.read_text()
    parts = PageParts()
    parts.feed(page)
    assert label in "".join(parts.text)  # shown as text ...
    assert "<script>alert" not in page  # ... never as markup
    links = [
        value
        for tag, attrs in parts.tags
        for key, value in attrs.items()
        if key in ("src", "href") and value is not None
    ]
    assert links and all(link.startswith("data:image/png;base64,") for link in links)
    assert not [
        tag for tag, attrs in parts.tags if tag == "link" or "src" in attrs and tag == "script"
    ]
    classes = [(tag, attrs.get("class", "")) for tag, attrs in parts.tags]
    assert sum(tag == "g" and "group-node" in c.split() for tag, c in classes) == len(circuit.nodes)
    assert sum(tag == "path" and "edge" in c.split() for tag, c in classes) == len(circuit.edges)
    cards = [attrs["data-node"] for tag, attrs in parts.tags if "card" in attrs.get("class", "")]
    assert sorted(cards) == sorted([*circuit.nodes, "target"])


def test_fidelity_rows_are_the_metrics_of_the_whole_circuit(digits_model, digits_test):
    circuit = hand_circuit()
    content = assemble(
        digits_model, circuit, digits_test[0], render_steps=0, n_draws=4,
        n_points=3, n_steps=4, random_state=7, progress=False,
    )  # fmt: skip
    inputs = evaluation_images(digits_model, circuit, digits_test[0], 512, 64)
    for mode, column in (("mask", "masked"), ("retain", "retained")):
        expected = masking_fidelity(digits_model, circuit, inputs, mode=mode, n_draws=4,
                                    random_state=7)  # fmt: skip
        for row in content.fidelity.rows:
            result = getattr(row, column)
            assert result.circuit == expected[row.scope].circuit
            np.testing.assert_array_equal(result.random, expected[row.scope].random)
    assert [row.scope for row in content.fidelity.rows] == ["relu2", "relu3", "all layers"]
    assert all(card.rendering is None for card in content.cards)


def _untraceable(model: nn.Module) -> nn.Module:
    """The model behind a forward that fx cannot trace (it branches on a value)."""

    class Branching(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x) if float(x.sum()) > -1e9 else self.inner(-x)

    return Branching().eval()


@pytest.mark.parametrize("kind", ["class", "group target", "untraceable"])
def test_fidelity_curves_are_the_plain_implementations_numbers(kind, digits_test):
    """The report's fidelity runs on cached activations with the draws stacked; every number
    is what one forward pass per run with ablate() gives (the implementation before)."""
    model, (x, y) = digits_cnn(), digits_test
    target = NeuronGroup("relu4", [1, 7]) if kind == "group target" else 3
    layers = ["relu1", "relu2", "relu3"]
    circuit = build_circuit(model, layers, target, x, tau=4, k=10, n_groups=2, n_steps=8,
                            progress=False)  # fmt: skip
    if kind == "untraceable":
        model = _untraceable(model)
        circuit = circuit.replace(
            layers=[f"inner.{layer}" for layer in circuit.layers],
            nodes={n: g.replace(layer=f"inner.{g.layer}") for n, g in circuit.nodes.items()},
            core_neurons={},
        )
    inputs = x[y == 3][:30]
    pruned = _curve_circuits(circuit, 3)
    reports = masking_curves(model, pruned, inputs, n_draws=6, random_state=1)
    assert len(reports) == 2 * len(pruned)
    for (mode, index), report in reports.items():
        plain = plain_masking_fidelity(model, pruned[index], inputs, mode, True, 6, 1)
        shown = [(r.scope, r.baseline, r.circuit, list(r.random)) for r in report]
        assert shown == [(scope, intact, own, drawn) for scope, intact, own, drawn in plain]


def test_edge_fidelity_is_the_plain_implementations(digits_model, digits_test):
    x, y = digits_test
    circuit = hand_circuit()
    result = edge_fidelity(digits_model, circuit, x[:40], "b", sizes=(1, 3), n_draws=5,
                           n_steps=8, random_state=2)  # fmt: skip
    lower = captured_output(digits_model, "relu2", x[:40]).detach()
    rng = np.random.default_rng(2)
    subsets = [rng.choice(lower.shape[1], size, replace=False) for size in (1, 3) for _ in range(5)]
    between = subnetwork(digits_model, "relu2", "relu3")
    plain = plain_edge_changes(between, circuit.nodes["b"], lower, subsets)
    assert list(result.change) == plain
