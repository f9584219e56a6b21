"""Grouping neurons by shared function: co-activation assemblies and NeurFlow concepts."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import AgglomerativeClustering, SpectralClustering
from sklearn.metrics import pairwise_distances, silhouette_score

from ..groups import GroupSet, Layer, NeuronGroup
from ._validation import as_array, check_count, per_neuron


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


class CoactivationClustering(ClusterMixin, BaseEstimator):
    """Neuronal assemblies: neurons grouped by how their activations co-vary.

    The affinity between two neurons is the Pearson correlation of their
    activations (spatial means) over a data set. Neurons that fire together
    form a group, as in cell-assembly theory (BEAN, Gao et al. 2021) and
    NeuroCartography.

    Parameters
    ----------
    layer : str or nn.Module
        The layer the neurons belong to (used to build ``groups_``).
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
    groups_ : GroupSet
        The groups, a partition of the layer.

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
        layer: Layer,
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
        """Group the neurons of activations X, shaped (N, C) or (N, C, ...) (see ``dim``)."""
        acts = per_neuron(X, dim=self.dim)
        n_examples, n_neurons = acts.shape
        if n_examples < 2:
            raise ValueError(f"X needs at least 2 examples to correlate, got shape {acts.shape}")
        if self.method not in ("agglomerative", "spectral"):
            raise ValueError(f"method must be 'agglomerative' or 'spectral', got {self.method!r}")
        check_count(self.n_groups, "n_groups", 1, n_neurons)
        check_count(self.max_groups, "max_groups", 2, 10_000)
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.atleast_2d(np.corrcoef(acts.T))
        corr = np.nan_to_num(corr, nan=0.0)
        np.fill_diagonal(corr, 1.0)
        distance = np.clip(1.0 - corr, 0.0, 2.0)

        def fit_labels(n: int) -> np.ndarray:
            if n == 1:
                return np.zeros(n_neurons, dtype=int)
            if n == n_neurons:
                return np.arange(n_neurons)
            if self.method == "agglomerative":
                model = AgglomerativeClustering(n, metric="precomputed", linkage="average")
                return model.fit_predict(distance)
            model = SpectralClustering(
                n,
                affinity="precomputed",
                random_state=self.random_state,
                assign_labels="discretize",
            )
            return model.fit_predict(np.clip(corr, 0.0, 1.0))

        if self.n_groups is not None:
            n_groups = self.n_groups
        else:
            candidates = list(range(2, min(self.max_groups, n_neurons - 1) + 1))
            candidates = candidates or [min(2, n_neurons)]
            if len(candidates) == 1:
                n_groups = candidates[0]
            elif self.method == "agglomerative":
                cut = _tree_cuts(distance, "average", metric="precomputed")
                n_groups = _best_by_silhouette(cut, candidates, distance)
            else:
                n_groups = _best_by_silhouette(fit_labels, candidates, distance)
        labels = fit_labels(n_groups)
        self.labels_ = labels
        self.n_groups_ = n_groups
        self.affinity_ = corr
        self.groups_ = GroupSet.from_labels(self.layer, labels)
        return self


