"""Grouping neurons by shared function: co-activation assemblies, BEAN assemblies, NeurFlow
concepts.

Two kinds of estimator. :class:`CoactivationClustering` and
:class:`AssemblyClustering` cluster the *features* of activations X shaped
(examples, neurons, ...), as scikit-learn's ``FeatureAgglomeration`` does:
``labels_`` holds one label per neuron, ``transform`` pools each group's
neurons, and there is no ``fit_predict`` (its labels would be per example).
:class:`ConceptClustering` clusters the *rows* of X, each row describing one
neuron, so ``labels_`` and ``fit_predict`` give one label per row. All three
store their parameters only, take data-dependent inputs in ``fit``, and give
their groups as ``groups_`` (a :class:`~captum_groups.GroupSet` of the layer
they name).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import networkx as nx
import numpy as np
from networkx.algorithms.community import modularity
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.cluster import AgglomerativeClustering, SpectralClustering
from sklearn.metrics import pairwise_distances, silhouette_score
from sklearn.utils import check_array
from sklearn.utils.validation import check_is_fitted

from ..groups import GroupSet, NeuronGroup
from ._validation import (
    check_count,
    check_layer_name,
    checked_array,
    count_features,
    per_neuron,
)


def _tree_cuts(
    data: np.ndarray, linkage: str, metric: str = "euclidean"
) -> Callable[[int], np.ndarray]:
    """n -> the partition into n clusters of one agglomerative tree, fitted once.

    Cutting the full tree below its last n - 1 merges gives the clusters that
    ``AgglomerativeClustering(n)`` finds (the same partition; labels may be
    numbered differently), without fitting the tree again for every n.
    """
    tree = AgglomerativeClustering(
        n_clusters=None,
        distance_threshold=0,
        linkage=linkage,
        metric=metric,
        compute_full_tree=True,
    ).fit(data)
    n_leaves = len(data)

    def cut(n_clusters: int) -> np.ndarray:
        parent = np.arange(2 * n_leaves - 1)
        for merge, (a, b) in enumerate(tree.children_[: n_leaves - n_clusters]):
            parent[a] = parent[b] = n_leaves + merge
        roots = np.arange(n_leaves)
        while (parent[roots] != roots).any():
            roots = parent[roots]
        return np.unique(roots, return_inverse=True)[1]

    return cut


def _best_by_silhouette(
    cut: Callable[[int], np.ndarray], candidates: Sequence[int], distances: np.ndarray
) -> int:
    """The candidate cluster count whose partition has the highest silhouette score.

    ``distances`` is the pairwise distance matrix of the clustered points. The
    silhouette is defined for 2 to n - 1 clusters of n items; when no
    candidate can be scored (e.g. two items), the first candidate is used.
    """
    best_score, best_n = -np.inf, candidates[0]
    for n in candidates:
        labels = cut(n)
        if not 2 <= len(np.unique(labels)) <= len(distances) - 1:
            continue
        score = silhouette_score(distances, labels, metric="precomputed")
        if score > best_score:
            best_score, best_n = score, n
    return best_n


def _candidate_counts(max_count: int, n_items: int) -> list[int]:
    """The group counts to choose from: 2 to min(max_count, n_items - 1), or the one count
    that n_items allows (two items: two groups; one item: one)."""
    return list(range(2, min(max_count, n_items - 1) + 1)) or [min(2, n_items)]


def _correlations(acts: np.ndarray) -> np.ndarray:
    """Pearson correlation between the columns (neurons) of (N, C) activations; a neuron
    that never varies correlates 0 with the others, and with itself."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nan_to_num(np.atleast_2d(np.corrcoef(acts.T)), nan=0.0)


def _average_linkage(distance: np.ndarray, n_groups: int) -> np.ndarray:
    """Average-linkage clustering of items with a precomputed distance into n_groups."""
    n_items = len(distance)
    if n_groups == 1:
        return np.zeros(n_items, dtype=int)
    if n_groups == n_items:
        return np.arange(n_items)
    clustering = AgglomerativeClustering(n_groups, metric="precomputed", linkage="average")
    return clustering.fit_predict(distance)


