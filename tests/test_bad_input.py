"""Bad input gets a clear error that names the parameter: one battery across the public API.

Each case of :data:`CASES` is a call with one bad argument, the exception it
must raise, and a pattern its message must match; the pattern names the
parameter (or the field, for circuit JSON) and what was expected.
"""

from __future__ import annotations

import copy
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from captum_groups import (
    BEANRegularizer,
    Circuit,
    CircuitSettings,
    GroupSet,
    NeuronGroup,
    ablate,
    build_circuit,
    edge_fidelity,
    find_assemblies,
    masking_fidelity,
    neuro,
)
from captum_groups.attr import (
    GroupConductance,
    GroupDeepLift,
    GroupFeatureAblation,
    GroupGradient,
    GroupGradientShap,
    GroupIntegratedGradients,
    LayerGroupAblation,
    LayerGroupConductance,
    LayerGroupGradientXActivation,
    LayerGroupInteraction,
)
from captum_groups.datasets import digits_cnn, load_digits
from captum_groups.discovery import (
    CoactivationClustering,
    ConceptClustering,
    ExemplarMiner,
    NMFGroups,
    crop_and_resize,
    mine_exemplars,
)
from captum_groups.report import build_atlas
from captum_groups.viz import group_objective, plot_group_exemplars, render_circuit, render_groups

from ._helpers import assert_same_state, model_state


@dataclass
class Context:
    model: nn.Module
    x: Tensor
    y: Tensor


@pytest.fixture(scope="module")
def digits() -> tuple[Tensor, Tensor]:
    x, y = load_digits("test")
    return x[:12], y[:12]


@pytest.fixture
def ctx(digits) -> Context:
    return Context(digits_cnn(), digits[0][:2], digits[1][:2])


def _fresh_folder() -> Path:
    return Path(tempfile.mkdtemp()) / "atlas"


def _dangling_link() -> Path:
    link = Path(tempfile.mkdtemp()) / "atlas"
    link.symlink_to(link.parent / "missing")
    return link


G2 = NeuronGroup("conv2", [0])
LOWER = GroupSet.from_labels("relu2", np.arange(32) % 4)
UPPER = GroupSet.from_labels("relu3", np.arange(64) % 3)


def _circuit_json(**changes: object) -> str:
    circuit = Circuit(
        3,
        ["relu2", "relu3"],
        {"a": NeuronGroup("relu2", [0, 1], name="a"), "b": NeuronGroup("relu3", [4], name="b")},
        {("a", "b"): 0.5, ("b", "target"): 1.0},
        exemplars={"b": [(0, (0, 0, 8, 8))]},
    )
    data = circuit.to_dict()
    for key, value in changes.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    return json.dumps(data)


def _foreign_circuit() -> Circuit:
    return Circuit(1, ["relu9"], {"a": NeuronGroup("relu9", [0])}, {("a", "target"): 1.0})


def _inference_copy(x: Tensor) -> Tensor:
    with torch.inference_mode():
        return x.clone()


def _meta_model(c: Context) -> None:
    GroupGradient(digits_cnn().to("meta"), "conv2").attribute(c.x, G2)


def _layer_not_run(c: Context) -> None:
    class WithUnused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Linear(64, 3)
            self.unused = nn.Linear(3, 3)

        def forward(self, inputs: Tensor) -> Tensor:
            return self.used(inputs.flatten(1))

    GroupGradient(WithUnused(), "unused").attribute(c.x, NeuronGroup("unused", [0]))


def _nested_layers(c: Context) -> None:
    model = nn.Sequential(nn.Sequential(nn.Linear(3, 4), nn.ReLU()), nn.Linear(4, 2))
    LayerGroupInteraction(model, "0.1", "0").attribute_from_activations(
        torch.rand(2, 4), NeuronGroup("0", [0]), NeuronGroup("0.1", [0])
    )


def _inside_torch_leaf(c: Context) -> None:
    model = nn.Sequential(nn.TransformerEncoderLayer(4, 2, 8, batch_first=True), nn.ReLU())
    LayerGroupInteraction(model, "0.linear1", "1").attribute_from_activations(
        torch.rand(2, 5, 8), NeuronGroup("1", [0], dim=-1), NeuronGroup("0.linear1", [0], dim=-1)
    )


def _sequence_linear(c: Context) -> None:
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU())
    mine_exemplars(model, "0", torch.rand(6, 7, 3), k=2, progress=False)


def _reentered(c: Context) -> None:
    ablation = ablate(c.model, G2)
    with ablation, ablation:
        pass


