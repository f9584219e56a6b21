"""BEAN: a training regularizer that makes neurons form assemblies, and finding them.

BEAN (Gao, Ascoli, Zhao; Frontiers in Neurorobotics 2021, arXiv 1909.13698)
follows cell-assembly theory: neurons of a layer that share strong outgoing
connections are pushed to fire together. For a layer with activations h
(batch B x N neurons) and the next layer's weight W (N_next x N)::

    W_hat = |tanh(gamma * W^T)|                      (N x N_next)
    A     = W_hat W_hat^T        (first order)       (N x N)
    A     = (W_hat W_hat^T)^2    (second order, elementwise)
    d_ij  = mean over the batch of (h_i - h_j)^2
    loss  = alpha * mean_ij A_ij d_ij                (summed over layers)

Neurons with strong shared connectivity but different activations are
penalised, so they either co-activate (an assembly) or lose the shared
connection (sparsity). Here d is expanded as E[h_i^2] + E[h_j^2] - 2 E[h_i h_j],
so memory is O(N^2 + N B) instead of the reference code's N x N x B tensor.
Conv layers count channels as neurons: activations are averaged over space,
and the connection between two channels is the norm of the kernel slice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ._model.capture import on_this_thread, run_to_layer
from ._model.guards import guarded_call
from ._validation.deprecation import renamed_keywords
from .data import iter_batches
from .discovery._validation import check_count
from .discovery.clustering import AssemblyClustering
from .groups import GroupSet, Layer, layer_name, neuron_means, resolve_layer

__all__ = ["Assemblies", "BEANRegularizer", "bean_loss", "connectivity", "find_assemblies"]

_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def connectivity(next_layer: nn.Module) -> Tensor:
    """Connection strength (N_next, N) from a layer's neurons to the next layer's.

    The weight of a Linear layer; for convolutions, the L2 norm of each kernel
    slice (output channel x input channel).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> conv = nn.Conv2d(2, 1, 2, bias=False)
    >>> kernels = torch.tensor([[[[3.0, 4.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]]])
    >>> with torch.no_grad():
    ...     _ = conv.weight.copy_(kernels)
    >>> connectivity(conv).detach()  # (N_next, N): the L2 norm of each 2 x 2 kernel slice
    tensor([[5., 1.]])
    """
    if not isinstance(next_layer, _WEIGHTED):
        raise TypeError(f"the next layer must be Linear or Conv, got {type(next_layer).__name__}")
    weight = next_layer.weight
    if isinstance(next_layer, nn.Linear):
        return weight
    if next_layer.groups != 1:
        raise ValueError("grouped convolutions are not supported as the next layer of BEAN")
    return weight.flatten(2).norm(dim=2)


def bean_loss(activations: Tensor, weight: Tensor, gamma: float = 1.0, order: int = 1) -> Tensor:
    """BEAN's loss for one layer (without alpha), in O(N^2 + N B) memory.

    Parameters
    ----------
    activations : Tensor
        (B, N) activations, or (B, N, ...) averaged over the trailing axes.
    weight : Tensor
        (N_next, N) connection strength to the next layer.
    gamma : float
        Scale inside the tanh.
    order : {1, 2}
        First- or second-order shared connectivity.

    Examples
    --------
    >>> w = torch.tensor([[1.0, 1.0, 0.0]])  # neurons 0 and 1 share an output
    >>> apart = torch.tensor([[1.0, 0.0, 5.0], [2.0, 1.0, 0.0]])  # ... but fire differently
    >>> together = torch.tensor([[1.0, 1.0, 5.0], [2.0, 2.0, 0.0]])  # ... and fire together
    >>> bean_loss(apart, w).item() > 0, bean_loss(together, w).item()
    (True, 0.0)
    """
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order!r}")
    h = neuron_means(activations)
    if weight.shape[1] != h.shape[1]:
        raise ValueError(
            f"the next layer takes {weight.shape[1]} inputs but the layer has {h.shape[1]} "
            f"neurons; give the next weight layer explicitly"
        )
    # BEAN's connectivity: |tanh(gamma w)| saturates, so a few strong weights count as
    # "connected" and the many small ones barely; shared[i, j] is how much neurons i and j
    # send to the same next-layer neurons
    w_hat = torch.tanh(gamma * weight.T).abs()
    shared = w_hat @ w_hat.T
    if order == 2:
        # second order: neurons that share targets with the same neurons (W W^T squared)
        shared = shared * shared
    # the mean over the batch of (h_i - h_j)^2 for every pair, expanded as
    # E[h_i^2] + E[h_j^2] - 2 E[h_i h_j]: O(N^2 + N B) memory, not the N x N x B tensor of
    # differences the reference code builds (benchmarks/bean_memory.py)
    squares = (h * h).mean(0)
    gram = h.T @ h / h.shape[0]
    distance = squares[:, None] + squares[None, :] - 2 * gram
    return (shared * distance).mean()


def _next_weight_layer(model: nn.Module, layer: nn.Module) -> nn.Module:
    """The first Linear/Conv module registered after ``layer`` (its own children excluded)."""
    modules = list(model.modules())
    inside = set(map(id, layer.modules()))
    start = modules.index(layer)
    for module in modules[start + 1 :]:
        if id(module) not in inside and isinstance(module, _WEIGHTED):
            return module
    raise ValueError(
        f"regularized layer {layer_name(model, layer)!r} has no weight layer after it; "
        f"BEAN needs the next Linear or Conv layer's weight"
    )


class BEANRegularizer:
    """The BEAN loss of the last forward pass, over one or more layers.

    Hooks on the regularized layers keep their latest activations (with
    gradients). Call the regularizer after the forward pass and add its value
    to the task loss. The hooks belong to the regularizer: ``close()`` (or the
    end of a ``with`` block, also on error) removes them.

    Parameters
    ----------
    model : nn.Module
        The model being trained.
    layers : layer or sequence of layers
        Layers whose neurons should form assemblies (modules or dotted names).
    alpha : float
        Weight of the loss (>= 0); the reference uses 3 (first order) and
        100 (few-shot, second order).
    gamma : float
        Scale inside the tanh of the connectivity.
    order : {1, 2}
        First- or second-order shared connectivity.
    next_layers : mapping or sequence, optional
        The weight layer after each regularized layer; found automatically
        (the next Linear/Conv in module order) when omitted.

    Examples
    --------
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> with BEANRegularizer(model, "1", alpha=3.0) as bean:
    ...     out = model(torch.randn(16, 4))
    ...     loss = nn.functional.cross_entropy(out, torch.zeros(16, dtype=torch.long)) + bean()
    ...     loss.backward()
    >>> len(model[1]._forward_hooks)
    0
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Layer | Sequence[Layer],
        alpha: float = 1.0,
        gamma: float = 1.0,
        order: int = 1,
        next_layers: Mapping[Layer, Layer] | Sequence[Layer] | None = None,
    ) -> None:
        if not isinstance(alpha, (int, float)) or alpha < 0:
            raise ValueError(f"alpha must be a number >= 0, got {alpha!r}")
        if order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, got {order!r}")
        items = [layers] if isinstance(layers, (str, nn.Module)) else list(layers)
        if not items:
            raise ValueError("layers must name at least one layer")
        self.model, self.alpha, self.gamma, self.order = model, float(alpha), gamma, order
        self.layers = [resolve_layer(model, item, "layers") for item in items]
        if next_layers is None:
            self.next_layers = [_next_weight_layer(model, layer) for layer in self.layers]
        elif isinstance(next_layers, Mapping):
            by_module = {resolve_layer(model, k, "next_layers"): v for k, v in next_layers.items()}
            self.next_layers = [
                resolve_layer(model, by_module[layer], "next_layers") for layer in self.layers
            ]
        else:
            self.next_layers = [resolve_layer(model, n, "next_layers") for n in next_layers]
            if len(self.next_layers) != len(self.layers):
                raise ValueError("next_layers must give one weight layer per regularized layer")
        for next_layer in self.next_layers:
            connectivity(next_layer)
        self._activations: dict[int, Tensor] = {}
        self._handles = [
            layer.register_forward_hook(on_this_thread(self._keep(i)))
            for i, layer in enumerate(self.layers)
        ]

    def _keep(self, index: int):  # type: ignore[no-untyped-def]
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if not isinstance(output, Tensor):
                raise TypeError("BEAN regularizes layers that output one tensor")
            self._activations[index] = output

        return hook

    def __call__(self) -> Tensor:
        """The loss for the activations of the last forward pass."""
        if len(self._activations) != len(self.layers):
            raise RuntimeError("no forward pass has run through every regularized layer yet")
        total = sum(
            bean_loss(self._activations[i], connectivity(nxt), self.gamma, self.order)
            for i, nxt in enumerate(self.next_layers)
        )
        return self.alpha * total

    def close(self) -> None:
        """Remove the hooks and forget the stored activations."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._activations.clear()

    def __enter__(self) -> BEANRegularizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Assemblies:
    """Neuronal assemblies of a layer and how class-selective they are.

    Attributes
    ----------
    groups : GroupSet
        The assemblies (a partition of the layer's neurons).
    preferred_class : ndarray
        Class with the highest mean assembly activation, per assembly.
    selectivity : ndarray
        Class selectivity index per assembly:
        (mean on the preferred class - mean on the others) / (their sum).
    modularity : float
        Modularity (networkx) of the layer's co-activation graph
        (positive correlations) under this partition.

    Examples
    --------
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> found = find_assemblies(digits_cnn(), "relu4", load_digits("test"), n_groups=4)
    >>> len(found.groups), found.preferred_class.shape, found.selectivity.shape
    (4, (4,), (4,))
    """

    groups: GroupSet
    preferred_class: np.ndarray = field(repr=False)
    selectivity: np.ndarray = field(repr=False)
    modularity: float


def _layer_activations(
    model: nn.Module, layer: nn.Module, data: Iterable[Any]
) -> tuple[Tensor, Tensor]:
    acts, labels = [], []
    with torch.no_grad():
        for inputs, batch_labels in iter_batches(data, labels=True):
            if len(inputs) == 0:
                continue
            if len(batch_labels) != len(inputs):
                raise ValueError(
                    f"data gives a batch of {len(inputs)} inputs with {len(batch_labels)} labels"
                )
            acts.append(neuron_means(run_to_layer(model, inputs, layer)[0]))
            labels.append(batch_labels)
    if not acts:
        raise ValueError("data is empty; find_assemblies needs labelled examples")
    found = torch.cat(acts)
    if not torch.isfinite(found).all():
        raise ValueError(
            f"data gives NaN or infinite activations at layer {layer_name(model, layer)!r}; "
            f"check data for NaN or infinite values"
        )
    return found, torch.cat(labels)


@renamed_keywords(n_assemblies="n_groups", max_assemblies="max_groups")
def find_assemblies(
    model: nn.Module,
    layer: Layer,
    data: Iterable[Any] | tuple[Tensor, Tensor],
    n_groups: int | None = None,
    max_groups: int = 12,
    next_layer: Layer | None = None,
    gamma: float = 1.0,
) -> Assemblies:
    """The assemblies of a trained layer, from co-activation and connectivity together.

    The neurons are grouped by :class:`~captum_groups.discovery.AssemblyClustering`
    (co-activation over ``data`` and shared outgoing connectivity, average
    linkage, the number of assemblies chosen by modularity when ``n_groups``
    is None); each assembly's class profile then gives its preferred class
    and selectivity. The parameters carry :class:`AssemblyClustering`'s names
    (``n_assemblies`` and ``max_assemblies`` still work, with a FutureWarning).

    Parameters
    ----------
    model : nn.Module
        The trained model.
    layer : nn.Module or str
        The layer.
    data : (inputs, labels) tuple, or iterable of (inputs, labels) batches
        Examples with labels (for class selectivity).
    n_groups : int, optional
        Number of assemblies.
    max_groups : int
        Largest number tried when ``n_groups`` is None.
    next_layer : nn.Module or str, optional
        The weight layer after ``layer`` (found automatically otherwise).
    gamma : float
        Scale inside the tanh of the connectivity.

    Returns
    -------
    Assemblies

    Examples
    --------
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> found = find_assemblies(digits_cnn(), "relu4", load_digits("test"), n_groups=4)
    >>> len(found.groups), found.selectivity.shape
    (4, (4,))
    """
    module = resolve_layer(model, layer)
    following = (
        _next_weight_layer(model, module)
        if next_layer is None
        else resolve_layer(model, next_layer)
    )
    batches = [data] if isinstance(data, tuple) and isinstance(data[0], Tensor) else data
    check_count(n_groups, "n_groups", 2, 1_000_000)
    check_count(max_groups, "max_groups", 2, 1_000_000)
    with guarded_call(model, "find_assemblies"):
        acts, labels = _layer_activations(model, module, batches)
    check_count(n_groups, "n_groups", 2, acts.shape[1])
    with torch.no_grad():
        w_hat = torch.tanh(gamma * connectivity(following).T).abs()
        shared = (w_hat @ w_hat.T).cpu().numpy()
    clustering = AssemblyClustering(layer_name(model, module), n_groups, max_groups)
    clustering.fit(acts.cpu().numpy(), connectivity=shared)
    groups = clustering.groups_
    classes = torch.unique(labels)
    preferred, selectivity = [], []
    for group in groups:
        value = acts[:, list(group.indices)].mean(1)
        per_class = torch.stack([value[labels == c].mean() for c in classes])
        best = int(per_class.argmax())
        others = torch.cat([per_class[:best], per_class[best + 1 :]]).mean()
        preferred.append(int(classes[best]))
        selectivity.append(
            float((per_class[best] - others) / (per_class[best] + others).clamp_min(1e-12))
        )
    return Assemblies(groups, np.array(preferred), np.array(selectivity), clustering.modularity_)
