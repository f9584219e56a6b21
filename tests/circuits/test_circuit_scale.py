"""Circuits at scale: streamed data equals the tensor, several classes equal single calls,
bounded inputs are checked, and the model is left as it was (also in training mode)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from captum_groups import NeuronGroup, build_circuit
from captum_groups.circuits import _passes, build_circuits
from captum_groups.discovery import NEURFLOW_SCALES, find_core_neurons

from .._helpers import assert_same_state, model_state

SMALL = {"tau": 4, "k": 12, "n_groups": 2, "n_steps": 8, "progress": False}


@pytest.fixture(scope="module")
def digits():
    from captum_groups.datasets import digits_cnn, load_digits

    x, y = load_digits("test")
    return digits_cnn(), x[:120], y[:120]


class DictImages(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.x[i], "label": self.y[i]}


def test_streamed_data_gives_the_same_circuit_as_the_tensor(digits):
    """Loaders of any batch size, datasets and dict batches: the same JSON, exemplars included."""
    model, x, y = digits
    expected = build_circuit(
        model, ["relu2", "relu3"], 3, x, scales=NEURFLOW_SCALES, batch_size=64, **SMALL
    )
    for data in (
        DataLoader(TensorDataset(x, y), batch_size=7),
        TensorDataset(x, y),
        DataLoader(DictImages(x, y), batch_size=16),
        [x[:50], x[50:]],
    ):
        streamed = build_circuit(
            model, ["relu2", "relu3"], 3, data, scales=NEURFLOW_SCALES, batch_size=64, **SMALL
        )
        assert streamed.to_json() == expected.to_json()
    assert expected.params["images"] == int((model(x).argmax(1) == 3).sum())


def test_several_classes_equal_single_calls(digits):
    model, x, _ = digits
    together = build_circuits(model, ["relu2", "relu3"], [1, 3, 7], x, random_state=0, **SMALL)
    assert list(together) == [1, 3, 7]
    for digit, circuit in together.items():
        alone = build_circuit(model, ["relu2", "relu3"], digit, x, random_state=0, **SMALL)
        assert circuit.to_json() == alone.to_json()
        assert circuit.target == digit and circuit.params["random_state"] == 0


def test_all_images_shared_by_several_targets(digits):
    """Without predicted_only every target reads all images: one summary pass serves all."""
    model, x, _ = digits
    targets = [2, NeuronGroup("fc1", [5])]
    together = build_circuits(model, ["relu3"], targets, x, predicted_only=False, **SMALL)
    for target in targets:
        alone = build_circuit(model, ["relu3"], target, x, predicted_only=False, **SMALL)
        assert together[target].to_json() == alone.to_json()
    assert together[2].params["images"] == len(x)


def test_core_neurons_and_typical_activations_are_recorded(digits):
    """Per upper unit, its ranked core neurons; per node, its neurons' mean on its exemplars."""
    model, x, _ = digits
    circuit = build_circuit(model, ["relu2", "relu3"], 3, x, **SMALL)
    assert list(circuit.core_neurons["relu3"]) == ["target"]
    critical = sorted({n for ranked in circuit.core_neurons["relu3"].values() for n in ranked})
    assert sorted(circuit.core_neurons["relu2"], key=int) == [str(n) for n in critical]
    kept = {i for node in circuit.node_ids("relu3") for i in circuit.nodes[node].indices}
    assert kept == set(critical)
    node = circuit.node_ids("relu3")[0]
    group = circuit.nodes[node]
    index, box = circuit.exemplars[node][0]
    top, left, height, width = box
    crop = x[index : index + 1, :, top : top + height, left : left + width]
    crop = nn.functional.interpolate(crop, size=x.shape[-2:], mode="bilinear")
    with torch.no_grad():
        acts = model.relu3(
            model.conv3(model.pool(model.relu2(model.conv2(model.relu1(model.conv1(crop))))))
        )
    value = acts.mean((2, 3))[0, list(group.indices)].sum()
    assert value >= sum(circuit.typical_activations[node]) - 1e-4  # the top exemplar


class BatchNormNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.norm = nn.BatchNorm2d(6)
        self.relu = nn.ReLU()
        self.drop = nn.Dropout(0.3)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = self.drop(self.relu(self.norm(self.conv(x))))
        return self.fc(self.relu2(self.conv2(x)).mean((2, 3)))