class _NeuronClustering(ClusterMixin, TransformerMixin, BaseEstimator):
    """A clusterer of the features (neurons) of activations, as ``FeatureAgglomeration``.

    Subclasses set, in ``fit``, ``labels_`` (one label per neuron),
    ``n_groups_`` and, through :meth:`_set_groups`, ``groups_``.
    """

    layer: str | None
    dim: int = 1

    @property
    def fit_predict(self) -> None:  # type: ignore[override]
        """Not available: the labels are per neuron, not per example (as in
        ``FeatureAgglomeration``); read ``labels_`` after ``fit``."""
        raise AttributeError(
            f"{type(self).__name__} clusters neurons (the features of X), not examples; "
            f"use fit(X).labels_ for the neurons' labels"
        )

    def transform(self, X: object) -> np.ndarray:
        """Each group's activation on X: the mean of its neurons' activations, (N, n_groups).

        X is shaped as in :meth:`fit`; other axes than the examples and the neurons
        are averaged first.
        """
        check_is_fitted(self)
        acts = per_neuron(self, X, self.dim, reset=False)
        return np.stack(
            [acts[:, self.labels_ == label].mean(1) for label in np.unique(self.labels_)], 1
        )

    def _set_groups(self, labels: np.ndarray) -> None:
        """``labels_``, ``n_groups_`` and, when ``layer`` names a layer, ``groups_``."""
        self.labels_ = labels
        self.n_groups_ = len(np.unique(labels))
        self.groups_ = (
            None if self.layer is None else GroupSet.from_labels(self.layer, labels, dim=self.dim)
        )


class CoactivationClustering(_NeuronClustering):
    """Neuronal assemblies: neurons grouped by how their activations co-vary.

    The affinity between two neurons is the Pearson correlation of their
    activations (spatial means) over a data set. Neurons that fire together
    form a group, as in cell-assembly theory (BEAN, Gao et al. 2021) and
    NeuroCartography. Like scikit-learn's ``FeatureAgglomeration``, it
    clusters the features of X: ``labels_`` has one label per neuron,
    ``transform`` gives each group's mean activation, and there is no
    ``fit_predict``.

    Parameters
    ----------
    layer : str, optional
        The name of the layer the neurons belong to, used to build ``groups_``
        (a name, not a module, so that ``clone`` does not copy the model).
    n_groups : int, optional
        Number of groups; chosen by silhouette score in 2..``max_groups`` if
        None (two neurons, which the silhouette cannot compare, make two
        groups; one neuron makes one).
    method : {"agglomerative", "spectral"}
        Average-linkage clustering of ``1 - correlation``, or spectral
        clustering of the positive correlations.
    max_groups : int
        Largest number of groups tried when ``n_groups`` is None.
    random_state : int, optional
        Seed for spectral clustering.
    dim : int
        Axis of X that holds the neurons: 1 for (N, C, ...) activations, -1
        for channels-last sequences (N, T, F); the other axes are averaged.

    Attributes
    ----------
    labels_ : ndarray of shape (C,)
        Group of each neuron.
    n_groups_ : int
        Number of groups found.
    affinity_ : ndarray of shape (C, C)
        Correlation between neurons.
    groups_ : GroupSet or None
        The groups, a partition of the layer (None without a ``layer``).
    n_features_in_ : int
        Number of neurons C seen in ``fit``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> factors = rng.random((200, 2))
    >>> acts = np.repeat(factors, 3, axis=1) + 0.05 * rng.random((200, 6))
    >>> CoactivationClustering("fc", n_groups=2).fit(acts).labels_
    array([0, 0, 0, 1, 1, 1])
    """

    def __init__(
        self,
        layer: str | None = None,
        n_groups: int | None = None,
        method: str = "agglomerative",
        max_groups: int = 20,
        random_state: int | None = None,
        dim: int = 1,
    ) -> None:
        self.layer = layer
        self.n_groups = n_groups
        self.method = method
        self.max_groups = max_groups
        self.random_state = random_state
        self.dim = dim

    def fit(self, X: object, y: object = None) -> CoactivationClustering:
        """Group the neurons of activations X, shaped (N, C) or (N, C, ...) (see ``dim``).

        ``y`` is ignored.
        """
        check_layer_name(self.layer)
        acts = per_neuron(self, X, self.dim, reset=True, min_samples=2)
        n_neurons = acts.shape[1]
        if self.method not in ("agglomerative", "spectral"):
            raise ValueError(f"method must be 'agglomerative' or 'spectral', got {self.method!r}")
        check_count(self.n_groups, "n_groups", 1, n_neurons)
        check_count(self.max_groups, "max_groups", 2, 10_000)
        corr = _correlations(acts)
        np.fill_diagonal(corr, 1.0)
        distance = np.clip(1.0 - corr, 0.0, 2.0)

        def fit_labels(n: int) -> np.ndarray:
            if self.method == "agglomerative" or n in (1, n_neurons):
                return _average_linkage(distance, n)
            model = SpectralClustering(
                n,
                affinity="precomputed",
                random_state=self.random_state,
                assign_labels="discretize",
            )
            return model.fit_predict(np.clip(corr, 0.0, 1.0))

        n_groups = self.n_groups
        candidates = _candidate_counts(self.max_groups, n_neurons)
        if n_groups is None and len(candidates) == 1:
            n_groups = candidates[0]
        elif n_groups is None:
            # One tree cut at every count (agglomerative), or one fit per count (spectral).
            cut = (
                _tree_cuts(distance, "average", metric="precomputed")
                if self.method == "agglomerative"
                else fit_labels
            )
            n_groups = _best_by_silhouette(cut, candidates, distance)
        self.affinity_ = corr
        self._set_groups(fit_labels(n_groups))
        return self