class ConceptClustering(ClusterMixin, BaseEstimator):
    """NeurFlow's grouping: neurons' sub-concepts clustered by shared function.

    Each neuron's top-k exemplars are split into sub-concepts (Ward
    agglomerative clustering of their activation vectors, the number chosen
    by silhouette score in 2..``max_subconcepts``), a polysemantic neuron
    getting several. Each sub-concept is summarised by its concept vector
    (the mean activation vector of its exemplars). All concept vectors of
    the layer are then clustered again (Ward) into groups. A group holds the
    neurons with a sub-concept in it, so groups may overlap (Cao et al.,
    ICLR 2025). The procedure is deterministic.

    Parameters
    ----------
    layer : str or nn.Module
        The layer the neurons belong to.
    n_groups : int, optional
        Number of groups; chosen by silhouette in 2..``max_groups`` if None
        (two sub-concepts, which the silhouette cannot compare, make two
        groups; one makes one).
    max_groups : int
        Largest number of groups tried when ``n_groups`` is None (NeurFlow: 100).
    max_subconcepts : int
        Largest number of sub-concepts per neuron (NeurFlow: 5).
    neurons : sequence of int, optional
        Neuron indices of the rows of X (all neurons 0..C-1 by default),
        e.g. a layer's core neurons.

    Attributes
    ----------
    concept_vectors_ : ndarray of shape (S, D)
        One vector per sub-concept.
    concept_neurons_ : ndarray of shape (S,)
        The neuron each sub-concept belongs to.
    concept_labels_ : ndarray of shape (S,)
        The group of each sub-concept.
    labels_ : ndarray of shape (len(neurons),)
        The group of each neuron's largest sub-concept.
    n_groups_ : int
        Number of groups.
    groups_ : GroupSet
        The groups (they may overlap). Clusters holding sub-concepts of
        exactly the same neurons give one group.

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
        layer: Layer,
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

    def fit(self, X: object, y: object = None) -> ConceptClustering:
        """Group neurons from X, shaped (C, k, D): each neuron's k exemplar activation vectors."""
        vectors = as_array(X)
        if vectors.ndim != 3:
            raise ValueError(
                f"X must be shaped (neurons, exemplars, features), got {vectors.shape}"
            )
        n_neurons = vectors.shape[0]
        neurons = np.arange(n_neurons) if self.neurons is None else np.asarray(self.neurons)
        if neurons.shape != (n_neurons,):
            raise ValueError(f"neurons must list one index per row of X ({n_neurons})")
        check_count(self.max_subconcepts, "max_subconcepts", 1, 1_000)
        concepts, owners, sizes = [], [], []
        for row, exemplars in enumerate(vectors):
            labels = self._subconcepts(exemplars)
            for label in np.unique(labels):
                members = exemplars[labels == label]
                concepts.append(members.mean(0))
                owners.append(row)
                sizes.append(len(members))
        concepts = np.stack(concepts)
        n_concepts = len(concepts)
        check_count(self.n_groups, "n_groups", 1, n_concepts)

        def fit_labels(n: int) -> np.ndarray:
            if n == 1:
                return np.zeros(n_concepts, dtype=int)
            return AgglomerativeClustering(n, linkage="ward").fit_predict(concepts)

        if self.n_groups is not None:
            n_groups = self.n_groups
        else:
            candidates = list(range(2, min(self.max_groups, n_concepts - 1) + 1))
            candidates = candidates or [min(2, n_concepts)]
            n_groups = (
                candidates[0]
                if len(candidates) == 1
                else _best_by_silhouette(
                    _tree_cuts(concepts, "ward"), candidates, pairwise_distances(concepts)
                )
            )
        concept_labels = fit_labels(n_groups)
        owners, sizes = np.asarray(owners), np.asarray(sizes)
        labels = np.empty(n_neurons, dtype=int)
        for row in range(n_neurons):
            mine = np.flatnonzero(owners == row)
            labels[row] = concept_labels[mine[np.argmax(sizes[mine])]]
        self.concept_vectors_ = concepts
        self.concept_neurons_ = neurons[owners]
        self.concept_labels_ = concept_labels
        self.labels_ = labels
        self.n_groups_ = n_groups
        member_sets: list[tuple[int, ...]] = []
        for label in np.unique(concept_labels):
            members = tuple(sorted(set(neurons[owners[concept_labels == label]].tolist())))
            if members not in member_sets:
                member_sets.append(members)
        self.groups_ = GroupSet(
            NeuronGroup(self.layer, members, name=f"g{i}") for i, members in enumerate(member_sets)
        )
        return self

    def _subconcepts(self, exemplars: np.ndarray) -> np.ndarray:
        """Sub-concept label of each exemplar of one neuron."""
        top = min(self.max_subconcepts, len(exemplars) - 1)
        if top < 2:
            return np.zeros(len(exemplars), dtype=int)

        def fit_labels(n: int) -> np.ndarray:
            return AgglomerativeClustering(n, linkage="ward").fit_predict(exemplars)

        candidates = list(range(2, top + 1))
        best = _best_by_silhouette(
            _tree_cuts(exemplars, "ward"), candidates, pairwise_distances(exemplars)
        )
        return fit_labels(best)