class OneBranch(nn.Module):
    """Two layers, of which the forward pass runs only ``a``."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(2, 2)
        self.b = nn.Linear(2, 2)

    def forward(self, inputs: Tensor) -> Tensor:
        return self.a(inputs)


def _idle_layer(c: Context) -> None:
    model = OneBranch()
    with ablate(model, NeuronGroup("b", [0])):
        model(torch.ones(1, 2))


def _value_of_wrong_length(c: Context) -> None:
    with ablate(c.model, G2, value=torch.zeros(3)):
        c.model(c.x)


def _merge(c: Context, layer: str = "relu3", k: int = 2, start_index: int = 0) -> None:
    first = ExemplarMiner(c.model, "relu3", k=2)
    first.update(c.x)
    other = ExemplarMiner(c.model, layer, k=k, start_index=start_index)
    other.update(c.x)
    first.merge(other)


def _small_images_miner(c: Context) -> None:
    first = ExemplarMiner(c.model, "relu3", k=2)
    first.update(c.x)
    other = ExemplarMiner(c.model, "relu3", k=2, start_index=10)
    other.update(torch.nn.functional.interpolate(c.x, size=(12, 12)))
    first.merge(other)


def _montage(c: Context, **kwargs: object) -> None:
    found = mine_exemplars(c.model, "relu3", c.x, k=2, groups=UPPER, progress=False)
    plot_group_exemplars(found.groups, c.x, kwargs.pop("groups", UPPER), **kwargs)


@dataclass(frozen=True)
class Case:
    id: str
    call: Callable[[Context], object]
    error: type[Exception]
    match: str


CASES = [
    # groups
    Case("empty-group", lambda c: NeuronGroup("conv1", []), ValueError, "indices must name"),
    Case(
        "duplicate-indices",
        lambda c: NeuronGroup("conv1", [1, 2, 2]),
        ValueError,
        r"indices must not repeat.*\[2\]",
    ),
    Case(
        "negative-indices",
        lambda c: NeuronGroup("conv1", [-1]),
        ValueError,
        "indices must be non-negative",
    ),
    Case(
        "weights-length",
        lambda c: NeuronGroup("conv1", [0, 1], weights=[1.0]),
        ValueError,
        "weights must have one entry per index: got 1",
    ),
    Case(
        "weights-nan",
        lambda c: NeuronGroup("conv1", [0], weights=[float("nan")]),
        ValueError,
        "weights must be finite",
    ),
    Case(
        "reduction",
        lambda c: NeuronGroup("conv1", [0], reduction="median"),
        ValueError,
        "reduction must be one of",
    ),
    Case(
        "dim-zero",
        lambda c: NeuronGroup("conv1", [0], dim=0),
        ValueError,
        "dim must be a non-zero integer",
    ),
    Case(
        "layer-type",
        lambda c: NeuronGroup(3, [0]),
        TypeError,
        "layer must be an nn.Module or a dotted",
    ),
    Case(
        "groupset-mixed",
        lambda c: GroupSet([G2, NeuronGroup("conv3", [0])]),
        ValueError,
        "groups must all belong to one layer",
    ),
    Case("groupset-empty", lambda c: GroupSet([]), ValueError, "groups must hold at least one"),
    # attribution: layers and groups
    Case(
        "unknown-layer",
        lambda c: GroupGradient(c.model, "conv9"),
        ValueError,
        r"layer='conv9' is not a submodule.*conv1",
    ),
    Case(
        "layer-name-needs-module",
        lambda c: GroupGradient(lambda x: x, "fc"),
        TypeError,
        "layer='fc' is a name",
    ),
    Case(
        "layer-of-a-copy",
        lambda c: GroupGradient(c.model, copy.deepcopy(c.model).conv2),
        ValueError,
        "layer is a Conv2d module that is not part of DigitsCNN",
    ),
    Case(
        "index-out-of-range",
        lambda c: GroupGradient(c.model, "conv1").attribute(c.x, NeuronGroup("conv1", [3, 16])),
        ValueError,
        "indices out of range.*16 neurons",
    ),
    Case(
        "captum-index-out-of-range",
        lambda c: GroupGradient(c.model, "conv1").attribute(c.x, (16, 0, 0)),
        ValueError,
        r"group index .* out of range",
    ),
    Case(
        "empty-group-sequence",
        lambda c: GroupGradient(c.model, "conv1").attribute(c.x, []),
        ValueError,
        "group is an empty sequence",
    ),
    Case(
        "position-does-not-fit",
        lambda c: GroupGradient(c.model, "conv3").attribute(
            c.x, NeuronGroup("conv3", [0], reduction=(5, 0))
        ),
        ValueError,
        "reduction position",
    ),
    Case(
        "groups-of-two-layers",
        lambda c: GroupGradient(c.model, "conv2").attribute(c.x, [G2, NeuronGroup("conv3", [0])]),
        ValueError,
        "belongs to layer 'conv3'.*attribution is for layer",
    ),
    Case(
        "group-type",
        lambda c: GroupGradient(c.model, "conv2").attribute(c.x, "conv2"),
        TypeError,
        "group must be a NeuronGroup",
    ),
    Case("layer-not-run", _layer_not_run, ValueError, "did not run"),
    Case(
        "data-parallel",
        lambda c: GroupGradient(nn.DataParallel(c.model), "module.conv2"),
        ValueError,
        "forward_func is an nn.DataParallel",
    ),
    Case(
        "group-batch-size",
        lambda c: GroupGradient(c.model, "conv2").attribute(c.x, [G2], group_batch_size=0),
        ValueError,
        "group_batch_size must be a positive int",
    ),
    # attribution: inputs and baselines
    Case(
        "nan-inputs",
        lambda c: GroupGradient(c.model, "conv2").attribute(c.x * float("nan"), G2),
        ValueError,
        "inputs contain NaN or infinite",
    ),
    Case(
        "inf-inputs",
        lambda c: GroupGradient(c.model, "conv2").attribute(c.x + float("inf"), G2),
        ValueError,
        "inputs contain NaN or infinite",
    ),
    Case(
        "nan-baselines",
        lambda c: GroupIntegratedGradients(c.model, "conv2").attribute(
            c.x, G2, baselines=torch.full_like(c.x, float("nan"))
        ),
        ValueError,
        "baselines contain NaN",
    ),
    Case(
        "nan-scalar-baselines",
        lambda c: GroupIntegratedGradients(c.model, "conv2").attribute(
            c.x, G2, baselines=float("nan")
        ),
        ValueError,
        "baselines contain NaN or infinite values, got nan",
    ),
    Case(
        "model-on-another-device",
        _meta_model,
        ValueError,
        "inputs are on cpu but the model's parameters are on meta",
    ),
    Case(
        "meta-inputs",
        lambda c: GroupGradient(c.model, "conv2").attribute(c.x.to("meta"), G2),
        ValueError,
        "inputs are on the meta device",
    ),
    Case(
        "empty-batch-conductance",
        lambda c: GroupConductance(c.model, "conv2").attribute(c.x[:0], G2, target=1),
        ValueError,
        "inputs must be a non-empty batch",
    ),
    Case(
        "empty-batch-deeplift",
        lambda c: GroupDeepLift(c.model, "conv2").attribute(c.x[:0], G2),
        ValueError,
        "inputs must be a non-empty batch",
    ),
    Case(
        "empty-batch-layer-conductance",
        lambda c: LayerGroupConductance(c.model, "relu2").attribute(c.x[:0], LOWER, target=1),
        ValueError,
        "inputs must be a non-empty batch",
    ),
    Case(
        "empty-batch-gradient-x-activation",
        lambda c: LayerGroupGradientXActivation(c.model, "relu2").attribute(
            c.x[:0], LOWER, target=1
        ),
        ValueError,
        "inputs must be a non-empty batch",
    ),
    Case(
        "empty-batch-interaction",
        lambda c: LayerGroupInteraction(c.model, "relu2", "relu3").attribute(c.x[:0], UPPER, LOWER),
        ValueError,
        "inputs must be a non-empty batch",
    ),
    Case(
        "target-must-select-one",
        lambda c: GroupConductance(c.model, "conv2").attribute(c.x, G2, n_steps=2),
        ValueError,
        "target must select one output per example",
    ),
    # attribution: counts and methods
    Case(
        "n-steps-ig",
        lambda c: GroupIntegratedGradients(c.model, "conv2").attribute(c.x, G2, n_steps=0),
        ValueError,
        "n_steps must be a positive int, got 0",
    ),
    Case(
        "n-steps-conductance",
        lambda c: GroupConductance(c.model, "conv2").attribute(c.x, G2, target=1, n_steps=0),
        ValueError,
        "n_steps must be a positive int",
    ),
    Case(
        "n-steps-layer-conductance",
        lambda c: LayerGroupConductance(c.model, "relu2").attribute(
            c.x, LOWER, target=1, n_steps=0
        ),
        ValueError,
        "n_steps must be a positive int",
    ),
    Case(
        "n-steps-interaction",
        lambda c: LayerGroupInteraction(c.model, "relu2", "relu3").attribute(
            c.x, UPPER, LOWER, n_steps=0
        ),
        ValueError,
        "n_steps must be a positive int",
    ),
    Case(
        "method",
        lambda c: GroupIntegratedGradients(c.model, "conv2").attribute(c.x, G2, method="simpson"),
        ValueError,
        "method must be one of",
    ),
    Case(
        "internal-batch-size",
        lambda c: GroupIntegratedGradients(c.model, "conv2").attribute(
            c.x, G2, internal_batch_size=0
        ),
        ValueError,
        "internal_batch_size must be a positive int",
    ),
    Case(
        "n-samples",
        lambda c: GroupGradientShap(c.model, "conv2").attribute(
            c.x, G2, torch.zeros(2, 1, 8, 8), n_samples=0
        ),
        ValueError,
        "n_samples must be a positive int",
    ),
    Case(
        "perturbations-per-eval",
        lambda c: GroupFeatureAblation(c.model, "conv2").attribute(
            c.x, G2, perturbations_per_eval=0
        ),
        ValueError,
        "perturbations_per_eval must be a positive int",
    ),
    # attribution between layers
    Case(
        "target-before-layer-conductance",
        lambda c: LayerGroupConductance(c.model, "relu2").attribute(
            c.x, LOWER, target=NeuronGroup("relu1", [0])
        ),
        ValueError,
        "layer 'relu1' runs before layer 'relu2'",
    ),
    Case(
        "target-before-ablation",
        lambda c: LayerGroupAblation(c.model, "relu2").attribute(
            c.x, LOWER, target=NeuronGroup("relu1", [0])
        ),
        ValueError,
        "layer 'relu1' runs before layer 'relu2'",
    ),
    Case(
        "target-same-layer",
        lambda c: LayerGroupAblation(c.model, "relu2").attribute(c.x, LOWER, target=LOWER[0]),
        ValueError,
        "target group .* belongs to the attributed layer itself",
    ),
    Case(
        "ablation-value",
        lambda c: LayerGroupAblation(c.model, "relu2").attribute(c.x, LOWER, value="median"),
        ValueError,
        "value must be 'zero', 'mean', a number or a tensor",
    ),
    Case(
        "ablation-mean-needs-data",
        lambda c: LayerGroupAblation(c.model, "relu2").attribute(c.x, LOWER, value="mean"),
        ValueError,
        "value='mean' needs data",
    ),
    Case(
        "ablation-nan-value",
        lambda c: LayerGroupAblation(c.model, "relu2").attribute(c.x, LOWER, value=float("nan")),
        ValueError,
        "value must be a finite number",
    ),
    Case(
        "ablation-nan-mean-data",
        lambda c: LayerGroupAblation(c.model, "relu2").attribute(
            c.x, LOWER, value="mean", data=c.x * float("nan")
        ),
        ValueError,
        "data gives NaN or infinite activations at layer 'relu2'",
    ),
    Case(
        "upper-group-of-another-layer",
        lambda c: LayerGroupInteraction(c.model, "relu2", "relu3").attribute(c.x, LOWER, LOWER),
        ValueError,
        "upper group .* does not belong to upper_layer",
    ),
    Case(
        "upper-equals-lower",
        lambda c: LayerGroupInteraction(c.model, "relu2", "relu2"),
        ValueError,
        "upper_layer and lower_layer are the same module",
    ),
    Case(
        "upper-runs-first",
        lambda c: LayerGroupInteraction(c.model, "relu3", "relu2").attribute(c.x, LOWER, UPPER),
        ValueError,
        "layer 'relu2' runs before layer 'relu3'",
    ),
    Case(
        "empty-loader",
        lambda c: LayerGroupInteraction(c.model, "relu2", "relu3").attribute([], UPPER, LOWER),
        ValueError,
        "inputs is an empty data loader",
    ),
    Case(
        "dict-batch-without-inputs",
        lambda c: LayerGroupInteraction(c.model, "relu2", "relu3").attribute(
            [{"foo": c.x}], UPPER, LOWER
        ),
        ValueError,
        "inputs yields dict batches without inputs",
    ),
    Case(
        "lower-inside-upper",
        _nested_layers,
        ValueError,
        "lower_layer '0.1' is inside the other layer '0'.*subnetwork=",
    ),
    Case(
        "inside-torch-nn-leaf",
        _inside_torch_leaf,
        ValueError,
        "lower_layer '0.linear1' is inside '0' .*torch.nn module.*subnetwork=",
    ),
    # ablate / retain
    Case(
        "ablate-model-type",
        lambda c: ablate(lambda x: x, G2),
        TypeError,
        "model must be an nn.Module",
    ),
    Case(
        "ablate-groups-type",
        lambda c: ablate(c.model, "conv2"),
        TypeError,
        "groups must be a NeuronGroup",
    ),
    Case("ablate-groups-empty", lambda c: ablate(c.model, []), ValueError, "groups is empty"),
    Case(
        "ablate-group-of-a-copy",
        lambda c: ablate(c.model, NeuronGroup(copy.deepcopy(c.model).conv2, [0])),
        ValueError,
        "group.layer is a Conv2d module that is not part of",
    ),
    Case(
        "ablate-mean-empty-data",
        lambda c: ablate(c.model, G2, value="mean", data=[c.x[:0]]),
        ValueError,
        "data is empty; value='mean'",
    ),
    Case(
        "ablate-mean-nan-data",
        lambda c: ablate(c.model, G2, value="mean", data=c.x * float("nan")),
        ValueError,
        "data gives NaN or infinite activations at layer 'conv2'",
    ),
    Case("ablate-value-length", _value_of_wrong_length, ValueError, "value has 3 entries"),
    Case(
        "ablate-value-type",
        lambda c: ablate(c.model, G2, value=[0.0]),
        TypeError,
        "value must be 'zero', 'mean', a number or a tensor",
    ),
    Case(
        "ablate-layer-never-runs",
        _idle_layer,
        ValueError,
        r"layer 'b' never ran in the 1 forward pass",
    ),
    Case("ablate-reentered", _reentered, RuntimeError, "already active"),
    # discovery
    Case(
        "miner-k",
        lambda c: ExemplarMiner(c.model, "relu3", k=0),
        ValueError,
        "k must be a positive int",
    ),
    Case(
        "miner-start-index",
        lambda c: ExemplarMiner(c.model, "relu3", start_index=-1),
        ValueError,
        "start_index must be a non-negative int",
    ),
    Case(
        "miner-groups-layer",
        lambda c: ExemplarMiner(c.model, "relu3", groups=LOWER),
        ValueError,
        "groups: group .* does not belong to the mined layer 'relu3'",
    ),
    Case(
        "miner-scales",
        lambda c: ExemplarMiner(c.model, "relu3", scales=(1.5,)),
        ValueError,
        "scales must be fractions",
    ),
    Case(
        "mine-k-larger-than-data",
        lambda c: mine_exemplars(c.model, "relu3", c.x, k=5, progress=False),
        ValueError,
        "k=5 is larger than the data",
    ),
    Case(
        "mine-sequence-linear",
        _sequence_linear,
        ValueError,
        "layer '0' is a Linear layer on 3-d inputs.*pass dim=-1",
    ),
    Case(
        "mine-dim-disagrees",
        lambda c: ExemplarMiner(c.model, "relu3", groups=[NeuronGroup("relu3", [0])], dim=-1),
        ValueError,
        "dim=-1 but the groups select neurons along dim",
    ),
    Case(
        "merge-layers",
        lambda c: _merge(c, layer="conv3", start_index=2),
        ValueError,
        "different layer: 'relu3' and 'conv3'",
    ),
    Case("merge-k", lambda c: _merge(c, k=3, start_index=2), ValueError, "different k: 2 and 3"),
    Case(
        "merge-image-size",
        _small_images_miner,
        ValueError,
        r"images of different sizes: \(8, 8\) and \(12, 12\)",
    ),
    Case(
        "merge-overlapping-ranges",
        lambda c: _merge(c),
        ValueError,
        r"index ranges overlap: \[0, 2\) and \[0, 2\).*start_index",
    ),
    Case(
        "nmf-negative",
        lambda c: NMFGroups("relu3", n_components=2).fit(-np.ones((4, 3))),
        ValueError,
        "NMF needs a non-negative layer",
    ),
    Case(
        "nmf-components",
        lambda c: NMFGroups("relu3", n_components=4).fit(np.ones((4, 3))),
        ValueError,
        "n_components must be between 1 and 3",
    ),
    Case(
        "nmf-dim",
        lambda c: NMFGroups("relu3", dim=5).fit(np.ones((4, 3))),
        ValueError,
        r"dim=5 is not an axis of X",
    ),
    Case(
        "nmf-not-fitted",
        lambda c: NMFGroups("relu3").transform(np.ones((4, 3))),
        ValueError,
        "not fitted",
    ),
    Case(
        "coactivation-n-groups",
        lambda c: CoactivationClustering("relu3", n_groups=5).fit(
            np.random.default_rng(0).random((6, 3))
        ),
        ValueError,
        "n_groups must be between 1 and 3",
    ),
    Case(
        "coactivation-method",
        lambda c: CoactivationClustering("relu3", method="kmeans").fit(np.ones((6, 3))),
        ValueError,
        "method must be",
    ),
    Case(
        "coactivation-nan",
        lambda c: CoactivationClustering("relu3").fit(np.full((6, 3), np.nan)),
        ValueError,
        "X contains NaN",
    ),
    Case(
        "concept-shape",
        lambda c: ConceptClustering("relu3").fit(np.ones((6, 3, 2, 2))),
        ValueError,
        "X must be shaped",
    ),
    Case(
        "assemblies-nan-data",
        lambda c: find_assemblies(c.model, "relu3", (c.x * float("nan"), c.y)),
        ValueError,
        "data gives NaN or infinite activations at layer 'relu3'",
    ),
    Case(
        "assemblies-need-labels",
        lambda c: find_assemblies(c.model, "relu3", c.x),
        ValueError,
        "data must give labels",
    ),
    Case(
        "meta-data",
        lambda c: mine_exemplars(c.model, "relu3", c.x.to("meta"), k=1, progress=False),
        ValueError,
        "data holds tensors on the meta device",
    ),
    Case(
        "data-type",
        lambda c: mine_exemplars(c.model, "relu3", 3, k=1, progress=False),
        TypeError,
        "data must be a tensor, a Dataset",
    ),
    # circuits
    Case(
        "json-negative-target",
        lambda c: Circuit.from_json(_circuit_json(target=-1)),
        ValueError,
        r"circuit JSON field \$\.target: -1 is less than the minimum of 0",
    ),
    Case(
        "json-version",
        lambda c: Circuit.from_json(_circuit_json(version=7)),
        ValueError,
        r"circuit JSON field \$\.version: 1 was expected",
    ),
    Case(
        "json-missing-field",
        lambda c: Circuit.from_json(_circuit_json(edges=None)),
        ValueError,
        r"circuit JSON field \$: 'edges' is a required property",
    ),
    Case(
        "json-box",
        lambda c: Circuit.from_json(_circuit_json(exemplars={"b": [[0, [0, 0, 8]]]})),
        ValueError,
        r"circuit JSON field \$\.exemplars\.b\[0\]\[1\]: \[0, 0, 8\] is too short",
    ),
    Case(
        "json-unknown-exemplar-node",
        lambda c: Circuit.from_json(_circuit_json(exemplars={"z": [[0, [0, 0, 8, 8]]]})),
        ValueError,
        "exemplars names an unknown node 'z'",
    ),
    Case(
        "json-duplicate-edge",
        lambda c: Circuit.from_json(_circuit_json(edges=[["a", "b", 0.5], ["a", "b", 0.7]])),
        ValueError,
        r"lists the edge \('a', 'b'\) twice",
    ),
    Case(
        "json-group-key",
        lambda c: Circuit.from_json(_circuit_json(nodes={"a": {"layer": "relu2"}})),
        ValueError,
        r"circuit JSON field \$\.nodes\.a: 'indices' is a required property",
    ),
    Case(
        "json-not-json",
        lambda c: Circuit.from_json("{"),
        ValueError,
        "circuit JSON is not valid JSON",
    ),
    Case(
        "circuit-negative-target",
        lambda c: Circuit(-2, ["relu2"], {}, {}),
        ValueError,
        "target must be a class index >= 0",
    ),
    Case(
        "fidelity-foreign-circuit",
        lambda c: masking_fidelity(c.model, _foreign_circuit(), c.x),
        ValueError,
        "circuit.layers='relu9' is not a submodule of DigitsCNN",
    ),
    Case(
        "edge-fidelity-foreign-circuit",
        lambda c: edge_fidelity(c.model, _foreign_circuit(), c.x),
        ValueError,
        "circuit.layers='relu9' is not a submodule",
    ),
    Case(
        "render-foreign-circuit",
        lambda c: render_circuit(c.model, _foreign_circuit(), steps=1),
        ValueError,
        "circuit.layers='relu9' is not a submodule",
    ),
    Case(
        "fidelity-mode",
        lambda c: masking_fidelity(c.model, _foreign_circuit(), c.x, mode="drop"),
        ValueError,
        "mode must be 'mask' or 'retain'",
    ),
    Case(
        "fidelity-labels",
        lambda c: masking_fidelity(
            c.model,
            Circuit(1, ["relu3"], {"a": UPPER[0]}, {("a", "target"): 1.0}),
            c.x,
            labels=torch.zeros(5, dtype=torch.long),
            n_draws=1,
        ),
        ValueError,
        r"labels must hold one class per example of data \(2\)",
    ),
    # viz
    Case(
        "render-steps",
        lambda c: render_groups(c.model, UPPER[0], size=8, steps=0),
        ValueError,
        "steps must be a positive int, got 0",
    ),
    Case(
        "render-size",
        lambda c: render_groups(c.model, UPPER[0], size=0),
        ValueError,
        "size must be a positive int",
    ),
    Case(
        "render-lr",
        lambda c: render_groups(c.model, UPPER[0], size=8, lr=-1.0),
        ValueError,
        "lr must be a positive number",
    ),
    Case(
        "render-unknown-layer",
        lambda c: render_groups(c.model, NeuronGroup("conv9", [0]), size=8, steps=1),
        ValueError,
        "'conv9' is not a submodule",
    ),
    Case(
        "render-too-small",
        lambda c: render_groups(c.model, UPPER[0], size=1, steps=1),
        ValueError,
        "size=1 is too small",
    ),
    Case(
        "objective-kind",
        lambda c: group_objective(UPPER[0], kind="max"),
        ValueError,
        "kind must be 'value' or 'direction'",
    ),
    Case(
        "objective-ambiguous-lucent-name",
        lambda c: group_objective(
            NeuronGroup("a.b", [0]),
            model=nn.ModuleDict({"a": nn.ModuleDict({"b": nn.ReLU()}), "a_b": nn.ReLU()}),
        ),
        ValueError,
        r"\['a.b', 'a_b'\] all become Lucent's layer name 'a_b'",
    ),
    Case(
        "montage-needs-model",
        lambda c: _montage(c, attribution="gradient"),
        ValueError,
        "attribution overlays need the model",
    ),
    Case(
        "montage-rows",
        lambda c: _montage(c, groups=UPPER[:2]),
        ValueError,
        "exemplars has 3 rows but 2 groups",
    ),
    Case("montage-n", lambda c: _montage(c, n=0), ValueError, "n must be a positive int"),
    # BEAN
    Case(
        "bean-alpha",
        lambda c: BEANRegularizer(c.model, "relu3", alpha=-1),
        ValueError,
        "alpha must be a number >= 0",
    ),
    Case(
        "bean-order",
        lambda c: BEANRegularizer(c.model, "relu3", order=3),
        ValueError,
        "order must be 1 or 2",
    ),
    Case(
        "bean-layers",
        lambda c: BEANRegularizer(c.model, []),
        ValueError,
        "layers must name at least one layer",
    ),
    # the second trust pass: what used to fail late, deep or not at all
    Case(
        "build-bfloat16",
        lambda c: build_circuit(
            copy.deepcopy(c.model).to(torch.bfloat16), ["relu3"], 3, c.x, tau=2, k=2
        ),
        ValueError,
        r"model computes in torch.bfloat16.*model.float\(\)",
    ),
    Case(
        "build-compiled",
        lambda c: build_circuit(
            torch.compile(copy.deepcopy(c.model)), ["relu3"], 3, c.x, tau=2, k=2
        ),
        ValueError,
        r"model is compiled with torch.compile.*model._orig_mod",
    ),
    Case(
        "attr-inference-tensor",
        lambda c: GroupGradient(c.model, "conv2").attribute(_inference_copy(c.x), G2),
        ValueError,
        r"inputs were made inside torch.inference_mode\(\).*clone",
    ),
    Case(
        "crop-box-outside",
        lambda c: crop_and_resize(c.x, torch.tensor([[6, 0, 4, 4]])),
        ValueError,
        r"crop box \(top 6, left 0, height 4, width 4\) lies outside the 8x8 images",
    ),
    Case(
        "mine-token-axis",
        lambda c: mine_exemplars(
            nn.Sequential(nn.Linear(6, 5), nn.ReLU()),
            "1",
            torch.randn(3, 4, 6),
            k=2,
            progress=False,
        ),  # fmt: skip
        ValueError,
        r"dim must|dim=-1 for \(N, T, F\)",
    ),
    Case(
        "settings-huge-int",
        lambda c: CircuitSettings(internal_batch_size=10**30),
        ValueError,
        "internal_batch_size must be a positive int or None",
    ),
    Case(
        "json-repeated-key",
        lambda c: Circuit.from_json('{"format": 1, "format": 2}'),
        ValueError,
        "the key 'format' appears twice",
    ),
    Case(
        "json-nan",
        lambda c: Circuit.from_json('{"x": NaN}'),
        ValueError,
        "NaN is not a number JSON allows",
    ),
    Case(
        "json-too-deep",
        lambda c: Circuit.from_json("[" * 5000 + "]" * 5000),
        ValueError,
        "nests deeper than 32 levels",
    ),
    Case(
        "groupset-label-type",
        lambda c: GroupSet.from_json(
            json.dumps(
                {
                    "format": "captum-groups groupset",
                    "layer": "relu3",
                    "groups": [{"indices": [1], "label": ["x"]}],
                }
            )  # fmt: skip
        ),
        ValueError,
        r"GroupSet file field \$\.groups\[0\]\.label",
    ),
    # the third trust pass: the neuro functions
    Case(
        "reverse-predictivity-rows",
        lambda c: neuro.reverse_predictivity(np.ones((50, 3)), np.ones((60, 2))),
        ValueError,
        "50 rows of features, 60 recorded stimuli in recordings",
    ),
    Case(
        "similarity-matrix-recordings-rows",
        lambda c: neuro.similarity_matrix(
            c.model, ["relu3"], c.x, recordings={"IT": np.ones((3, 2))}
        ),
        ValueError,
        r"recordings\['IT'\] must hold one row per stimulus \(2 stimuli\), got 3",
    ),
    Case(
        "alignment-map-area-rows",
        lambda c: neuro.alignment_map(c.model, ["relu3"], c.x, {"IT": np.ones((3, 2))}),
        ValueError,
        r"areas\['IT'\] must hold the same stimuli",
    ),
    Case(
        "rsa-dissimilarity",
        lambda c: neuro.compare_rdms(np.ones((5, 3)), np.ones((5, 3)), dissimilarity="bogus"),
        ValueError,
        "dissimilarity must be one of",
    ),
    Case(
        "rsa-one-neuron-group",
        lambda c: neuro.compare_rdms(np.arange(10.0)[:, None], np.eye(10), n_draws=2),
        ValueError,
        "one unit per stimulus .* use dissimilarity='euclidean'",
    ),
    Case(
        "features-call-negative",
        lambda c: neuro.features(c.model, "relu3", c.x, call=-1),
        ValueError,
        "call must be an int >= 0",
    ),
    Case(
        "tuning-curve-nan-value",
        lambda c: neuro.tuning_curve(
            c.model, NeuronGroup("relu1", [0]), torch.zeros(2, 1, 8, 8), [0.0, float("nan")]
        ),
        ValueError,
        "values must be finite",
    ),
    Case(
        "gratings-nan-orientation",
        lambda c: neuro.gratings(8, orientations=[float("nan")]),
        ValueError,
        "orientations must be finite",
    ),
    Case(
        "gratings-nan-frequency",
        lambda c: neuro.gratings(8, frequencies=[float("nan")]),
        ValueError,
        "frequencies must be finite",
    ),
    Case(
        "gratings-infinite-mean",
        lambda c: neuro.gratings(8, mean=float("inf")),
        ValueError,
        "mean must be a finite number",
    ),
    Case(
        "receptive-field-integer-images",
        lambda c: neuro.receptive_field(c.model, NeuronGroup("relu3", [0]), c.x.long()),
        ValueError,
        "data must be floating-point images",
    ),
    Case(
        "atlas-layers-string",
        lambda c: build_atlas(c.model, "relu3", c.x, _fresh_folder(), targets=[3]),
        ValueError,
        r"layers must be a non-empty sequence of layer names.*\(for one layer: \['relu3'\]\)",
    ),
    Case(
        "atlas-targets-repeated",
        lambda c: build_atlas(c.model, ["relu3"], c.x, _fresh_folder(), targets=[3, 3]),
        ValueError,
        "targets names class 3 more than once",
    ),
    Case(
        "atlas-targets-out-of-range",
        lambda c: build_atlas(c.model, ["relu3"], c.x, _fresh_folder(), targets=[3, 12]),
        ValueError,
        r"class 12 is out of range: the model has 10 outputs",
    ),
    Case(
        "atlas-layer-unknown",
        lambda c: build_atlas(c.model, ["relu9"], c.x, _fresh_folder(), targets=[3]),
        ValueError,
        "'relu9' is not a submodule",
    ),
    Case(
        "atlas-workers-negative",
        lambda c: build_atlas(c.model, ["relu3"], c.x, _fresh_folder(), workers=-1),
        ValueError,
        "workers must be a positive int",
    ),
    Case(
        "atlas-out-dangling-link",
        lambda c: build_atlas(c.model, ["relu3"], c.x, _dangling_link(), targets=[3]),
        ValueError,
        "is a symbolic link to .* which does not exist",
    ),
    Case(
        "atlas-half-precision",
        lambda c: build_atlas(
            copy.deepcopy(c.model).bfloat16(), ["relu3"], c.x.bfloat16(), _fresh_folder()
        ),
        ValueError,
        "computes in torch.bfloat16",
    ),
    Case(
        "circuit-json-nan-field",
        lambda c: Circuit.from_json('{"format": 1, "nodes": [{"weights": [1, NaN]}]}'),
        ValueError,
        r"circuit JSON field \$\.nodes\[0\]\.weights\[1\]: NaN",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_refused_with_a_clear_message(case, ctx):
    before = model_state(ctx.model)
    with pytest.raises(case.error, match=case.match):
        case.call(ctx)
    assert_same_state(before, model_state(ctx.model))


def test_the_battery_is_large():
    assert len(CASES) >= 40


def test_layer_that_runs_twice(resnet18):
    """torchvision's BasicBlock calls its ReLU twice: ambiguous, so refuse clearly."""
    before = model_state(resnet18)
    with pytest.raises(ValueError, match="runs 2 times in one forward pass"):
        GroupGradient(resnet18, "layer1.0.relu").attribute(
            torch.randn(1, 3, 32, 32), NeuronGroup("layer1.0.relu", [0])
        )
    assert_same_state(before, model_state(resnet18))