class AssemblyClustering(_NeuronClustering):
    """BEAN's assemblies: neurons grouped by co-activation and shared outgoing connectivity.

    The affinity between two neurons is the mean of their positive activation
    correlation and their shared outgoing connectivity (BEAN's first-order
    ``A``, scaled to [0, 1]; Gao et al. 2021). Average-linkage clustering of
    ``1 - affinity`` gives the assemblies; their number is the one whose
    partition of the co-activation graph (positive correlations) has the
    highest modularity. :func:`captum_groups.find_assemblies` fits it on a
    trained layer. It clusters the features of X, as
    :class:`CoactivationClustering` does.

    Parameters
    ----------
    layer : str, optional
        The name of the layer the neurons belong to, used to build ``groups_``.
    n_groups : int, optional
        Number of assemblies; chosen by modularity in 2..``max_groups`` if None.
    max_groups : int
        Largest number of assemblies tried when ``n_groups`` is None.

    Attributes
    ----------
    labels_ : ndarray of shape (C,)
        Assembly of each neuron.
    n_groups_ : int
        Number of assemblies.
    affinity_ : ndarray of shape (C, C)
        The affinity the neurons were clustered by.
    modularity_ : float
        Modularity of the co-activation graph under this partition.
    groups_ : GroupSet or None
        The assemblies, a partition of the layer (None without a ``layer``).
    n_features_in_ : int
        Number of neurons C seen in ``fit``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> acts = np.repeat(rng.random((100, 2)), 2, axis=1) + 0.05 * rng.random((100, 4))
    >>> shared = np.kron(np.eye(2), np.ones((2, 2)))  # neurons 0-1 and 2-3 share outputs
    >>> AssemblyClustering("fc").fit(acts, connectivity=shared).labels_
    array([0, 0, 1, 1])
    """

    def __init__(
        self, layer: str | None = None, n_groups: int | None = None, max_groups: int = 12
    ) -> None:
        self.layer = layer
        self.n_groups = n_groups
        self.max_groups = max_groups

    def fit(self, X: object, y: object = None, connectivity: object = None) -> AssemblyClustering:
        """Group the neurons of activations X, shaped (N, C) or (N, C, ...).

        ``connectivity`` (C, C), non-negative: how strongly each pair of neurons
        shares outgoing connections (BEAN's ``A``; without it, co-activation
        only). ``y`` is ignored.
        """
        check_layer_name(self.layer)
        acts = per_neuron(self, X, self.dim, reset=True, min_samples=2)
        n_neurons = acts.shape[1]
        check_count(self.n_groups, "n_groups", 1, n_neurons)
        check_count(self.max_groups, "max_groups", 2, 1_000_000)
        corr = _correlations(acts)
        affinity = np.clip(corr, 0, 1)
        if connectivity is not None:
            shared = check_array(connectivity, dtype=(np.float64, np.float32), input_name="X")
            if shared.shape != (n_neurons, n_neurons) or shared.min() < 0:
                raise ValueError(
                    f"connectivity must be a non-negative ({n_neurons}, {n_neurons}) matrix, "
                    f"one row and column per neuron of X; got shape {shared.shape}"
                )
            affinity = (affinity + shared / max(shared.max(), 1e-12)) / 2
        np.fill_diagonal(affinity, 1.0)
        graph = nx.from_numpy_array(np.clip(corr, 0, None) - np.eye(n_neurons))

        def score(labels: np.ndarray) -> float:
            if graph.size(weight="weight") == 0:  # no positive correlation: no structure
                return 0.0
            return modularity(graph, [set(np.flatnonzero(labels == g)) for g in np.unique(labels)])

        n_groups = self.n_groups
        counts = range(2, min(self.max_groups, n_neurons - 1) + 1)
        if n_groups is None and not counts:
            n_groups = n_neurons  # one or two neurons: each its own assembly
        elif n_groups is None:
            # One tree cut at every count; the partition of highest modularity.
            cut = _tree_cuts(1.0 - affinity, "average", metric="precomputed")
            n_groups = max(counts, key=lambda n: score(cut(n)))
        labels = _average_linkage(1.0 - affinity, n_groups)
        self.affinity_ = affinity
        self.modularity_ = float(score(labels))
        self._set_groups(labels)
        return self


