"""Every public entry point leaves the user's model as it found it: the model-state property.

On a small CNN with BatchNorm and Dropout, in eval mode and in training
mode, each entry point of :data:`ENTRY_POINTS` must leave hooks (forward,
forward-pre, backward, backward-pre), train/eval flags, ``requires_grad``
flags, parameters, their ``.grad``, buffers and module attributes exactly as
they were: after a normal call, and after a call that raised in its last
forward pass. The inputs are not modified either.

Train-mode policy (see ``captum_groups._model.guards.guarded_call``): the model
computes as it is (dropout active, batch statistics), its buffers are
restored, and every call warns once that the model is in training mode.

To cover a new public entry point, add one :class:`EntryPoint` to
``ENTRY_POINTS``.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from captum.attr import NeuronGradient, NeuronIntegratedGradients
from torch import Tensor, nn

import captum_groups.attr as cga
from captum_groups import (
    BEANRegularizer,
    Circuit,
    GroupSet,
    NeuronGroup,
    ablate,
    build_circuit,
    build_circuits,
    edge_fidelity,
    find_assemblies,
    masking_fidelity,
    retain,
    sufficiency,
)
from captum_groups.discovery import (
    ExemplarMiner,
    exemplar_activations,
    find_core_neurons,
    mine_exemplars,
)
from captum_groups.viz import plot_group_exemplars, render_circuit, render_groups

from ._helpers import NEURON_CLASSES, assert_same_state, model_state


class BatchNormDropoutNet(nn.Module):
    """conv1 -> bn1 -> relu1 -> conv2 -> bn2 -> relu2 -> dropout -> pool -> fc (3 classes)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.relu2 = nn.ReLU()
        self.drop = nn.Dropout(0.25)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.drop(self.relu2(self.bn2(self.conv2(x))))
        return self.fc(self.pool(x).flatten(1))


LOWER = GroupSet.from_labels("relu1", torch.arange(6) % 2)
UPPER = GroupSet.from_labels("relu2", torch.arange(8) % 3)
CIRCUIT = Circuit(
    1,
    ["relu1", "relu2"],
    {"a": NeuronGroup("relu1", [0, 1], name="a"), "b": NeuronGroup("relu2", [2, 3], name="b")},
    {("a", "b"): 1.0, ("b", "target"): 1.0},
)


CIRCUIT_OPTIONS = {
    "tau": 2,
    "k": 4,
    "n_groups": 2,
    "n_steps": 4,
    "scales": (1.0, 0.5),
    "predicted_only": False,
    "progress": False,
}