@pytest.mark.parametrize("training", [False, True])
def test_the_model_is_left_as_it_was(training):
    torch.manual_seed(0)
    model = BatchNormNet().train(training)
    x = torch.randn(40, 1, 8, 8)
    before = model_state(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_circuit(model, ["relu", "relu2"], 0, x, predicted_only=False, **SMALL)
    assert_same_state(before, model_state(model))
    assert any("training mode" in str(w.message) for w in caught) == training
    with pytest.raises(ValueError):
        build_circuit(model, ["relu2", "relu"], 0, x, predicted_only=False, **SMALL)
    assert_same_state(before, model_state(model))


def test_layers_may_be_modules(digits):
    model, x, _ = digits
    by_name = build_circuit(model, ["relu2", "relu3"], 3, x, **SMALL)
    by_module = build_circuit(model, [model.relu2, model.relu3], 3, x, **SMALL)
    assert by_module == by_name


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tau": 0}, "tau must be a positive int, got 0"),
        ({"k": 0}, "k must be a positive int"),
        ({"k": 10_000}, "k=10000 is larger than the"),
        ({"n_steps": 0}, "n_steps must be a positive int"),
        ({"method": "simpson"}, "method must be one of"),
        ({"scales": (0.0,)}, "scales must be fractions"),
        ({"batch_size": 0}, "batch_size must be a positive int"),
        ({"internal_batch_size": 0}, "internal_batch_size must be a positive int"),
        ({"layers": []}, "layers must be a non-empty list"),
        ({"layers": "relu3"}, "layers must be a non-empty list"),
        ({"layers": ["relu3", "relu3"]}, "layers must not repeat"),
        ({"target": -1}, "target class must be non-negative"),
        ({"target": NeuronGroup("relu3", [0])}, "above all circuit layers"),
        ({"target": NeuronGroup("relu1", [0])}, "runs before circuit layer"),
        ({"data": torch.zeros(0, 1, 8, 8)}, "data is empty"),
        ({"data": torch.zeros(5, 8, 8)}, r"images shaped \(N, C, H, W\)"),
        ({"data": torch.full((5, 1, 8, 8), float("nan"))}, "data contains NaN"),
        ({"data": iter([torch.zeros(4, 1, 8, 8)])}, "one-shot iterator"),
        ({"data": DataLoader(TensorDataset(torch.zeros(4, 1, 8, 8)), shuffle=True)}, "shuffle"),
        ({"data": [torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 6, 6)]}, "images of one size"),
    ],
)
def test_bad_input_is_named(digits, change, message):
    model, x, _ = digits
    kwargs = {"layers": ["relu3"], "target": 3, "data": x, **SMALL}
    kwargs.update(change)
    error = TypeError if "one-shot" in message else ValueError
    with pytest.raises(error, match=message):
        build_circuit(
            model, kwargs.pop("layers"), kwargs.pop("target"), kwargs.pop("data"), **kwargs
        )


def test_core_neurons_refuse_nan_exemplars_and_targets_on_the_lower_layer(digits):
    model, x, _ = digits
    with pytest.raises(ValueError, match="exemplars contains NaN"):
        find_core_neurons(model, "relu3", 1, torch.full((4, 1, 8, 8), float("nan")))
    with pytest.raises(ValueError, match="belong to lower_layer itself"):
        find_core_neurons(model, "relu3", NeuronGroup("relu3", [0]), x[:5])
    with pytest.raises(ValueError, match="n_steps must be a positive int"):
        find_core_neurons(model, "relu3", 1, x[:5], n_steps=0)


def test_core_scores_follow_the_device_and_dtype_of_the_activations():
    """The integration runs where the activations are: shapes on the meta device, float64 kept."""
    from captum_groups.discovery import CoreScores

    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 5, 1))
    targets = [NeuronGroup("2", [1]), NeuronGroup("2", [0, 4], [1.0, -1.0])]
    scorer = CoreScores(net.to("meta"), targets, n_steps=3)
    scorer.add(torch.empty(6, 3, 2, 2, device="meta"), [[0, 1], [1], [0], [0, 1], [1], [0]])
    scores, signed = scorer.result()
    assert scores.device.type == "meta" and scores.shape == signed.shape == (2, 3)
    double = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 5, 1)).double()
    scorer = CoreScores(double, targets, n_steps=3)
    scorer.add(torch.rand(4, 3, 2, 2, dtype=torch.float64), [[0], [1], [0, 1], [1]])
    assert scorer.result()[0].dtype == torch.float64


