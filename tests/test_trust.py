"""Regression tests of issue 11 (trust): no silent wrong result, no changed model.

Each test names the issue item it covers. The cases that are clear errors
live in ``test_bad_input.py`` (their ids are listed there), and the model
left untouched in training mode in ``test_model_state.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import NeuronGradient, NeuronIntegratedGradients, NoiseTunnel
from matplotlib.offsetbox import AnnotationBbox
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from captum_groups import (
    Circuit,
    GroupSet,
    NeuronGroup,
    ablate,
    edge_fidelity,
    find_assemblies,
    masking_fidelity,
    retain,
    sufficiency,
)
from captum_groups.attr import (
    GroupGradient,
    GroupIntegratedGradients,
    LayerGroupAblation,
    LayerGroupInteraction,
)
from captum_groups.discovery import (
    CoactivationClustering,
    ConceptClustering,
    NMFGroups,
    exemplar_activations,
    mine_exemplars,
)
from captum_groups.viz import plot_group_exemplars, render_groups

# item 2: several groups under NoiseTunnel


def test_noise_tunnel_with_several_groups_equals_one_captum_call_per_group(
    digits_model, digits_test
):
    x = digits_test[0][:3]
    groups = GroupSet.from_labels("conv3", np.arange(64) % 4)
    torch.manual_seed(0)
    ours = NoiseTunnel(GroupIntegratedGradients(digits_model, "conv3")).attribute(
        x, nt_type="smoothgrad", nt_samples=4, stdevs=0.1, group=groups, n_steps=8
    )
    assert ours.shape == (3, 4, 1, 8, 8)
    for g, group in enumerate(groups):
        torch.manual_seed(0)
        reference = NoiseTunnel(NeuronIntegratedGradients(digits_model, digits_model.conv3))
        expected = reference.attribute(
            x, nt_type="smoothgrad", nt_samples=4, stdevs=0.1, neuron_selector=group, n_steps=8
        )
        torch.testing.assert_close(ours[:, g], expected, rtol=1e-5, atol=1e-7)


def test_noise_tunnel_example_of_the_issue(digits_model, digits_test):
    """NoiseTunnel(GroupGradient) with 8 groups on 4 images: (4, 8, 1, 8, 8), each group right."""
    x = digits_test[0][:4]
    groups = GroupSet.from_labels("relu3", torch.arange(64) % 8)
    torch.manual_seed(1)
    ours = NoiseTunnel(GroupGradient(digits_model, "relu3")).attribute(
        x, nt_type="vargrad", nt_samples=4, group=groups
    )
    assert ours.shape == (4, 8, 1, 8, 8)
    for g, group in enumerate(groups):
        torch.manual_seed(1)
        expected = NoiseTunnel(NeuronGradient(digits_model, digits_model.relu3)).attribute(
            x, nt_type="vargrad", nt_samples=4, neuron_selector=group
        )
        torch.testing.assert_close(ours[:, g], expected, rtol=1e-5, atol=1e-7)


# item 4: sequence layers are mined along their neuron axis


def _sequence_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 5), nn.ReLU())


def test_exemplars_of_a_sequence_layer_are_mined_along_its_features():
    model = _sequence_model()
    x = torch.randn(20, 7, 3, generator=torch.Generator().manual_seed(1))
    found = mine_exemplars(model, "1", x, k=4, dim=-1, progress=False)
    with torch.no_grad():
        per_feature = model(x).mean(1)  # (N, F): each feature averaged over the 7 tokens
    top = per_feature.T.topk(4, dim=1)
    assert found.neurons.values.shape == (5, 4)  # 5 features, not 7 tokens
    torch.testing.assert_close(found.neurons.values, top.values)
    assert torch.equal(found.neurons.indices, top.indices)
    group = NeuronGroup("1", [0, 2], dim=-1)
    by_group = mine_exemplars(model, "1", x, k=4, groups=[group], progress=False)  # dim inferred
    assert torch.equal(by_group.neurons.indices, top.indices)
    vectors = exemplar_activations(model, "1", found.neurons, x, neurons=[0, 1], dim=-1)
    torch.testing.assert_close(vectors, per_feature[found.neurons.indices[:2]])


def test_nmf_and_coactivation_of_channels_last_activations():
    rng = np.random.default_rng(0)
    directions = np.array([[1.0, 1, 0, 0, 0], [0, 0, 1, 1, 1]])
    acts = np.einsum("ntk,kc->ntc", rng.random((60, 7, 2)), directions)  # (N, T, F)
    nmf = NMFGroups("encoder", n_components=2, random_state=0, dim=-1).fit(acts)
    assert sorted(g.indices for g in nmf.groups_) == [(0, 1), (2, 3, 4)]
    assert all(g.dim == -1 for g in nmf.groups_)
    assert nmf.transform(acts).shape == (60, 7, 2)  # components on the channel axis
    found = CoactivationClustering("encoder", n_groups=2, dim=-1).fit(
        acts + 0.01 * rng.random(acts.shape)
    )
    assert sorted(g.indices for g in found.groups_) == [(0, 1), (2, 3, 4)]


# item 8: render_groups optimises the layer it was given


class Twins(nn.Module):
    """``block.0`` and a top-level ``block_0`` (Lucent's name for both), with opposite weights."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.block = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1))
        self.block_0 = nn.Conv2d(1, 2, 3, padding=1)
        with torch.no_grad():  # block.0 channel 0 blurs the image; block_0 negates it
            self.block[0].weight.fill_(1 / 9)
            self.block[0].bias.zero_()
            self.block_0.weight.copy_(-self.block[0].weight)
            self.block_0.bias.copy_(-self.block[0].bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x) * self.block_0(x)


def test_render_groups_optimises_the_given_layer_not_its_lucent_namesake():
    model = Twins().eval()
    group = NeuronGroup("block.0", [0])

    def value(images: np.ndarray) -> float:
        with torch.no_grad():
            return float(group(model.block[0](torch.tensor(images).permute(0, 3, 1, 2))).mean())

    start = render_groups(model, group, size=8, steps=1, lr=0.1)
    rendered = render_groups(model, group, size=8, steps=30, lr=0.1)  # seen: 0.42 -> 0.63
    assert value(rendered) > value(start) + 0.1


# item 10: every function that takes data reads it by the one rule


@pytest.fixture(scope="module")
def ten(digits_test):
    return digits_test[0][:10], digits_test[1][:10]


DATA_KINDS = {
    "tensor": lambda x, y: x,
    "tuples": lambda x, y: [(x[:4], y[:4]), (x[4:], y[4:])],
    "dicts": lambda x, y: [{"image": x[:6], "label": y[:6]}, {"image": x[6:], "label": y[6:]}],
    "loader": lambda x, y: DataLoader(TensorDataset(x, y), batch_size=3),
}
CIRCUIT = Circuit(
    3,
    ["relu2", "relu3"],
    {"a": NeuronGroup("relu2", [0, 1, 5], name="a"), "b": NeuronGroup("relu3", [4, 9], name="b")},
    {("a", "b"): 0.5, ("b", "target"): 1.0},
    exemplars={"a": [(1, (0, 0, 4, 4)), (7, (2, 2, 4, 4))], "b": [(9, (0, 0, 8, 8))]},
)
GROUPS3 = GroupSet.from_labels("relu3", np.arange(64) % 3)
GROUPS2 = GroupSet.from_labels("relu2", np.arange(32) % 4)


def _thumbnails(figure) -> list[np.ndarray]:
    boxes = [a for a in figure.axes[0].get_children() if isinstance(a, AnnotationBbox)]
    return [np.asarray(box.offsetbox.get_data()) for box in boxes]


def _montage_images(model, data, x):
    found = mine_exemplars(model, "relu3", x, k=3, groups=GROUPS3, progress=False)
    figure = plot_group_exemplars(found.groups, data, GROUPS3, n=3)
    return [np.asarray(image.get_array()) for axis in figure.axes for image in axis.images]


def _ablated_output(switch, model, data, x):
    with switch(model, [GROUPS2[1], GROUPS3[0]], value="mean", data=data), torch.no_grad():
        return model(x)


DATA_FUNCTIONS = {
    "mine_exemplars": lambda m, d, x, y: (
        mine_exemplars(m, "relu3", d, k=3, progress=False).neurons.indices
    ),  # noqa: E501
    "ablate-mean": lambda m, d, x, y: _ablated_output(ablate, m, d, x),
    "retain-mean": lambda m, d, x, y: _ablated_output(retain, m, d, x),
    "LayerGroupAblation-mean": lambda m, d, x, y: LayerGroupAblation(m, "relu2").attribute(
        x, GROUPS2, target=3, value="mean", data=d
    ),  # noqa: E501
    "LayerGroupInteraction": lambda m, d, x, y: LayerGroupInteraction(
        m, "relu2", "relu3"
    ).attribute(d, GROUPS3, GROUPS2, n_steps=8, average=True, progress=False),  # noqa: E501
    "find_assemblies": lambda m, d, x, y: (
        find_assemblies(m, "relu4", (x, y) if isinstance(d, Tensor) else d, n_groups=3).selectivity
    ),  # noqa: E501
    "TopExemplars.inputs": lambda m, d, x, y: mine_exemplars(
        m, "relu3", x, k=3, scales=(1.0, 0.5), progress=False
    ).neurons.inputs(d, 5),  # noqa: E501
    "exemplar_activations": lambda m, d, x, y: exemplar_activations(
        m, "relu2", mine_exemplars(m, "relu3", x, k=3, progress=False).neurons, d, [0, 7]
    ),  # noqa: E501
    "plot_group_exemplars": lambda m, d, x, y: _montage_images(m, d, x),
    "masking_fidelity": lambda m, d, x, y: [
        r.random for r in masking_fidelity(m, CIRCUIT, d, n_draws=3, random_state=0)
    ],  # noqa: E501
    "sufficiency": lambda m, d, x, y: sufficiency(m, CIRCUIT, d, n_draws=3, random_state=0).random,  # noqa: E501
    "edge_fidelity": lambda m, d, x, y: (
        edge_fidelity(m, CIRCUIT, d, "b", sizes=(1, 3), n_draws=3, n_steps=8, random_state=0).change
    ),  # noqa: E501
    "Circuit.plot": lambda m, d, x, y: _thumbnails(CIRCUIT.plot(d)),
}


def _same(a: object, b: object) -> None:
    if isinstance(a, list):
        assert len(a) == len(b)
        for first, second in zip(a, b, strict=True):
            _same(first, second)
    else:
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", [k for k in DATA_KINDS if k != "tensor"])
@pytest.mark.parametrize("function", list(DATA_FUNCTIONS))
def test_every_data_function_reads_every_kind_of_data(function, kind, digits_model, ten):
    x, y = ten
    call = DATA_FUNCTIONS[function]
    expected = call(digits_model, DATA_KINDS["tensor"](x, y), x, y)
    _same(call(digits_model, DATA_KINDS[kind](x, y), x, y), expected)


# the clustering crash of build_circuit(tau=1): two concepts or two neurons are valid


def test_two_neurons_and_two_concepts_are_valid_groupings():
    rng = np.random.default_rng(0)
    acts = rng.random((30, 2))
    for method in ("agglomerative", "spectral"):
        found = CoactivationClustering("fc", method=method, random_state=0).fit(acts)
        assert sorted(g.indices for g in found.groups_) == [(0,), (1,)]
    one_neuron_two_concepts = np.concatenate(
        [np.zeros((1, 10, 3)), np.ones((1, 10, 3))], 1
    ) + 0.01 * rng.random((1, 20, 3))
    concepts = ConceptClustering("conv", neurons=[7]).fit(one_neuron_two_concepts)
    assert len(concepts.concept_vectors_) == 2
    assert [g.indices for g in concepts.groups_] == [(7,)]
    two_neurons_one_concept_each = np.stack([np.zeros((2, 3)), np.ones((2, 3))])
    concepts = ConceptClustering("conv").fit(two_neurons_one_concept_each)
    assert sorted(g.indices for g in concepts.groups_) == [(0,), (1,)]


def test_noise_tunnel_refuses_an_averaged_interaction(digits_model, digits_test):
    """Item 2: where a wrapper still cannot work (no batch axis), the error says why."""
    lower = GroupSet.from_labels("relu2", np.arange(32) % 4)
    upper = GroupSet.from_labels("relu3", np.arange(64) % 3)
    tunnel = NoiseTunnel(LayerGroupInteraction(digits_model, "relu2", "relu3"))
    kwargs = dict(nt_samples=2, upper_groups=upper, lower_groups=lower, n_steps=4)
    with pytest.raises(ValueError, match="average=True .* NoiseTunnel cannot split"):
        tunnel.attribute(digits_test[0][:3], average=True, **kwargs)
    per_example = tunnel.attribute(digits_test[0][:3], **kwargs)
    assert per_example.shape == (3, 3, 4)
