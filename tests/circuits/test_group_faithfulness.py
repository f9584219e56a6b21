"""NeurFlow's circuits read by patching like circuits through the stream: a circuit of every
neuron of its layers is the clean model, none the corrupted one, and the digits CNN's circuit
keeps more than random neurons of its layers."""

from __future__ import annotations

import pytest

from captum_groups import Circuit, NeuronGroup, ParameterError, build_circuit, faithfulness_curve
from captum_groups.circuits import CircuitSettings, stream_inputs
from captum_groups.datasets import digits_cnn, load_digits


@pytest.fixture(scope="module")
def digits():
    model, (images, _) = digits_cnn(), load_digits("test")
    settings = CircuitSettings(corrupt="resample", random_state=0)
    clean, corrupted, _, _ = stream_inputs(model, images, 3, None, None, settings)
    return model, images, clean, corrupted


def test_keeping_every_neuron_is_the_clean_model_and_none_the_corrupted(digits):
    model, _, clean, corrupted = digits
    whole = Circuit(3, ["relu2", "relu3"], {
        "all2": NeuronGroup("relu2", range(32)), "all3": NeuronGroup("relu3", range(64)),
    }, {("all2", "all3"): 1.0, ("all3", "target"): 1.0})  # fmt: skip
    curve = faithfulness_curve(model, whole, clean, corrupted, sizes=[0, 1, 2], n_random=2)
    assert curve.unit == "groups" and curve.total == 2
    assert curve.recovered[0] == pytest.approx(0.0, abs=1e-6)
    assert curve.recovered[1] == pytest.approx(0.0, abs=1e-6)  # relu2 patched: relu3 follows
    assert curve.recovered[2] == pytest.approx(1.0, abs=1e-6)


def test_the_digits_circuit_keeps_more_than_random_neurons(digits):
    model, images, clean, corrupted = digits
    circuit = build_circuit(model, ["relu2", "relu3"], 3, images, tau=6, k=20, n_steps=8,
                            random_state=0, progress=False)  # fmt: skip
    curve = faithfulness_curve(model, circuit, clean, corrupted, n_random=10, random_state=0)
    assert curve.sizes == tuple(range(1, len(circuit.nodes) + 1))
    assert curve.recovered[-1] > curve.random_ci[-1][1]  # measured: 0.20 against 0.04
    figure = curve.plot()
    assert "groups kept" in figure.axes[0].get_xlabel()


def test_bad_sizes_and_inputs_are_refused_by_name(digits):
    model, images, clean, corrupted = digits
    circuit = Circuit(3, ["relu3"], {"g": NeuronGroup("relu3", [0])}, {("g", "target"): 1.0})
    with pytest.raises(ParameterError, match="sizes must be numbers from 0 to 1"):
        faithfulness_curve(model, circuit, clean, corrupted, sizes=[2])
    with pytest.raises(ParameterError, match="clean and corrupted must be tensors of one shape"):
        faithfulness_curve(model, circuit, clean, corrupted[:3])
