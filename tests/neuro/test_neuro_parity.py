"""The references' own numbers, reproduced: Brain-Score's scores, centred CKA, rsatoolbox's RDMs.

``benchmarks/brainscore_fixtures.py`` scored fixed synthetic data with
Brain-Score vision 2.4.2 itself (its ``pls_cv`` metric, ``internal_consistency``
ceiling and ``explained_variance``, in an environment of their own) and stored
the data and the scores under ``tests/fixtures/brainscore/``. Here the package
scores the same data: the raw score, the ceiling and the ceiled score must
equal Brain-Score's, with and without stratification by object, on a related
data set, a null one, two and five repetitions, and one with a silent site
(whose undefined correlations Brain-Score skips).

CKA and similarity matrices far from zero (raw firing rates) are checked
against Kornblith et al.'s formula on centred float64 data, and stimuli
presented in a shuffled order against rsatoolbox's own
``calc_rdm(descriptor="stimulus")`` and ``compare``.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from captum_groups import ParameterError
from captum_groups.neuro import (
    alignment_map,
    cka,
    compare_rdms,
    features,
    neural_predictivity,
    rdm,
    reverse_predictivity,
    similarity_matrix,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "brainscore"
SCORES = json.loads((FIXTURES / "scores.json").read_text())
DATA_SETS = [name for name in SCORES if not name.startswith("_")]


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "data.npz") as stored:
        return {key: stored[key] for key in stored.files}


def test_the_fixtures_cover_what_the_protocol_must_reproduce():
    assert {"related", "null", "two_repetitions"} <= set(DATA_SETS)
    assert SCORES["_reference"]["brainscore-vision"] == "2.4.2"


@pytest.mark.parametrize("stratified", [False, True], ids=["unstratified", "stratified"])
@pytest.mark.parametrize("name", DATA_SETS)
def test_scores_equal_brainscores(data, name, stratified):
    expected = SCORES[name]["stratified" if stratified else "unstratified"]
    found = neural_predictivity(
        data["features"],
        data[f"{name}/recordings"],
        stratify=data["objects"] if stratified else None,
    )
    np.testing.assert_allclose(found.split_scores_, expected["split_medians"], atol=1e-6)
    assert found.score_ == pytest.approx(expected["raw"], abs=1e-6)
    assert found.score_error_ == pytest.approx(expected["error"], abs=1e-6)
    assert found.ceiling_ == pytest.approx(expected["ceiling"], abs=1e-6)
    assert found.ceiled_score_ == pytest.approx(expected["ceiled"], abs=1e-6)


def test_other_conventions_follow_their_formulas_on_brainscores_numbers(data):
    expected = SCORES["related"]["unstratified"]
    raw, ceiling = expected["raw"], expected["ceiling"]
    recordings = data["related/recordings"]
    conventions = {"ratio": raw / ceiling, "squared_ratio": (raw / ceiling) ** 2}
    for convention, value in conventions.items():
        found = neural_predictivity(data["features"], recordings, ceiling_convention=convention)
        assert found.ceiled_score_ == pytest.approx(value, abs=1e-6)
    per_unit = neural_predictivity(data["features"], recordings, ceiling_convention="per_unit")
    # Brain-Score's neuroid_wise_explained_var: r**2 / ceiling per site, then the mean
    by_site = per_unit.unit_scores_**2 / per_unit.unit_ceilings_
    assert per_unit.ceiled_score_ == pytest.approx(by_site.mean(), abs=1e-12)


def test_a_silent_site_is_skipped_not_counted_as_zero(data):
    found = neural_predictivity(data["features"], data["constant_site/recordings"])
    assert np.isnan(found.correlations_[:, 0]).all() and np.isnan(found.unit_ceilings_[0])
    assert not np.isnan(found.correlations_[:, 1:]).any()
    assert found.score_ == pytest.approx(np.mean(np.median(found.correlations_[:, 1:], 1)))


def _centred_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al. (2019), eq. for linear CKA on centred float64 features."""
    x = np.asarray(x, np.float64) - np.asarray(x, np.float64).mean(0)
    y = np.asarray(y, np.float64) - np.asarray(y, np.float64).mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def _centred_unbiased_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Song et al. (2012)'s U-statistic over distinct 4-tuples, on centred float64 features."""
    x = np.asarray(x, np.float64) - np.asarray(x, np.float64).mean(0)
    y = np.asarray(y, np.float64) - np.asarray(y, np.float64).mean(0)

    def hsic(k, l):  # noqa: E741
        values = [
            k[i, j] * l[i, j] + k[i, j] * l[q, r] - 2 * k[i, j] * l[i, q]
            for i, j, q, r in itertools.permutations(range(len(k)), 4)
        ]
        return np.mean(values)

    k, l = x @ x.T, y @ y.T  # noqa: E741
    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("offset", [1e2, 1e4, 1e6])
