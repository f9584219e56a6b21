"""Settings defined once, passed whole, saved with the circuit; one name per idea, the former
names still working with a warning; a circuit is an immutable value."""

from __future__ import annotations

import pickle
import re
import warnings

import numpy as np
import pytest
import torch

from captum_groups import (
    Circuit,
    CircuitSettings,
    NeuronGroup,
    ParameterError,
    build_circuit,
    compare_classes,
    debug_image,
    masking_fidelity,
    sufficiency,
)
from captum_groups.cli import main
from captum_groups.datasets import digits_cnn, train_digits_cnn
from captum_groups.discovery import CoactivationClustering
from captum_groups.report import ReportSettings, assemble, write_report
from captum_groups.viz import render_groups

SMALL = {"tau": 4, "k": 10, "n_groups": 2, "n_steps": 8, "scales": (1.0, 0.5)}


@pytest.fixture(scope="module")
def small_circuit(digits_test):
    model = digits_cnn()
    return build_circuit(model, ["relu2", "relu3"], 3, digits_test[0], progress=False, **SMALL)


def test_settings_are_checked_on_construction_and_name_the_field():
    for field, value, words in [
        ("tau", 0, "tau must be a positive int"),
        ("k", 2.5, "k must be a positive int"),
        ("tolerance", 1.5, r"tolerance must be a number in \[0, 1\]"),
        ("scales", (0.0,), r"scales must be fractions in \(0, 1\]"),
        ("method", "simpson", "method must be one of"),
        ("random_state", -1, "random_state must be an int between 0 and 4294967295"),
        ("random_state", 2**40, "random_state must be an int between 0 and 4294967295"),
        ("n_groups", {"relu2": 0}, "n_groups must be a positive int, a mapping"),
        ("grouping", "ward", "grouping must be None or an estimator"),
    ]:
        with pytest.raises(ParameterError, match=words) as raised:
            CircuitSettings(**{field: value})
        assert raised.value.parameter == field
    with pytest.raises(ParameterError, match="needs n_steps >= 2") as raised:
        CircuitSettings(method="riemann_trapezoid", n_steps=1)
    assert raised.value.parameter == "n_steps"
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, TypeError)


def test_settings_are_frozen_round_trip_through_json_and_pickle():
    settings = CircuitSettings(tau=3, n_groups={"relu3": 2}, scales=[1.0, 0.5])
    assert settings.scales == (1.0, 0.5)  # a list given is kept as a tuple
    with pytest.raises(AttributeError):
        settings.tau = 4  # type: ignore[misc]
    assert CircuitSettings.from_dict(settings.to_dict()) == settings
    assert pickle.loads(pickle.dumps(settings)) == settings
    assert settings.replace(k=7).k == 7 and settings.k == 50
    with pytest.raises(ParameterError, match="has no setting 'kk'"):
        settings.replace(kk=7)
    with pytest.raises(ParameterError, match=r"unknown settings \['taus'\]") as raised:
        CircuitSettings.from_dict({"taus": 3})
    assert raised.value.parameter == "settings.taus"


def test_a_grouping_estimator_is_saved_as_its_class_and_parameters():
    settings = CircuitSettings(grouping=CoactivationClustering(max_groups=7, random_state=2))
    record = settings.to_dict()["grouping"]
    assert record == {
        "estimator": "captum_groups.discovery.clustering.CoactivationClustering",
        "params": {
            "dim": 1,
            "layer": None,
            "max_groups": 7,
            "method": "agglomerative",
            "n_groups": None,
            "random_state": 2,
        },
    }
    rebuilt = CircuitSettings.from_dict(settings.to_dict()).grouping
    assert isinstance(rebuilt, CoactivationClustering) and rebuilt.max_groups == 7
    # another package's estimator is not imported from a file: it stays a record, and
    # building with that record is refused by name
    foreign = {**record, "estimator": "elsewhere.Clusterer"}
    loaded = CircuitSettings.from_dict({**settings.to_dict(), "grouping": foreign})
    assert loaded.grouping == foreign
    with pytest.raises(ParameterError, match="record of an estimator") as raised:
        build_circuit(torch.nn.Linear(2, 2), ["weight"], 0, torch.zeros(1, 2), settings=loaded)
    assert raised.value.parameter == "grouping"