def _neuron_class(name: str) -> Callable:
    def call(model: nn.Module, x: Tensor, y: Tensor) -> object:
        kwargs = {
            "GroupIntegratedGradients": {"n_steps": 4},
            "GroupConductance": {"n_steps": 4, "target": 1},
            "GroupDeepLiftShap": {"baselines": torch.zeros(2, *x.shape[1:])},
            "GroupGradientShap": {"baselines": torch.zeros(2, *x.shape[1:])},
            "GroupFeatureAblation": {"feature_mask": torch.arange(64).view(1, 1, 8, 8) // 16},
        }.get(name, {})
        return getattr(cga, name)(model, "relu2").attribute(x, UPPER, **kwargs)

    return call


def _lower_activations(model: nn.Module, x: Tensor) -> Tensor:
    """relu1's output, computed on a copy so the model itself is not touched."""
    twin = copy.deepcopy(model)
    with torch.no_grad():
        return twin.relu1(twin.bn1(twin.conv1(x)))


def _miner(model: nn.Module, x: Tensor, y: Tensor) -> object:
    first = ExemplarMiner(model, "relu2", k=3, groups=UPPER)
    second = ExemplarMiner(model, "relu2", k=3, groups=UPPER, start_index=4)
    first.update(x[:4])
    second.update(x[4:])
    return first.merge(second).result()


def _montage(model: nn.Module, x: Tensor, y: Tensor) -> object:
    found = mine_exemplars(model, "relu2", x, k=2, groups=UPPER, progress=False)
    return plot_group_exemplars(
        found.groups, x, UPPER, n=2, model=model, attribution="integrated_gradients", n_steps=4
    )


def _bean(model: nn.Module, x: Tensor, y: Tensor) -> None:
    with BEANRegularizer(model, "relu2", alpha=1.0, next_layers=["fc"]):
        pass


def _bean_raising(model: nn.Module, x: Tensor, y: Tensor) -> None:
    with BEANRegularizer(model, "relu2", alpha=1.0, next_layers=["fc"]):
        raise Trap


def _switch(switch: Callable) -> Callable:
    def call(model: nn.Module, x: Tensor, y: Tensor) -> None:
        with switch(model, [LOWER[0], UPPER[1]], value="mean", data=x):
            pass

    return call


class Trap(Exception):
    """Raised inside the model's last forward pass of a call (not a RuntimeError, which
    Lucent swallows)."""


@dataclass(frozen=True)
class EntryPoint:
    """Public calls on the model.

    ``public_calls``: how many public calls ``call`` makes (each warns once in
    training mode, none if ``warns`` is False); ``raising`` replaces the trap
    for calls without forward passes of their own.
    """

    name: str
    call: Callable[[nn.Module, Tensor, Tensor], object]
    warns: bool = True
    raising: Callable[[nn.Module, Tensor, Tensor], object] | None = None
    public_calls: int = 1


ENTRY_POINTS = [
    *[EntryPoint(name, _neuron_class(name)) for name in NEURON_CLASSES],
    EntryPoint(
        "LayerGroupConductance",
        lambda m, x, y: cga.LayerGroupConductance(m, "relu1").attribute(
            x, LOWER, target=UPPER[0], n_steps=4
        ),
    ),
    EntryPoint(
        "LayerGroupGradientXActivation",
        lambda m, x, y: cga.LayerGroupGradientXActivation(m, "relu1").attribute(x, LOWER, target=1),
    ),
    EntryPoint(
        "LayerGroupAblation",
        lambda m, x, y: cga.LayerGroupAblation(m, "relu1").attribute(x, LOWER, target=UPPER[0]),
    ),
    EntryPoint(
        "LayerGroupAblation-mean",
        lambda m, x, y: cga.LayerGroupAblation(m, "relu1").attribute(
            x, LOWER, target=1, value="mean", data=x
        ),
    ),
    EntryPoint(
        "LayerGroupInteraction",
        lambda m, x, y: cga.LayerGroupInteraction(m, "relu1", "relu2").attribute(
            x, UPPER, LOWER, n_steps=4
        ),
    ),
    EntryPoint(
        "LayerGroupInteraction-loader",
        lambda m, x, y: cga.LayerGroupInteraction(m, "relu1", "relu2").attribute(
            [(x[:4], y[:4]), (x[4:], y[4:])], UPPER, LOWER, n_steps=4, progress=False
        ),
    ),
    EntryPoint(
        "LayerGroupInteraction.attribute_from_activations",
        lambda m, x, y: cga.LayerGroupInteraction(m, "relu1", "relu2").attribute_from_activations(
            _lower_activations(m, x), UPPER, LOWER, n_steps=4
        ),
    ),
    EntryPoint("ablate", _switch(ablate)),
    EntryPoint("retain", _switch(retain)),
    EntryPoint(
        "mine_exemplars",
        lambda m, x, y: mine_exemplars(
            m, "relu2", x, k=3, groups=UPPER, scales=(1.0, 0.5), progress=False
        ),
    ),
    EntryPoint("ExemplarMiner", _miner, public_calls=2),  # two updates
    EntryPoint(
        "exemplar_activations",
        lambda m, x, y: exemplar_activations(
            m, "relu1", mine_exemplars(m, "relu2", x, k=2, progress=False).neurons, x, [0, 1]
        ),
        public_calls=2,
    ),
    EntryPoint(
        "find_core_neurons",
        lambda m, x, y: find_core_neurons(m, "relu1", 1, x, tau=2, n_steps=4),
    ),
    EntryPoint(
        "build_circuit",
        lambda m, x, y: build_circuit(m, ["relu1", "relu2"], 1, x, **CIRCUIT_OPTIONS),
    ),
    EntryPoint(
        "build_circuits",
        lambda m, x, y: build_circuits(m, ["relu2"], [0, 2], x, **CIRCUIT_OPTIONS),
    ),
    EntryPoint(
        "find_assemblies",
        lambda m, x, y: find_assemblies(m, "relu2", (x, y), n_groups=2, next_layer="fc"),
    ),
    # BEAN is a training tool: its forward passes are the user's own training steps.
    EntryPoint("BEANRegularizer", _bean, warns=False, raising=_bean_raising),
    EntryPoint("render_groups", lambda m, x, y: render_groups(m, UPPER[:2], size=8, steps=2)),
    EntryPoint("render_circuit", lambda m, x, y: render_circuit(m, CIRCUIT, size=8, steps=2)),
    EntryPoint("plot_group_exemplars", _montage, public_calls=2),
    EntryPoint("masking_fidelity", lambda m, x, y: masking_fidelity(m, CIRCUIT, x, n_draws=2)),
    EntryPoint("sufficiency", lambda m, x, y: sufficiency(m, CIRCUIT, x, n_draws=2)),
    EntryPoint(
        "edge_fidelity",
        lambda m, x, y: edge_fidelity(m, CIRCUIT, x, "b", sizes=(1, 2), n_draws=2, n_steps=4),
    ),
]
"""The public entry points that take the user's model. The grouping estimators
(NMFGroups, CoactivationClustering, ConceptClustering) never receive the model."""


def _setup(training: bool) -> tuple[nn.Module, Tensor, Tensor]:
    torch.manual_seed(0)
    model = BatchNormDropoutNet()
    model.train(training)
    model.conv1.weight.requires_grad_(False)  # a partly frozen model
    model.conv2.weight.grad = torch.randn_like(model.conv2.weight)  # a pending gradient
    with torch.no_grad():  # non-trivial running statistics
        model.bn1.running_mean.uniform_(-0.5, 0.5)
        model.bn2.running_var.uniform_(0.5, 2.0)
    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.arange(8) % 3
    return model, x, y


def _training_warnings(caught: list[warnings.WarningMessage]) -> int:
    return sum("model is in training mode" in str(w.message) for w in caught)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=[e.name for e in ENTRY_POINTS])