def test_cka_far_from_zero_equals_the_centred_reference(offset, dtype):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 8))
    y = x[:, :4] @ rng.normal(size=(4, 6)) + 0.5 * rng.normal(size=(50, 6))
    x, y = (x + offset).astype(dtype), (3 * y + offset).astype(dtype)
    tolerance = 1e-6 if dtype == np.float64 else 1e-4
    assert cka(x, y) == pytest.approx(_centred_cka(x, y), abs=tolerance)
    small_x, small_y = x[:9], y[:9]
    reference = _centred_unbiased_cka(small_x, small_y)
    assert cka(small_x, small_y, unbiased=True) == pytest.approx(reference, abs=tolerance)
    assert cka(torch.from_numpy(x), y) == pytest.approx(_centred_cka(x, y), abs=tolerance)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("offset", [1e2, 1e4, 1e6])
def test_similarity_matrix_on_raw_rates_equals_the_centred_reference(
    digits_model, digits_test, offset, dtype
):
    x = digits_test[0][:60]
    relu3 = features(digits_model, "relu3", x)
    rng = np.random.default_rng(4)
    rates = (relu3[:, :10] @ rng.normal(size=(10, 12)) + offset).astype(dtype)
    found = similarity_matrix(digits_model, ["relu2", "relu3"], x, recordings={"IT": rates})
    tolerance = 1e-6 if dtype == np.float64 else 1e-4
    for i, layer in enumerate(["relu2", "relu3"]):
        reference = _centred_cka(features(digits_model, layer, x), rates)
        assert found.values[i, 0] == pytest.approx(reference, abs=tolerance)


def test_constant_representations_have_no_cka(digits_model, digits_test):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(30, 4))
    for constant in (np.full((30, 3), 0.1), np.full((30, 3), 7e5)):
        assert np.isnan(cka(x, constant)) and np.isnan(cka(constant, x, unbiased=True))
    stimuli = digits_test[0][:40]
    found = similarity_matrix(
        digits_model, ["relu3"], stimuli, recordings={"silent": np.full((40, 5), 0.3)}
    )
    assert np.isnan(found.values).all()


def _shuffled_dataset(patterns: np.ndarray, repetitions: int, seed: int):
    """An rsatoolbox Dataset of noisy repetitions of ``patterns`` (stimulus i named
    ``f"img{i:02d}"``), its rows in a shuffled presentation order."""
    rsatoolbox = pytest.importorskip("rsatoolbox")
    rng = np.random.default_rng(seed)
    names = np.array([f"img{i:02d}" for i in range(len(patterns))] * repetitions)
    rows = np.tile(patterns, (repetitions, 1)) + 0.5 * rng.normal(
        size=(len(names), patterns.shape[1])
    )
    order = rng.permutation(len(names))
    return rsatoolbox.data.Dataset(rows[order], obs_descriptors={"stimulus": names[order]})


def test_a_shuffled_dataset_gives_rsatoolboxs_rdm_and_comparison():
    rsatoolbox = pytest.importorskip("rsatoolbox")
    rng = np.random.default_rng(6)
    signal = rng.normal(size=(20, 15))
    brain = _shuffled_dataset(signal, repetitions=3, seed=7)
    model = signal @ rng.normal(size=(15, 10)) + rng.normal(size=(20, 10))  # sorted order
    expected_rdm = rsatoolbox.rdm.calc_rdm(brain, method="correlation", descriptor="stimulus")
    np.testing.assert_allclose(rdm(brain).dissimilarities, expected_rdm.dissimilarities, atol=1e-12)
    model_rdm = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(model), method="correlation")
    expected = rsatoolbox.rdm.compare(model_rdm, expected_rdm, method="spearman")[0, 0]
    assert compare_rdms(model, brain, n_draws=0).value == pytest.approx(expected, abs=1e-12)
    # both sides named: aligned by name, whatever either side's order
    order = rng.permutation(20)
    names = np.array([f"img{i:02d}" for i in range(20)])
    shuffled_model = rsatoolbox.data.Dataset(
        model[order], obs_descriptors={"stimulus": names[order]}
    )
    found = compare_rdms(shuffled_model, brain, n_draws=0).value
    assert found == pytest.approx(expected, abs=1e-12)
    other = rsatoolbox.data.Dataset(model, obs_descriptors={"stimulus": np.arange(20)})
    with pytest.raises(ParameterError) as caught:
        compare_rdms(other, brain, n_draws=0)
    assert caught.value.parameter == "brain" and "same ones" in str(caught.value)