def test_keywords_and_a_settings_object_are_one_path(small_circuit, digits_model, digits_test):
    settings = CircuitSettings(**SMALL)
    again = build_circuit(
        digits_model, ["relu2", "relu3"], 3, digits_test[0], settings=settings, progress=False
    )
    assert again == small_circuit and again.settings == settings
    mixed = build_circuit(
        digits_model, ["relu3"], 3, digits_test[0], settings=settings, tau=2, progress=False
    )
    assert mixed.settings == settings.replace(tau=2)
    with pytest.raises(ParameterError, match="unexpected keyword argument 'taus'"):
        build_circuit(digits_model, ["relu3"], 3, digits_test[0], taus=2)


def test_the_settings_docstring_is_made_from_the_fields():
    doc = CircuitSettings.__doc__
    for name in CircuitSettings.__dataclass_fields__:
        assert f"\n    {name} : " in doc
    assert "``24``" in doc and "Examples" in doc.split("Parameters")[1]


def _shown_numbers(html: str) -> dict[str, list[str]]:
    """What a report shows that depends on its integration steps and seed."""
    return {
        "shares": re.findall(r'<dd class="share">([^<]*)</dd>', html),
        "fidelity": re.findall(
            r"<td[^>]*>([^<]*)</td>", html.split('id="fidelity-table"')[1].split("</table>")[0]
        ),
        "pearson": re.findall(r"Pearson r = ([-0-9.]+)", html),
    }


def test_report_of_a_saved_circuit_uses_the_circuits_steps_and_seed(tmp_path):
    out = tmp_path / "first"
    light = ["--render-steps", "0", "--n-draws", "4", "--no-progress"]
    built = ["circuit", "--target", "3", "--n-steps", "3", "--random-state", "5", *light]
    assert main([*built, "--out", str(out)]) == 0
    again = tmp_path / "again"
    assert main(["report", str(out / "circuit.json"), *light, "--out", str(again)]) == 0
    first, second = ((p / "report.html").read_text() for p in (out, again))
    assert _shown_numbers(first) == _shown_numbers(second)
    assert _shown_numbers(first)["shares"] and _shown_numbers(first)["pearson"]
    # the steps and the seed matter: other values show other numbers
    other = tmp_path / "other"
    override = ["--n-steps", "32", "--random-state", "0"]
    assert main(["report", str(out / "circuit.json"), *light, *override, "--out", str(other)]) == 0
    assert _shown_numbers((other / "report.html").read_text()) != _shown_numbers(first)
    saved = Circuit.from_json((out / "circuit.json").read_text())
    assert (saved.settings.n_steps, saved.settings.random_state) == (3, 5)


def test_report_settings_default_to_the_circuits(small_circuit):
    resolved = ReportSettings().for_circuit(small_circuit)
    assert (resolved.n_steps, resolved.random_state) == (8, 0)
    assert ReportSettings(n_steps=5).for_circuit(small_circuit).n_steps == 5
    by_hand = Circuit(0, ["fc1"], {"a": NeuronGroup("fc1", [1])}, {}, params={"n_steps": 12})
    assert ReportSettings().for_circuit(by_hand).n_steps == 12


def _warns_and_equals(call, expected, old: str):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = call()
    messages = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    assert any(old in m and "deprecated" in m for m in messages), messages
    assert all(w.filename == __file__ for w in caught if issubclass(w.category, FutureWarning))
    return result if expected is None else expected(result)