class ConceptClustering(ClusterMixin, BaseEstimator):
    """NeurFlow's grouping: neurons' sub-concepts clustered by shared function.

    Each row of X describes one neuron by the activation vectors of its top-k
    exemplars. They are split into sub-concepts (Ward agglomerative
    clustering of the vectors, the number chosen by silhouette score in
    2..``max_subconcepts``), a polysemantic neuron getting several. Each
    sub-concept is summarised by its concept vector (the mean activation
    vector of its exemplars). All concept vectors of the layer are then
    clustered again (Ward) into groups. A group holds the neurons with a
    sub-concept in it, so groups may overlap (Cao et al., ICLR 2025). The
    procedure is deterministic. Its rows being neurons, ``labels_`` and
    ``fit_predict`` give one label per row.

    Parameters
    ----------
    layer : str, optional
        The name of the layer the neurons belong to, used to build ``groups_``.
    n_groups : int, optional
        Number of groups; chosen by silhouette in 2..``max_groups`` if None
        (two sub-concepts, which the silhouette cannot compare, make two
        groups; one makes one).
    max_groups : int
        Largest number of groups tried when ``n_groups`` is None (NeurFlow: 100).
    max_subconcepts : int
        Largest number of sub-concepts per neuron (NeurFlow: 5).
    neurons : sequence of int, optional
        Deprecated: give ``neurons`` to :meth:`fit`. Used when ``fit`` gets none.

    Attributes
    ----------
    concept_vectors_ : ndarray of shape (S, D)
        One vector per sub-concept.
    concept_neurons_ : ndarray of shape (S,)
        The neuron each sub-concept belongs to.
    concept_labels_ : ndarray of shape (S,)
        The group of each sub-concept.
    labels_ : ndarray of shape (C,)
        The group of each neuron's (row's) largest sub-concept.
    n_groups_ : int
        Number of groups.
    groups_ : GroupSet or None
        The groups (they may overlap; None without a ``layer``). Clusters
        holding sub-concepts of exactly the same neurons give one group.
    n_features_in_ : int
        Length D of the activation vectors seen in ``fit``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> centers = np.eye(3)[[0, 0, 1, 1, 2, 2]]  # neuron -> concept
    >>> X = centers[:, None, :] + 0.05 * rng.standard_normal((6, 20, 3))
    >>> sorted(g.indices for g in ConceptClustering("conv", n_groups=3).fit(X).groups_)
    [(0, 1), (2, 3), (4, 5)]
    """

    def __init__(
        self,
        layer: str | None = None,
        n_groups: int | None = None,
        max_groups: int = 100,
        max_subconcepts: int = 5,
        neurons: Sequence[int] | None = None,
    ) -> None:
        self.layer = layer
        self.n_groups = n_groups
        self.max_groups = max_groups
        self.max_subconcepts = max_subconcepts
        self.neurons = neurons

    def fit(
        self, X: object, y: object = None, neurons: Sequence[int] | None = None
    ) -> ConceptClustering:
        """Group neurons from X: each row one neuron's k exemplar activation vectors.

        Parameters
        ----------
        X : array-like of shape (C, k, D) or (C, D)
            Each neuron's top-k exemplars described by D-dimensional activation
            vectors (e.g. :func:`~captum_groups.discovery.exemplar_activations`);
            (C, D) describes each neuron by one vector (no sub-concepts).
        y : None
            Ignored.
        neurons : sequence of int, optional
            The neuron index of each row of X (0..C-1 by default), e.g. a
            layer's core neurons.
        """
        check_layer_name(self.layer)
        vectors = checked_array(X)
        if vectors.ndim > 3:
            raise ValueError(
                f"X must be shaped (neurons, exemplars, features) or (neurons, features), "
                f"got {vectors.shape}"
            )
        count_features(self, vectors.shape[-1], reset=True)
        rows = vectors if vectors.ndim == 3 else vectors[:, None, :]
        owners_of = self.neurons if neurons is None else neurons
        index = np.arange(len(rows)) if owners_of is None else np.asarray(owners_of)
        if index.shape != (len(rows),):
            raise ValueError(f"neurons must list one index per row of X ({len(rows)})")
        check_count(self.max_subconcepts, "max_subconcepts", 1, 1_000)
        concepts, owners, sizes = self._concepts(rows)
        check_count(self.n_groups, "n_groups", 1, len(concepts))
        n_groups = self.n_groups
        candidates = _candidate_counts(self.max_groups, len(concepts))
        if n_groups is None and len(candidates) == 1:
            n_groups = candidates[0]
        elif n_groups is None:
            cut, distances = _tree_cuts(concepts, "ward"), pairwise_distances(concepts)
            n_groups = _best_by_silhouette(cut, candidates, distances)
        concept_labels = (
            np.zeros(len(concepts), dtype=int)
            if n_groups == 1
            else AgglomerativeClustering(n_groups, linkage="ward").fit_predict(concepts)
        )
        self.concept_vectors_ = concepts
        self.concept_neurons_ = index[owners]
        self.concept_labels_ = concept_labels
        # A neuron's label is its largest sub-concept's.
        largest = [np.flatnonzero(owners == row) for row in range(len(rows))]
        self.labels_ = np.array([concept_labels[m[np.argmax(sizes[m])]] for m in largest])
        self.n_groups_ = n_groups
        self.groups_ = self._groups(index[owners], concept_labels)
        return self

    def _concepts(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every row's sub-concepts: (S, D) concept vectors, the row of each, and its size."""
        concepts, owners, sizes = [], [], []
        for row, exemplars in enumerate(rows):
            labels = self._subconcepts(exemplars)
            for label in np.unique(labels):
                members = exemplars[labels == label]
                concepts.append(members.mean(0))
                owners.append(row)
                sizes.append(len(members))
        return np.stack(concepts), np.asarray(owners), np.asarray(sizes)

    def _groups(self, neurons: np.ndarray, concept_labels: np.ndarray) -> GroupSet | None:
        """One group per concept cluster (the neurons of its sub-concepts), duplicates merged."""
        if self.layer is None:
            return None
        member_sets: list[tuple[int, ...]] = []
        for label in np.unique(concept_labels):
            members = tuple(sorted(set(neurons[concept_labels == label].tolist())))
            if members not in member_sets:
                member_sets.append(members)
        return GroupSet(
            NeuronGroup(self.layer, members, name=f"g{i}") for i, members in enumerate(member_sets)
        )

    def _subconcepts(self, exemplars: np.ndarray) -> np.ndarray:
        """Sub-concept label of each exemplar of one neuron."""
        top = min(self.max_subconcepts, len(exemplars) - 1)
        if top < 2:
            return np.zeros(len(exemplars), dtype=int)
        candidates = list(range(2, top + 1))
        best = _best_by_silhouette(
            _tree_cuts(exemplars, "ward"), candidates, pairwise_distances(exemplars)
        )
        return AgglomerativeClustering(best, linkage="ward").fit_predict(exemplars)