def test_predictivity_matches_stimuli_by_identity():
    rng = np.random.default_rng(9)
    model = rng.normal(size=(60, 30))
    signal = model[:, :5] @ rng.normal(size=(5, 8))
    brain = _shuffled_dataset(signal, repetitions=4, seed=10)
    ordered = neural_predictivity(model, brain, n_splits=4)  # rows in rsatoolbox's sorted order
    names = np.array([f"img{i:02d}" for i in range(60)])
    order = rng.permutation(60)
    by_name = neural_predictivity(model[order], brain, stimulus_ids=names[order], n_splits=4)
    assert by_name.score_ == pytest.approx(ordered.score_, abs=1e-12)
    assert by_name.ceiling_ == pytest.approx(ordered.ceiling_, abs=1e-12)
    assert ordered.score_ > 0.6 and ordered.ceiling_ > 0.6
    reverse = reverse_predictivity(model[order], brain, stimulus_ids=names[order], n_splits=4)
    assert reverse.score_ == pytest.approx(reverse_predictivity(model, brain, n_splits=4).score_)
    cases = [
        (lambda: neural_predictivity(model, signal, stimulus_ids=names), "identifiers"),
        (lambda: neural_predictivity(model, brain, stimulus_ids=names[::-1][:59]), "60 rows"),
        (lambda: neural_predictivity(model, brain, stimulus_ids=[*names[:59], "x"]), "same"),
        (lambda: neural_predictivity(model, brain, stimulus_ids=[*names[:59], names[0]]), "twice"),
    ]
    for call, words in cases:
        with pytest.raises(ParameterError, match=words) as caught:
            call()
        assert caught.value.parameter == "stimulus_ids"


def test_stratification_and_counts_are_checked_by_name():
    rng = np.random.default_rng(11)
    x, y = rng.normal(size=(40, 6)), rng.normal(size=(40, 3))
    with pytest.raises(ParameterError) as caught:
        neural_predictivity(x, y, stratify=np.arange(40))  # every label once
    assert caught.value.parameter == "stratify"
    with pytest.raises(ParameterError) as caught:
        neural_predictivity(x, y, stratify=np.arange(39) % 4)
    assert caught.value.parameter == "stratify"
    with pytest.raises(ParameterError, match="50 rows of features, 40 recorded") as caught:
        reverse_predictivity(rng.normal(size=(50, 4)), y)
    assert caught.value.parameter == "recordings"
    with pytest.raises(ParameterError) as caught:
        neural_predictivity(x, y, ceiling_convention="r/c")
    assert caught.value.parameter == "ceiling_convention"
    rsatoolbox = pytest.importorskip("rsatoolbox")
    uneven = rsatoolbox.data.Dataset(
        rng.normal(size=(4, 3)),
        obs_descriptors={"stimulus": [0, 0, 1, 1], "repetition": [0, 1, 0, 2]},
    )
    with pytest.raises(ParameterError, match="same repetitions") as caught:
        neural_predictivity(rng.normal(size=(2, 3)), uneven)
    assert caught.value.parameter == "recordings"


def test_alignment_map_and_similarity_matrix_match_stimuli_by_identity(digits_model, digits_test):
    rsatoolbox = pytest.importorskip("rsatoolbox")
    x = digits_test[0][:80]
    rng = np.random.default_rng(12)
    signal = features(digits_model, "relu3", x)[:, :20] @ rng.normal(size=(20, 10))
    repetitions = signal[None] + 0.3 * signal.std() * rng.normal(size=(3, *signal.shape))
    names = np.array([f"s{i:02d}" for i in range(80)])
    shown = rng.permutation(3 * 80)  # every presentation, in a shuffled order
    descriptors = {
        "stimulus": np.tile(names, 3)[shown],
        "repetition": np.repeat([0, 1, 2], 80)[shown],
    }
    presented = rsatoolbox.data.Dataset(
        repetitions.reshape(-1, 10)[shown], obs_descriptors=descriptors
    )
    order = rng.permutation(80)  # the model sees the stimuli in yet another order
    layers = ["relu2", "relu3"]
    expected = alignment_map(digits_model, layers, x, {"IT": repetitions}, n_splits=3)
    found = alignment_map(
        digits_model, layers, x[order], {"IT": presented}, stimulus_ids=names[order], n_splits=3
    )
    np.testing.assert_allclose(found.scores, expected.scores, atol=1e-10)
    expected = similarity_matrix(digits_model, layers, x, recordings={"IT": repetitions.mean(0)})
    found = similarity_matrix(
        digits_model, layers, x[order], recordings={"IT": presented}, stimulus_ids=names[order]
    )
    np.testing.assert_allclose(found.values, expected.values, atol=1e-10)


CKA_FIXTURES = Path(__file__).parents[1] / "fixtures" / "cka"


@pytest.mark.parametrize("debiased", [False, True], ids=["linear", "debiased"])
def test_cka_equals_kornbliths_own_code_at_any_offset(debiased):
    """``benchmarks/cka_fixtures.py`` ran Kornblith et al.'s ``feature_space_linear_cka`` on
    the same data, far from zero and in float32 too; the stored numbers are its own."""
    expected = json.loads((CKA_FIXTURES / "scores.json").read_text())
    with np.load(CKA_FIXTURES / "cka.npz") as stored:
        for name, scores in expected.items():
            x, y = stored[f"{name}/x"], stored[f"{name}/y"]
            found = cka(x, y, unbiased=debiased)
            key = "debiased" if debiased else "linear"
            assert found == pytest.approx(scores[key], abs=1e-6), name