def test_former_names_still_work_and_warn(small_circuit, digits_model, digits_test):
    model, (x, y) = digits_model, digits_test
    images = x[y == 3][:20]
    kept = masking_fidelity(model, small_circuit, images, n_draws=3, random_state=0)
    former = _warns_and_equals(
        lambda: masking_fidelity(model, small_circuit, inputs=images, n_random=3, random_state=0),
        None,
        "n_random",
    )
    for new, old in zip(kept, former, strict=True):
        np.testing.assert_array_equal(new.random, old.random)
    suff = sufficiency(model, small_circuit, images, n_draws=2, random_state=1)
    old_suff = _warns_and_equals(
        lambda: sufficiency(model, small_circuit, images, n_random=2, random_state=1),
        None,
        "n_random",
    )
    np.testing.assert_array_equal(suff.random, old_suff.random)
    paths = _warns_and_equals(lambda: small_circuit.top_paths(k=2, layer="relu2"), None, "'k'")
    assert paths == small_circuit.top_paths(2, "relu2")
    image = images[0]
    new = debug_image(model, small_circuit, image, n_steps=4)
    old = _warns_and_equals(lambda: debug_image(small_circuit, model, image, n_steps=4), None, "")
    assert old.groups == new.groups
    other = build_circuit(model, ["relu2", "relu3"], 8, x, progress=False, **SMALL)
    comparison = compare_classes(model, small_circuit, other, image, n_steps=4)
    former = _warns_and_equals(
        lambda: compare_classes(model, image, small_circuit, other, n_steps=4), None, "image"
    )
    assert former.separating() == comparison.separating()
    group = [NeuronGroup("relu3", [1])]
    drawn = render_groups(model, group, size=8, steps=3, random_state=4)
    np.testing.assert_array_equal(
        _warns_and_equals(
            lambda: render_groups(model, group, size=8, steps=3, seed=4), None, "seed"
        ),
        drawn,
    )
    with pytest.raises(TypeError, match="both 'seed' and its new name"):
        render_groups(model, group, seed=1, random_state=1)


def test_former_report_keywords_still_work_and_warn(
    small_circuit, digits_model, digits_test, tmp_path
):
    content = assemble(
        digits_model, small_circuit, digits_test[0], render_steps=0, n_draws=3, n_points=2,
        progress=False,
    )  # fmt: skip
    former = _warns_and_equals(
        lambda: assemble(
            digits_model,
            small_circuit,
            digits_test[0],
            render_steps=0,
            fidelity_draws=3,
            fidelity_points=2,
            progress=False,
        ),  # fmt: skip
        None,
        "fidelity_draws",
    )
    assert former.settings == content.settings
    files = _warns_and_equals(
        lambda: write_report(
            digits_model,
            small_circuit,
            digits_test[0],
            tmp_path,
            render_steps=0,
            fidelity_images=50,
            n_draws=2,
            progress=False,
        ),  # fmt: skip
        None,
        "fidelity_images",
    )
    assert '"max_images": 50' in files.html.read_text() or "50" in files.html.read_text()


@pytest.mark.slow
def test_train_digits_cnn_takes_its_former_seed_keyword():
    new = train_digits_cnn(epochs=1, random_state=3)
    old = _warns_and_equals(lambda: train_digits_cnn(epochs=1, seed=3), None, "seed")
    for a, b in zip(new.parameters(), old.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_a_circuit_is_an_immutable_value(small_circuit):
    with pytest.raises(AttributeError, match="immutable"):
        small_circuit.target = 4
    with pytest.raises(TypeError):
        small_circuit.nodes["x"] = NeuronGroup("relu3", [0])  # type: ignore[index]
    with pytest.raises(TypeError):
        small_circuit.edges[("a", "b")] = 1.0  # type: ignore[index]
    node = next(iter(small_circuit.nodes))
    relabelled = small_circuit.replace(params={**small_circuit.params, "note": "x"})
    assert relabelled.params["note"] == "x" and "note" not in small_circuit.params
    assert relabelled.nodes[node] is small_circuit.nodes[node]
    assert pickle.loads(pickle.dumps(small_circuit)) == small_circuit
    with pytest.raises(TypeError, match="no field"):
        small_circuit.replace(colour="red")