def test_a_float64_model_reads_float32_images(digits):
    model, x, _ = digits
    circuit = build_circuit(model.double(), ["relu3"], 3, x, **SMALL)
    model.float()
    assert circuit.nodes and all(abs(w) <= 1 + 1e-9 for w in circuit.edges.values())


def test_one_core_neuron_per_target_is_a_valid_setting(digits):
    """tau=1 leaves one neuron (one concept) per layer to group: a one-group layer."""
    model, x, _ = digits
    circuit = build_circuit(model, ["relu2", "relu3"], 3, x, tau=1, k=10, n_steps=8,
                            progress=False)  # fmt: skip
    assert [len(circuit.node_ids(layer)) for layer in circuit.layers] == [1, 1]
    assert all(len(ranked) == 1 for cores in circuit.core_neurons.values()
               for ranked in cores.values())  # fmt: skip


@pytest.mark.parametrize("size", [1, 3, 64])
def test_rebatcher_groups_are_the_stream_cut_every_size_rows(size):
    sizes = (2, 64, 1, 7, 0, 30)
    batches = [torch.randn(n, 2, 3) for n in sizes]
    firsts = torch.tensor((0, *sizes[:-1])).cumsum(0)
    batcher = _passes.Rebatcher(size)
    groups = []
    for first, batch in zip(firsts.tolist(), batches, strict=True):
        groups += batcher.push(torch.arange(first, first + len(batch)), batch)
    groups += batcher.flush()
    stream = torch.cat(batches)
    expected = torch.arange(len(stream)).split(size)
    assert [len(ids) for ids, _ in groups] == [len(c) for c in expected]
    assert torch.equal(torch.cat([ids for ids, _ in groups]), torch.arange(len(stream)))
    assert torch.equal(torch.cat([rows for _, rows in groups]), stream)


def test_rebatcher_holds_a_batch_once_whatever_its_number_of_groups():
    """One 64-image batch cut into groups of one: the groups together hold at most the batch
    and one pending part (cutting by re-joining the rest for every group held 64 x 65 / 2)."""
    batcher = _passes.Rebatcher(1)
    pending = torch.randn(1, 3, 16, 16)
    batcher.push(torch.arange(0, 0), pending[:0])
    batch = torch.randn(64, 3, 16, 16)
    groups = batcher.push(torch.arange(64), batch)
    storages = {rows.untyped_storage().data_ptr(): rows.untyped_storage().nbytes()
                for _, rows in groups}  # fmt: skip
    assert len(groups) == 64
    assert sum(storages.values()) <= batch.untyped_storage().nbytes() + pending.nbytes


@pytest.mark.parametrize("most_images", [None, 2, 50])
def test_summaries_written_in_blocks_equal_the_concatenated_batches(monkeypatch, most_images):

    monkeypatch.setattr(_passes._Rows, "block_bytes", 5 * 3 * 4)  # blocks of 5 rows of 3
    batches = [torch.randn(n, 3) for n in (2, 4, 1, 7, 3)]
    rows = _passes._Rows(None if most_images is None else most_images * 1)
    for batch in batches:
        rows.append(batch)
    assert torch.equal(rows.joined(), torch.cat(batches))


def test_summaries_are_each_crops_neuron_means(digits, monkeypatch):
    """Written in several blocks (or one), the summaries are the layer's spatial means of
    every crop, read here with a plain forward hook, and the target values its logits."""
    from captum_groups.discovery import crop_and_resize, crop_boxes

    monkeypatch.setattr(_passes._Rows, "block_bytes", 100 * 32 * 4)  # 100 crops a block
    model, x, _ = digits
    x = x[:40]
    boxes = crop_boxes(8, 8, NEURFLOW_SCALES)
    seen = []
    handle = model.relu2.register_forward_hook(lambda m, i, o: seen.append(o.mean((2, 3))))
    with torch.no_grad():
        logits = model(crop_and_resize(x, boxes))
    handle.remove()
    for most_images in (None, len(x)):
        selection = _passes.Selection([3], boxes)
        layers = {"relu2": model.relu2}
        summariser = _passes.Summariser(model, selection, layers, 64, most_images)
        for start in range(0, len(x), 7):
            summariser.push(torch.arange(start, min(start + 7, len(x))), x[start : start + 7])
        finished = summariser.finish()
        torch.testing.assert_close(finished.summaries["relu2"], seen[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(finished.target_values[3], logits[:, 3], rtol=1e-5, atol=1e-5)
