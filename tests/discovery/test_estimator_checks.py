"""The grouping estimators are scikit-learn estimators: scikit-learn's own checks, and what
its conventions mean for clusterers of neurons."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.cluster import FeatureAgglomeration
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from captum_groups import GroupSet
from captum_groups.discovery import (
    AssemblyClustering,
    CoactivationClustering,
    ConceptClustering,
    NMFGroups,
)

ESTIMATORS = [
    CoactivationClustering("relu3"),
    AssemblyClustering("relu3"),
    ConceptClustering("relu3"),
    NMFGroups("relu3", n_components=2),
]

FEATURE_CLUSTERING = (
    "it clusters the features (neurons) of X, not its samples: labels_ holds one label "
    "per neuron and there is no fit_predict, as in scikit-learn's FeatureAgglomeration, "
    "which scikit-learn leaves out of this check by name"
)
EXPECTED_FAILED_CHECKS = {
    "CoactivationClustering": {"check_clustering": FEATURE_CLUSTERING},
    "AssemblyClustering": {"check_clustering": FEATURE_CLUSTERING},
}
"""The only checks expected to fail, with why (``check_clustering`` runs twice: on arrays
and on read-only memory maps)."""


def expected_failures(estimator: object) -> dict[str, str]:
    return EXPECTED_FAILED_CHECKS.get(type(estimator).__name__, {})


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failures)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_every_grouping_estimator_is_checked():
    import captum_groups.discovery as discovery

    estimators = {
        name
        for name in discovery.__all__
        if isinstance(getattr(discovery, name), type)
        and hasattr(getattr(discovery, name), "get_params")
    }
    assert estimators == {type(e).__name__ for e in ESTIMATORS}


def _planted_activations(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(200, 9) activations of three planted assemblies of three neurons, and the planting."""
    rng = np.random.default_rng(seed)
    assignment = np.repeat(np.arange(3), 3)
    acts = rng.random((200, 3))[:, assignment] + 0.05 * rng.random((200, 9))
    return acts, assignment


@pytest.mark.parametrize("estimator", [CoactivationClustering(), AssemblyClustering()])
def test_feature_clusterers_follow_feature_agglomeration(estimator):
    acts, assignment = _planted_activations()
    reference = FeatureAgglomeration(n_clusters=3).fit(acts)
    fitted = clone(estimator).fit(acts)
    # the same convention: a label per feature, pooled features out, no fit_predict
    assert fitted.labels_.shape == reference.labels_.shape == (9,)
    assert not hasattr(fitted, "fit_predict") and not hasattr(reference, "fit_predict")
    partition = {tuple(np.flatnonzero(fitted.labels_ == g)) for g in np.unique(fitted.labels_)}
    assert partition == {(0, 1, 2), (3, 4, 5), (6, 7, 8)}
    pooled = fitted.transform(acts)
    by_hand = np.stack([acts[:, fitted.labels_ == g].mean(1) for g in range(3)], 1)
    np.testing.assert_allclose(pooled, by_hand)
    np.testing.assert_allclose(np.sort(pooled, 1), np.sort(reference.transform(acts), 1))
    assert fitted.groups_ is None  # no layer named: labels only
    assert fitted.n_features_in_ == 9


def test_assembly_clustering_uses_connectivity_to_split_coactive_neurons():
    rng = np.random.default_rng(1)
    acts = np.repeat(rng.random((300, 1)), 4, axis=1) + 0.01 * rng.random((300, 4))
    shared = np.kron(np.eye(2), np.ones((2, 2)))  # 0-1 and 2-3 share their outputs
    found = AssemblyClustering("fc", n_groups=2).fit(acts, connectivity=shared)
    assert sorted(g.indices for g in found.groups_) == [(0, 1), (2, 3)]
    with pytest.raises(ValueError, match=r"connectivity must be a non-negative \(4, 4\)"):
        AssemblyClustering().fit(acts, connectivity=-shared)


def test_concept_clustering_takes_neurons_in_fit_and_labels_rows():
    rng = np.random.default_rng(0)
    centers = np.eye(3)[[0, 0, 1, 1, 2, 2]]
    X = centers[:, None, :] + 0.05 * rng.standard_normal((6, 20, 3))
    estimator = ConceptClustering("conv", n_groups=3)
    found = estimator.fit(X, neurons=[10, 11, 20, 21, 30, 31])
    assert sorted(g.indices for g in found.groups_) == [(10, 11), (20, 21), (30, 31)]
    assert estimator.get_params()["neurons"] is None  # fit leaves the parameters alone
    np.testing.assert_array_equal(
        clone(estimator).fit_predict(X), found.labels_
    )  # one label per row (neuron)
    assert found.n_features_in_ == 3


def test_estimators_refuse_a_module_as_layer_and_clone_never_copies_one():
    layer = torch.nn.ReLU()
    for estimator in (CoactivationClustering, AssemblyClustering, ConceptClustering, NMFGroups):
        with pytest.raises(TypeError, match="layer must be the layer's dotted name"):
            estimator(layer).fit(np.random.default_rng(0).random((10, 4)))
        named = estimator("relu3")
        assert clone(named).layer == "relu3"


def test_transform_before_fit_is_not_fitted_error():
    acts, _ = _planted_activations()
    for estimator in (CoactivationClustering(), AssemblyClustering(), NMFGroups()):
        with pytest.raises(NotFittedError):
            estimator.transform(acts)


def test_groups_are_those_of_the_named_layer():
    acts, _ = _planted_activations()
    found = CoactivationClustering("layer3.1", n_groups=3).fit(acts)
    assert isinstance(found.groups_, GroupSet) and found.groups_.layer == "layer3.1"
    nmf = NMFGroups("layer3.1", n_components=3, random_state=0).fit(acts)
    assert nmf.groups_.layer == "layer3.1" and nmf.n_iter_ >= 1
