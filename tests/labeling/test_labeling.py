"""Concept labels: planted and class-selective groups, hand-checked IoU, a stand-in CLIP, errors."""

from __future__ import annotations

from math import comb

import matplotlib
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from captum_groups import Circuit, GroupSet, NeuronGroup, build_circuit, label_groups
from captum_groups.labeling import (
    EmbeddingLabeler,
    EnrichmentLabeler,
    GroupEvidence,
    GroupLabel,
    Labeler,
    LabelerError,
    MaskLabeler,
)

from .._helpers import assert_same_state, model_state

matplotlib.use("Agg")


pytestmark = pytest.mark.usefixtures("one_thread")


def _factor_model() -> nn.Module:
    """Neurons 0-2 read factor 0, 3-5 factor 1, 6-8 factor 2, 9-11 factor 3 (1x1 conv, ReLU)."""
    model = nn.Sequential(
        nn.Conv2d(4, 12, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 4)
    )
    with torch.no_grad():
        for layer in (model[0], model[4]):
            layer.weight.zero_()
            layer.bias.zero_()
        for neuron in range(12):
            model[0].weight[neuron, neuron // 3] = 1.0 + 0.1 * (neuron % 3)
            model[4].weight[neuron // 3, neuron] = 1.0  # class c reads the factor-c neurons
    return model.eval()


def _factor_data(n: int = 160) -> tuple[torch.Tensor, torch.Tensor]:
    """Class c images hold a strong blob of factor c; a third also hold a faint blob of another."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 4
    images = torch.zeros(n, 4, 8, 8)
    for i, label in enumerate(labels.tolist()):
        top, left = torch.randint(0, 5, (2,), generator=generator).tolist()
        images[i, label, top : top + 4, left : left + 4] = 0.8 + 0.7 * torch.rand(
            1, generator=generator
        )
        if torch.rand(1, generator=generator) < 0.33:
            other = (label + 1 + int(torch.randint(0, 3, (1,), generator=generator))) % 4
            images[i, other, :3, :3] = 0.3
    return images, labels


FACTOR_GROUPS = GroupSet(
    NeuronGroup("1", range(3 * f, 3 * f + 3), name=f"factor{f}") for f in range(4)
)


def test_enrichment_labels_planted_class_selective_groups():
    model, (images, labels) = _factor_model(), _factor_data()
    names = {0: "zero", 1: "one", 2: "two", 3: "three"}
    labeling = label_groups(
        FACTOR_GROUPS, EnrichmentLabeler(labels, names), model, images, k=30, progress=False
    )
    assert [g.label for g in labeling.groups] == ["zero", "one", "two", "three"]
    for answer in labeling.labels.values():
        assert answer.score == 1.0 and answer.evidence["p_value"] < 1e-10
        assert answer.evidence["base_rate"] == 0.25 and answer.evidence["enrichment"] == 4.0
    from captum_groups.discovery import mine_exemplars
    from captum_groups.viz import plot_group_exemplars

    found = mine_exemplars(model, "1", images, k=3, groups=labeling.groups, progress=False)
    montage = plot_group_exemplars(found.groups, images, labeling.groups, n=3)
    assert "zero" in montage.axes[0].get_ylabel() and "three" in montage.axes[9].get_ylabel()
    attributes = torch.stack([labels < 2, labels >= 2], 1)
    by_attribute = label_groups(
        FACTOR_GROUPS, EnrichmentLabeler(attributes, ["low", "high"]), model, images, k=30,
        progress=False,
    )  # fmt: skip
    assert [g.label for g in by_attribute.groups] == ["low", "low", "high", "high"]
    again = label_groups(
        FACTOR_GROUPS, EnrichmentLabeler(labels), model, TensorDataset(images, labels), k=30,
        progress=False,
    )  # fmt: skip
    assert [g.label for g in again.groups] == ["0", "1", "2", "3"]


def test_enrichment_significance_by_hand():
    """10 images, 4 of them 'a'; the exemplars are 3 images, all 'a':
    P(X >= 3) = C(4,3) C(6,0) / C(10,3) = 4/120, times 2 candidates (Bonferroni)."""
    labels = ["a"] * 4 + ["b"] * 6
    evidence = GroupEvidence(
        "g", NeuronGroup("l", [0]), torch.tensor([0, 1, 1, 2]), *[None] * 5
    )  # image 1 twice (two crops): counted once
    strict = EnrichmentLabeler(labels).label(evidence)
    assert strict.label is None, "2 x 4/120 = 0.067 is not significant at 0.01"
    assert strict.evidence["p_value"] == pytest.approx(2 * comb(4, 3) / comb(10, 3))
    loose = EnrichmentLabeler(labels, alpha=0.1).label(evidence)
    assert loose.label == "a" and loose.score == 1.0
    assert loose.evidence["images"] == 3 and loose.evidence["exemplars"] == 4
    assert loose.evidence["enrichment"] == pytest.approx(1 / 0.4)


def test_enrichment_recovers_the_class_of_class_selective_digit_neurons():
    """Groups of the relu3 channels that respond to one digit more than to any other
    (selectivity measured on the training split) are labelled with that digit on the test split."""
    from captum_groups._model.capture import layer_outputs
    from captum_groups.datasets import digits_cnn, load_digits

    model = digits_cnn()
    (x_train, y_train), (x_test, y_test) = load_digits("train"), load_digits("test")
    means = layer_outputs(model, x_train, model.relu3).mean((2, 3))
    per_class = torch.stack([means[y_train == c].mean(0) for c in range(10)])
    groups = []
    for digit in range(10):
        others = torch.cat([per_class[:digit], per_class[digit + 1 :]]).max(0).values
        selectivity = (per_class[digit] - others) / per_class.max(0).values.clamp_min(1e-6)
        best = selectivity.topk(3)
        chosen = best.indices[best.values >= 0.1].tolist()
        if chosen:
            groups.append(NeuronGroup("relu3", chosen, name=str(digit)))
    assert len(groups) >= 6
    labeling = label_groups(groups, EnrichmentLabeler(y_test), model, x_test, k=30, progress=False)
    assert [g.label for g in labeling.groups] == [g.name for g in groups]


def _identity_model() -> nn.Module:
    """Channel 0 = the input, channel 1 = its negative (silent after the ReLU)."""
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU())
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
        model[0].bias.zero_()
    return model.eval()


def test_mask_iou_checked_by_hand():
    """The group's map is the image itself. Maps above 0.5: image 0 fires on its top-left
    2x2 block, image 1 on three pixels of the bottom right. Masks: 'top-left' (the 2x2 block)
    and 'bottom' (rows 2-3). IoU(top-left) = (4 + 0) / (4 + 7) = 4/11;
    IoU(bottom) = (0 + 3) / (12 + 8) = 3/20."""
    images = torch.zeros(3, 1, 4, 4)
    images[0, 0, :2, :2] = 1.0
    images[1, 0, 2, 2:] = 1.0
    images[1, 0, 3, 2] = 1.0
    images[2, 0] = 0.1  # mean 0.1: not among the two exemplars
    masks = torch.zeros(3, 2, 4, 4, dtype=torch.bool)
    masks[:, 0, :2, :2] = True
    masks[:, 1, 2:] = True
    group = NeuronGroup("1", [0], name="g")
    labeler = MaskLabeler(masks, ["top-left", "bottom"], threshold=0.5)
    labeling = label_groups(group, labeler, _identity_model(), images, k=2, progress=False)
    answer = labeling.labels["g"]
    assert answer.label == "top-left" and answer.score == pytest.approx(4 / 11)
    assert answer.evidence["iou"] == pytest.approx({"top-left": 4 / 11, "bottom": 3 / 20})
    # the quantile threshold is the quantile of the exemplars' map values (numpy's definition)
    import numpy as np

    quantile = float(np.quantile(images[:2].numpy(), 0.9))
    by_quantile = MaskLabeler({"top-left": masks[:, 0], "bottom": masks[:, 1]}, quantile=0.9)
    answer = label_groups(group, by_quantile, _identity_model(), images, k=2, progress=False)
    assert answer.labels["g"].evidence["threshold"] == pytest.approx(quantile)
    with pytest.raises(LabelerError, match=r"group 'g'.*lies outside them"):
        label_groups(group, MaskLabeler(masks[:1], threshold=0.5), _identity_model(), images, k=2,
                     progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="one name per concept"):
        MaskLabeler(masks, ["only one"])
    flat = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    with pytest.raises(LabelerError, match="no spatial axes"):
        label_groups(NeuronGroup("1", [0]), labeler, flat, images, k=2, progress=False)


def test_embedding_labeler_with_a_stand_in_vision_language_model():
    """A tiny stand-in for CLIP: an image embeds as (top brightness, bottom brightness), and
    'top' / 'bottom' / 'everywhere' embed along those axes. Groups whose exemplars are bright
    on top (channel 0 only ever holds top content) are labelled 'top'."""
    generator = torch.Generator().manual_seed(0)
    images = torch.zeros(40, 2, 4, 4)
    for i in range(40):
        value = 0.5 + torch.rand(1, generator=generator)
        if i % 2:
            images[i, 0, :2] = value
        else:
            images[i, 1, 2:] = value
    model = nn.Sequential(nn.Conv2d(2, 2, 1), nn.ReLU())
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(2).view(2, 2, 1, 1))
        model[0].bias.zero_()
    calls = []

    def image_embedding(crops):
        calls.append(len(crops))
        bright = crops.sum(1)
        return torch.stack([bright[:, :2].mean((1, 2)), bright[:, 2:].mean((1, 2))], 1)

    words = {"top": [1.0, 0.0], "bottom": [0.0, 1.0], "everywhere": [1.0, 1.0]}

    def text_embedding(prompts):
        return torch.tensor([words[p.removeprefix("a digit drawn at the ")] for p in prompts])

    labeler = EmbeddingLabeler(
        image_embedding, text_embedding, list(words), template="a digit drawn at the {}",
        batch_size=8,
    )  # fmt: skip
    groups = [NeuronGroup("1", [0], name="upper"), NeuronGroup("1", [1], name="lower")]
    labeling = label_groups(groups, labeler, model, images, k=10, progress=False)
    assert [g.label for g in labeling.groups] == ["top", "bottom"]
    assert labeling.labels["upper"].score > 0.9
    assert max(calls) <= 8
    assert set(labeling.labels["upper"].evidence["probability"]) == set(words)
    wrong_size = EmbeddingLabeler(lambda x: torch.ones(len(x), 3), text_embedding, list(words))
    with pytest.raises(LabelerError, match=r"group 'upper'.*3-d and text_embedding 2-d"):
        label_groups(groups, wrong_size, model, images, k=4, progress=False)
    with pytest.raises(ValueError, match="exactly one"):
        EmbeddingLabeler(image_embedding, text_embedding, ["top"], template="no slot")


def test_a_labeler_that_raises_or_returns_garbage_names_the_group():
    model, (images, _) = _factor_model(), _factor_data(40)

    def raising(evidence):
        raise KeyError("no such concept")

    class Broken(Labeler):
        def __init__(self, answer):
            self.answer = answer

        def label(self, evidence):
            return self.answer

    garbage = {
        "returned str": "just a string",
        "returned the label 3": GroupLabel(3, 1.0),
        "returned the label '  '": GroupLabel("  ", 1.0),
        "returned the score nan": GroupLabel("x", float("nan")),
        "returned the score 'high'": GroupLabel("x", "high"),
        "holds a object": GroupLabel("x", 1.0, {"model": object()}),
        "non-finite": GroupLabel("x", 1.0, {"p": [float("inf")]}),
    }
    for message, answer in garbage.items():
        with pytest.raises(LabelerError, match=rf"Broken on group 'factor0'.*{message}"):
            label_groups(FACTOR_GROUPS, Broken(answer), model, images, k=5, progress=False)
    with pytest.raises(LabelerError, match=r"raising failed on group 'factor0'.*KeyError") as info:
        label_groups(FACTOR_GROUPS, raising, model, images, k=5, progress=False)
    assert isinstance(info.value.__cause__, KeyError)
    # tuples are accepted, numpy and torch values become JSON values
    import numpy as np

    def as_tuple(evidence):
        return ("blob", np.float32(0.5), {"values": evidence.values[:2], "n": np.int64(2)})

    labeling = label_groups(FACTOR_GROUPS, as_tuple, model, images, k=5, progress=False)
    assert labeling.labels["factor0"].evidence["n"] == 2
    assert labeling.labeler == "as_tuple"


def test_labels_reach_the_circuit_its_json_and_its_plot(tmp_path):
    model = _factor_model()
    images, labels = _factor_data()
    before = model_state(model)
    circuit = build_circuit(
        model, ["1"], 0, images, tau=3, k=20, n_groups=2, n_steps=8, progress=False
    )
    labeling = label_groups(circuit, EnrichmentLabeler(labels), model, images, progress=False)
    assert_same_state(before, model_state(model))
    labelled = labeling.circuit
    assert [g.label for g in labelled.nodes.values()] == ["0"]  # factor 0 is class 0's
    assert all(g.label is None for g in circuit.nodes.values()), "the given circuit is unchanged"
    for node, group in labelled.nodes.items():
        assert group.label == labeling.labels[node].label
        assert labelled.label_details[node]["labeler"] == "EnrichmentLabeler"
        assert labelled.label_details[node]["score"] == labeling.labels[node].score
    assert Circuit.from_json(labelled.to_json()) == labelled
    figure = labelled.plot(images)
    texts = " ".join(t.get_text() for t in figure.axes[0].texts)
    for node, group in labelled.nodes.items():
        if group.label is not None:
            assert f"{group.label} ({labeling.labels[node].score:.2f})" in texts
    assert "EnrichmentLabeler" in str(labeling) and node in labeling.table()
    # k=None: the exemplars the circuit stores (its thumbnails)
    stored = label_groups(circuit, EnrichmentLabeler(labels), model, images, k=None, progress=False)
    assert all(
        a.evidence["exemplars"] == len(circuit.exemplars[n]) for n, a in stored.labels.items()
    )


def test_label_groups_checks_its_input():
    model, (images, labels) = _factor_model(), _factor_data(20)
    labeler = EnrichmentLabeler(labels)
    with pytest.raises(ValueError, match="k=None uses a circuit's stored exemplars"):
        label_groups(FACTOR_GROUPS, labeler, model, images, k=None)
    with pytest.raises(ValueError, match="k must be a positive int"):
        label_groups(FACTOR_GROUPS, labeler, model, images, k=0)
    with pytest.raises(TypeError, match="labeler must be a Labeler or a callable"):
        label_groups(FACTOR_GROUPS, "enrichment", model, images)
    with pytest.raises(TypeError, match="circuit_or_groups must be a Circuit"):
        label_groups("relu3", labeler, model, images)
    with pytest.raises(ValueError, match="distinct names"):
        label_groups([FACTOR_GROUPS[0], FACTOR_GROUPS[0]], labeler, model, images, k=3)
    with pytest.raises(LabelerError, match="labels has 10 entries"):
        label_groups(FACTOR_GROUPS, EnrichmentLabeler(labels[:10]), model, images, k=5,
                     progress=False)  # fmt: skip
    with pytest.raises(TypeError, match="looked up by data-set index"):
        label_groups(FACTOR_GROUPS, labeler, model, [images[:10], images[10:]], k=5,
                     progress=False)  # fmt: skip
    from torch.utils.data import DataLoader

    shuffled = DataLoader(TensorDataset(images, labels), batch_size=8, shuffle=True)
    with pytest.raises(ValueError, match="shuffling DataLoader"):
        label_groups(FACTOR_GROUPS, labeler, model, shuffled, k=5, progress=False)
    with pytest.raises(ValueError, match="one name per attribute column"):
        EnrichmentLabeler(torch.ones(5, 2, dtype=torch.bool), ["only one"])