def test_model_state_is_unchanged(entry, training):
    model, x, y = _setup(training)
    x_before = x.clone()
    before = model_state(model)
    calls = []
    counter = model.conv1.register_forward_hook(lambda *args: calls.append(1))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            entry.call(model, x, y)
    finally:
        counter.remove()
    assert_same_state(before, model_state(model))
    assert torch.equal(x, x_before) and not x.requires_grad
    expected = entry.public_calls if training and entry.warns else 0
    if entry.warns or not training:
        assert _training_warnings(caught) == expected

    def trap(*args: object) -> None:
        trap.calls += 1
        if trap.calls == len(calls):
            raise Trap

    trap.calls = 0
    handle = model.conv1.register_forward_hook(trap)
    try:
        with pytest.raises(Trap), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (entry.raising or entry.call)(model, x, y)
    finally:
        handle.remove()
    assert_same_state(before, model_state(model))


class BatchNormNet(nn.Module):
    """conv -> batch norm -> relu -> linear: deterministic in training mode (no dropout)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.relu(self.bn(self.conv(x))).flatten(1))


@pytest.mark.parametrize("method", ["gradient", "integrated_gradients"])
def test_training_mode_results_are_those_of_the_model_as_it_is(method):
    """In training mode the groups see batch statistics, as Captum's neuron methods do."""
    torch.manual_seed(0)
    model = BatchNormNet().train()
    x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    group = NeuronGroup("relu", [0, 2])
    reference_model = copy.deepcopy(model)  # Captum updates the running statistics
    if method == "gradient":
        with pytest.warns(UserWarning, match="training mode"):
            ours = cga.GroupGradient(model, "relu").attribute(x, [group])
        expected = NeuronGradient(reference_model, reference_model.relu).attribute(x, group)
    else:
        with pytest.warns(UserWarning, match="training mode"):
            ours = cga.GroupIntegratedGradients(model, "relu").attribute(x, [group], n_steps=8)
        expected = NeuronIntegratedGradients(reference_model, reference_model.relu).attribute(
            x, group, n_steps=8
        )
    torch.testing.assert_close(ours[:, 0], expected)
    in_eval = cga.GroupGradient(copy.deepcopy(model).eval(), "relu").attribute(x, [group])
    if method == "gradient":  # batch statistics matter: eval mode gives other numbers
        assert not torch.allclose(ours, in_eval)
