"""Brain-Score's own numbers, reproduced.

``benchmarks/brainscore_fixtures.py`` scored fixed synthetic data with
Brain-Score vision 2.4.2 itself (its ``pls_cv`` metric, ``internal_consistency``
ceiling and ``explained_variance``, in an environment of their own) and stored
the data and the scores under ``tests/fixtures/brainscore/``. Here the package
scores the same data: the raw score, the ceiling and the ceiled score must
equal Brain-Score's, with and without stratification by object, on a related
data set, a null one, two and five repetitions, and one with a silent site
(whose undefined correlations Brain-Score skips).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from captum_groups.neuro import neural_predictivity

FIXTURES = Path(__file__).parent / "fixtures" / "brainscore"
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
