"""Finding groups: exemplars against a full sort, estimators against planted structure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score
from torch import nn

from captum_groups import GroupSet, NeuronGroup
from captum_groups.discovery import (
    NEURFLOW_SCALES,
    CoactivationClustering,
    ConceptClustering,
    ExemplarMiner,
    NMFGroups,
    crop_and_resize,
    crop_boxes,
    exemplar_activations,
    find_core_neurons,
    mine_exemplars,
)

from .._helpers import assert_same_state, captured_output, model_state


def test_neurflow_crops():
    assert len(crop_boxes(8, 8)) == 1 + 9 + 49
    assert len(crop_boxes(224, 224)) == 59
    assert crop_boxes(224, 224)[1].tolist() == [0, 0, 112, 112]
    assert crop_boxes(224, 224)[2].tolist() == [0, 56, 112, 112]
    images = torch.rand(2, 3, 8, 8)
    crops = crop_and_resize(images, crop_boxes(8, 8))
    assert crops.shape == (2 * 59, 3, 8, 8)
    torch.testing.assert_close(crops[0], images[0])
    torch.testing.assert_close(crops[59], images[1])
    # a 4x4 crop resized to 8x8 keeps the mean of a constant patch
    assert torch.allclose(
        crop_and_resize(torch.ones(1, 1, 8, 8), crop_boxes(8, 8))[5], torch.ones(1, 8, 8)
    )


def _brute_force(model, layer, data, k, scales, groups):
    """Every candidate's activation, fully sorted (value descending, candidate order ascending)."""
    boxes = crop_boxes(*data.shape[-2:], scales)
    candidates = crop_and_resize(data, boxes)
    with torch.no_grad():
        out = captured_output(model, layer, candidates)
    scores = [out.mean((2, 3)).T] + ([torch.stack([g(out) for g in groups])] if groups else [])
    results = []
    for unit_scores in scores:
        order = np.lexsort(
            (
                np.arange(unit_scores.shape[1])[None].repeat(len(unit_scores), 0),
                -unit_scores.numpy(),
            )
        )
        top = torch.from_numpy(order[:, :k])
        results.append((unit_scores.gather(1, top), top // len(boxes), boxes[top % len(boxes)]))
    return results


@pytest.mark.parametrize("scales", [None, NEURFLOW_SCALES])
def test_mined_exemplars_equal_a_full_sort(scales, digits_model, digits_test):
    data = digits_test[0][:40]
    groups = [NeuronGroup("relu2", [0, 3]), NeuronGroup("relu2", [7], reduction="max")]
    found = mine_exemplars(
        digits_model, "relu2", data, k=7, groups=groups, scales=scales, batch_size=9, progress=False
    )
    brute = _brute_force(digits_model, "relu2", data, 7, scales or (1.0,), groups)
    for top, (values, indices, boxes) in zip([found.neurons, found.groups], brute, strict=True):
        torch.testing.assert_close(top.values, values)
        assert torch.equal(top.indices, indices)
        assert torch.equal(top.boxes, boxes)


def test_merged_shards_equal_one_pass(digits_model, digits_test):
    data = digits_test[0][:60]
    whole = ExemplarMiner(digits_model, "relu3", k=6, scales=NEURFLOW_SCALES)
    for start in range(0, 60, 16):
        whole.update(data[start : start + 16])
    first = ExemplarMiner(digits_model, "relu3", k=6, scales=NEURFLOW_SCALES)
    second = ExemplarMiner(digits_model, "relu3", k=6, scales=NEURFLOW_SCALES, start_index=25)
    first.update(data[:25])
    second.update(data[25:40])
    second.update(data[40:])
    merged, one = second.merge(first).result(), whole.result()
    assert torch.equal(merged.neurons.indices, one.neurons.indices)
    assert torch.equal(merged.neurons.boxes, one.neurons.boxes)
    torch.testing.assert_close(merged.neurons.values, one.neurons.values)
    assert whole._state[0][0].shape == (64, 6), "the running state must not grow with the data"


def test_data_loader_and_exemplar_inputs(digits_model, digits_test):
    x, y = digits_test[0][:30], digits_test[1][:30]
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=7)
    from_loader = mine_exemplars(
        digits_model, "relu3", loader, k=5, scales=NEURFLOW_SCALES, progress=False
    )
    from_tensor = mine_exemplars(
        digits_model, "relu3", x, k=5, scales=NEURFLOW_SCALES, progress=False
    )
    assert torch.equal(from_loader.neurons.indices, from_tensor.neurons.indices)
    # the stored box re-creates the exact input that produced the stored value
    crops = from_tensor.neurons.inputs(x, 11)
    with torch.no_grad():
        relu3 = captured_output(digits_model, "relu3", crops)
    torch.testing.assert_close(relu3[:, 11].mean((1, 2)), from_tensor.neurons.values[11])


def test_exemplar_errors(digits_model, digits_test):
    with pytest.raises(ValueError, match="k=50 is larger than the data"):
        mine_exemplars(digits_model, "relu3", digits_test[0][:10], k=50, progress=False)
    with pytest.raises(ValueError, match="the data is empty"):
        mine_exemplars(digits_model, "relu3", [], k=5, progress=False)
    with pytest.raises(ValueError, match="k must be a positive int"):
        mine_exemplars(digits_model, "relu3", digits_test[0], k=0, progress=False)


class Planted(nn.Module):
    """16 neurons, each driven by one of 4 hidden factors (plus noise inputs)."""

    assignment = np.array([2, 0, 3, 1, 0, 2, 1, 3, 3, 1, 0, 2, 1, 0, 2, 3])

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.inputs = nn.Identity()
        self.layer = nn.Linear(4 + 6, 16)
        self.relu = nn.ReLU()
        self.head = nn.Linear(16, 3)
        with torch.no_grad():
            weight = 0.1 * torch.randn(16, 10, generator=generator)
            weight[:, :4] = 0
            weight[np.arange(16), self.assignment] = 1 + torch.rand(16, generator=generator)
            self.layer.weight.copy_(weight)
            self.layer.bias.zero_()

    def forward(self, x):
        return self.head(self.relu(self.layer(self.inputs(x))))


def _planted_data(n: int = 400, seed: int = 1) -> torch.Tensor:
    """Sparse hidden factors (each present in about a quarter of the examples) plus noise."""
    generator = torch.Generator().manual_seed(seed)
    present = torch.rand(n, 4, generator=generator) < 0.25
    factors = present * (0.5 + torch.rand(n, 4, generator=generator))
    noise = 0.3 * torch.randn(n, 6, generator=generator)
    return torch.cat([factors, noise], 1)


def _activations(model, data):
    with torch.no_grad():
        return model.relu(model.layer(data))


@pytest.mark.parametrize("method", ["agglomerative", "spectral"])
def test_coactivation_clustering_recovers_planted_assemblies(method):
    model, data = Planted(), _planted_data()
    acts = _activations(model, data)
    found = CoactivationClustering("relu", n_groups=4, method=method, random_state=0).fit(acts)
    assert adjusted_rand_score(Planted.assignment, found.labels_) >= 0.9
    automatic = CoactivationClustering("relu", method=method, random_state=0).fit(acts)
    assert automatic.n_groups_ == 4
    assert adjusted_rand_score(Planted.assignment, automatic.labels_) >= 0.9
    assert isinstance(found.groups_, GroupSet) and sum(len(g) for g in found.groups_) == 16


def test_concept_clustering_recovers_planted_concepts():
    model, data = Planted(), _planted_data()
    found = mine_exemplars(model, "relu", data, k=30, progress=False)
    # as in NeurFlow, a neuron's exemplars are described by the layer below it
    vectors = exemplar_activations(model, "inputs", found.neurons, data)
    assert vectors.shape == (16, 30, 10)
    concepts = ConceptClustering("relu", n_groups=4).fit(vectors)
    assert adjusted_rand_score(Planted.assignment, concepts.labels_) >= 0.9
    automatic = ConceptClustering("relu", max_groups=10).fit(vectors)
    assert adjusted_rand_score(Planted.assignment, automatic.labels_) >= 0.9
    # groups may overlap (a neuron's minor sub-concept joins another group), but every
    # planted factor's neurons sit together in one group
    for factor in range(4):
        planted = set(np.flatnonzero(Planted.assignment == factor).tolist())
        assert any(planted <= set(g.indices) for g in concepts.groups_)


def test_nmf_recovers_planted_components():
    generator = torch.Generator().manual_seed(0)
    components = torch.rand(3, 12, generator=generator) ** 3  # non-negative, overlapping directions
    conv = nn.Conv2d(3, 12, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(components.T[:, :, None, None])
    model = nn.Sequential(conv, nn.ReLU())
    factors = torch.rand(60, 3, 5, 5, generator=generator)
    with torch.no_grad():
        acts = model(factors) + 0.01 * torch.rand(60, 12, 5, 5, generator=generator)
    nmf = NMFGroups("1", n_components=3, random_state=0).fit(acts)
    planted = (components / components.norm(dim=1, keepdim=True)).numpy()
    cosine = nmf.components_ @ planted.T
    rows, cols = linear_sum_assignment(-cosine)
    assert cosine[rows, cols].min() >= 0.95
    spatial = nmf.transform(acts)
    assert spatial.shape == (60, 3, 5, 5)
    recovered = spatial[:, rows].transpose(1, 0, 2, 3).reshape(3, -1)
    truth = factors.numpy()[:, cols].transpose(1, 0, 2, 3).reshape(3, -1)
    assert min(np.corrcoef(r, t)[0, 1] for r, t in zip(recovered, truth, strict=True)) >= 0.95


def test_same_random_state_same_groups():
    acts = _activations(Planted(), _planted_data())
    a = CoactivationClustering("relu", n_groups=4, method="spectral", random_state=3).fit(acts)
    b = CoactivationClustering("relu", n_groups=4, method="spectral", random_state=3).fit(acts)
    assert np.array_equal(a.labels_, b.labels_) and a.groups_ == b.groups_
    nonneg = acts[:, :, None, None].expand(-1, -1, 2, 2)
    c = NMFGroups("relu", n_components=4, random_state=5).fit(nonneg)
    d = NMFGroups("relu", n_components=4, random_state=5).fit(nonneg)
    assert np.array_equal(c.components_, d.components_) and c.groups_ == d.groups_


def test_estimator_errors():
    acts = _activations(Planted(), _planted_data())
    with pytest.raises(ValueError, match="NMF needs a non-negative layer"):
        NMFGroups("layer", n_components=2).fit(acts - 1)
    with pytest.raises(ValueError, match="n_groups must be between 1 and 16"):
        CoactivationClustering("relu", n_groups=40).fit(acts)
    with pytest.raises(ValueError, match="method must be"):
        CoactivationClustering("relu", method="kmeans").fit(acts)
    with pytest.raises(ValueError, match="X contains NaN"):
        CoactivationClustering("relu").fit(acts * float("nan"))
    with pytest.raises(ValueError, match="must be shaped"):
        ConceptClustering("relu").fit(acts[:, :, None, None])
    with pytest.raises(ValueError, match="not fitted"):
        NMFGroups("relu").transform(acts)
    with pytest.raises(ValueError, match="n_components must be between 1 and 16"):
        NMFGroups("relu", n_components=17).fit(acts)


class CoreNet(nn.Module):
    """lower (6 units) -> upper (2 units); upper unit 0 reads only lower units 1, 3, 4."""

    def __init__(self) -> None:
        super().__init__()
        self.lower = nn.Linear(5, 6)
        self.relu = nn.ReLU()
        self.upper = nn.Linear(6, 2)
        with torch.no_grad():
            self.lower.bias.fill_(2.0)
            self.upper.weight.copy_(
                torch.tensor([[0, 3.0, 0, -2.0, 1.0, 0], [1.0, 0, 0.5, 0, 0, 2.0]])
            )

    def forward(self, x):
        return self.upper(self.relu(self.lower(x)))


def test_core_neurons_are_the_truly_contributing_ones():
    model = CoreNet()
    before = model_state(model)
    exemplars = torch.randn(2, 20, 5, generator=torch.Generator().manual_seed(0)) * 0.3
    core = find_core_neurons(
        model, "relu", [NeuronGroup("upper", [0]), NeuronGroup("upper", [1])], exemplars, tau=3
    )
    assert set(core.indices[0]) == {1, 3, 4} and set(core.indices[1]) == {0, 2, 5}
    assert core.scores[0, [0, 2, 5]].abs().max() == 0
    assert core.union == (0, 1, 2, 3, 4, 5)
    as_logits = find_core_neurons(model, "relu", [0, 1], exemplars, tau=3)
    torch.testing.assert_close(as_logits.scores, core.scores)
    assert_same_state(before, model_state(model))


def test_core_neurons_batched_equal_looped(digits_model, digits_test):
    x, y = digits_test
    exemplars = [x[y == c][:12] for c in (2, 5, 7)]
    targets = [NeuronGroup("fc1", [3]), NeuronGroup("fc1", [9, 10]), NeuronGroup("fc1", [20])]
    batched = find_core_neurons(digits_model, "relu3", targets, exemplars, tau=8, n_steps=20)
    for t, (target, batch) in enumerate(zip(targets, exemplars, strict=True)):
        alone = find_core_neurons(digits_model, "relu3", target, batch, tau=8, n_steps=20)
        torch.testing.assert_close(batched.scores[t], alone.scores[0], rtol=1e-5, atol=1e-7)
        assert batched.indices[t] == alone.indices[0]


def test_core_neurons_match_captum_layer_integrated_gradients(digits_model, digits_test):
    """Independent truth: Captum's IG on a hand-written upper part of the network."""
    from captum.attr import IntegratedGradients

    x, y = digits_test
    inputs = x[y == 4][:10]
    core = find_core_neurons(digits_model, "relu3", 4, inputs, tau=5, n_steps=30)
    with torch.no_grad():
        acts = digits_model.relu3(
            digits_model.conv3(
                digits_model.pool(
                    digits_model.relu2(
                        digits_model.conv2(digits_model.relu1(digits_model.conv1(inputs)))
                    )
                )
            )
        )

    def upper(a):
        return digits_model.fc2(
            digits_model.relu4(digits_model.fc1(digits_model.gap(a).flatten(1)))
        )

    ig = IntegratedGradients(upper).attribute(acts, target=4, n_steps=30)
    expected = ig.mean((2, 3)).abs().mean(0)
    torch.testing.assert_close(core.scores[0], expected, rtol=1e-5, atol=1e-7)
    assert set(core.indices[0]) == set(expected.topk(5).indices.tolist())


def _top_set(model, pool, target, k, masked=()):
    """Indices of the target's top-k inputs in the pool, with some relu3 neurons zeroed."""
    captured = {}

    def mask(module, args, output):
        output = output.clone()
        output[:, list(masked)] = 0
        return output

    handles = [
        model.relu3.register_forward_hook(mask),
        model.fc1.register_forward_hook(lambda m, i, o: captured.update(o=o)),
    ]
    try:
        with torch.no_grad():
            model(pool)
    finally:
        for handle in handles:
            handle.remove()
    return set(target(captured["o"]).topk(k).indices.tolist())


def test_adaptive_tau_meets_its_criterion(digits_model, digits_test):
    """NeurFlow's rule, recomputed independently: the fewest ranked neurons whose masking
    brings the top-k overlap below its minimum plus the tolerance."""
    pool, target, k = digits_test[0][:300], NeuronGroup("fc1", [5]), 20
    reference = _top_set(digits_model, pool, target, k)
    exemplars = pool[sorted(reference)]
    core = find_core_neurons(
        digits_model, "relu3", target, exemplars, tau=10, adaptive=True, pool=pool, tolerance=0.05
    )
    full = find_core_neurons(digits_model, "relu3", target, exemplars, tau=10)
    chosen, ranked = core.indices[0], full.indices[0]
    assert 1 <= len(chosen) <= 10 and chosen == ranked[: len(chosen)]
    overlaps = [
        len(reference & _top_set(digits_model, pool, target, k, ranked[:m])) / k
        for m in range(1, 11)
    ]
    assert overlaps[len(chosen) - 1] < min(overlaps) + 0.05
    assert all(o >= min(overlaps) + 0.05 for o in overlaps[: len(chosen) - 1])


def test_core_neuron_errors(digits_model, digits_test):
    x = digits_test[0][:10]
    with pytest.raises(ValueError, match="tau must be an int between 1 and the lower layer's 64"):
        find_core_neurons(digits_model, "relu3", 1, x, tau=100)
    with pytest.raises(ValueError, match="adaptive=True needs pool"):
        find_core_neurons(digits_model, "relu3", 1, x, adaptive=True)
    with pytest.raises(ValueError, match="one batch per target"):
        find_core_neurons(digits_model, "relu3", [1, 2], [x])
    with pytest.raises(TypeError, match="not a mix"):
        find_core_neurons(digits_model, "relu3", [1, NeuronGroup("fc1", [0])], [x, x])
