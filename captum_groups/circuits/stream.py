"""A transformer as a graph of components that read and write the residual stream.

In a pre-norm transformer the stream entering each component is the sum of the outputs
of every component before it (the embedding, each head, each MLP) and constants (the
output biases). :class:`StreamGraph` makes that sum explicit: its *nodes* are the
embedding, groups of heads and groups of MLP neurons; each node but the embedding
reads its own copy of the stream, and the logits read the final stream. An *edge*
``u -> v`` is one term of that sum: node ``u``'s output in node ``v``'s input.

:meth:`StreamGraph.run` computes the model with some edges *patched*: node ``v`` reads

    x_v = stream_v(corrupted) + sum over kept edges u -> v of (a_u - a_u(corrupted))

where ``a_u`` is ``u``'s output in this run, so that an edge left out carries the value
it has on the corrupted input (the protocol of ACDC, Conmy et al. 2023, and edge
attribution patching, Syed et al. 2023; Hanna et al. 2024). With every edge kept the
run is the clean model; with none, the corrupted one (both checked on every graph).
Every node reads its own input at once: the batch is repeated once per node of a
layer (copy ``c`` holds node ``c``'s input), and each copy's heads or neurons outside
node ``c`` are zeroed where they enter the output projection, so that copy ``c``'s
sublayer output is node ``c``'s output. Many edge masks run in one batch too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from .._model.capture import logits_of, on_this_thread
from .._validation.checks import Count, ParameterError
from ..groups import NeuronGroup
from ..transformers.adapters import MultiheadAttentionAdapter, TorchEncoderAdapter
from ..transformers.hooked import HookedModel, hooked

__all__ = ["INPUT", "CorruptedRun", "StreamGraph", "StreamNode", "chunks"]

INPUT = "embed"
"""The node id of the embedding: the stream entering the first block."""

ROLES = ("q", "k", "v")
"""A head's three inputs: its queries, keys and values each read the stream on their own
(receivers ``aL.hH.q``, ``.k``, ``.v``), as in ACDC and EAP-IG."""

_ROLE_ENDS = tuple(f".{role}" for role in ROLES)


def chunks(total: int, size: int) -> list[slice]:
    """``range(total)`` in slices of ``size``.

    Examples
    --------
    >>> chunks(5, 2)
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    return [slice(start, min(start + size, total)) for start in range(0, total, size)]


@dataclasses.dataclass(frozen=True)
class StreamNode:
    """One component writing into the stream: the embedding, a group of heads of one
    attention layer, or a group of neurons of one MLP.

    Examples
    --------
    >>> from captum_groups.induction import tiny_gpt
    >>> StreamGraph(tiny_gpt(), torch.zeros(1, 20, dtype=torch.long)).node("a1.h2").group
    NeuronGroup('blocks.1.attn.hook_z', [2], name='a1.h2', dim=2)
    """

    id: str
    group: NeuronGroup
    block: int
    kind: str  # "input", "attn" or "mlp"


@dataclasses.dataclass
class CorruptedRun:
    """What the corrupted input gives (:meth:`StreamGraph.reference`): the stream where
    each node reads it, and each node's output (None before they are known).

    Examples
    --------
    >>> from captum_groups.induction import tiny_gpt, induction_prompts
    >>> clean, corrupted, _ = induction_prompts(2)
    >>> run = StreamGraph(tiny_gpt(), clean).reference(corrupted)
    >>> sorted(run.streams), run.outputs["a0.h1"].shape
    (['attn0', 'attn1', 'mlp0', 'mlp1', 'target'], torch.Size([2, 20, 32]))
    """

    streams: dict[str, Tensor]
    outputs: dict[str, Tensor] | None = None

    def rows(self, part: slice) -> CorruptedRun:
        """The run of some examples only."""
        outputs = None if self.outputs is None else {k: v[part] for k, v in self.outputs.items()}
        return CorruptedRun({k: v[part] for k, v in self.streams.items()}, outputs)


class StreamGraph:
    """The components of a pre-norm transformer and the residual-stream edges between
    them (see the module's docstring).

    Parameters
    ----------
    model : nn.Module
        A transformer :func:`~captum_groups.transformers.hooked` knows, pre-norm
        (GPT-2, ViTs, ``nn.TransformerEncoderLayer(norm_first=True)``), or its
        :class:`~captum_groups.transformers.HookedModel`.
    probe : Tensor
        Inputs of the model (one example is run, to read the sizes of its layers).
    groups : sequence of NeuronGroup, optional
        Nodes other than single heads and whole MLPs: groups of heads
        (``blocks.L.attn.hook_z``, ``dim=2``) and groups of MLP neurons
        (``blocks.L.mlp.hook_post``, ``dim=-1``); the groups of one layer must not
        overlap. A head in no group is a node of its own; an MLP's neurons in no
        group form one node (the whole MLP when it has no group).
    examples_per_pass : int
        Examples per forward pass (each repeated once per input of the busiest
        sublayer, and per mask); the results do not depend on it.

    Examples
    --------
    >>> from captum_groups.induction import tiny_gpt
    >>> graph = StreamGraph(tiny_gpt(), torch.zeros(1, 20, dtype=torch.long))
    >>> [node.id for node in graph.nodes][:6], len(graph.edges)
    (['embed', 'a0.h0', 'a0.h1', 'a0.h2', 'a0.h3', 'm0'], 110)
    >>> graph.receivers[:4]  # each head reads its queries, keys and values on its own
    ['a0.h0.q', 'a0.h0.k', 'a0.h0.v', 'a0.h1.q']
    """

    def __init__(
        self,
        model: nn.Module,
        probe: Tensor,
        groups: Sequence[NeuronGroup] = (),
        examples_per_pass: int = 256,
    ) -> None:
        Count(1).check(examples_per_pass, "examples_per_pass")
        self.examples_per_pass = examples_per_pass
        self.model = _stream_model(model)
        self.nodes = _nodes(self.model, _unit_counts(self.model, probe), list(groups))
        self.receivers: list[str] = []
        for node in self.nodes:
            if node.kind == "attn":
                self.receivers += [f"{node.id}.{role}" for role in ROLES]
            elif node.kind == "mlp":
                self.receivers.append(node.id)
        self.receivers.append("target")
        self.edges = [(n.id, r) for r in self.receivers for n in self._upstream(r)]
        self.edge_index = {edge: i for i, edge in enumerate(self.edges)}

    @property
    def layers(self) -> list[str]:
        """The hook points of the nodes and of the heads' inputs, in forward order."""
        found = []
        for node in self.nodes:
            if node.kind == "attn":
                found += [node.group.layer.replace("hook_z", f"hook_{r}") for r in ROLES]
            found.append(node.group.layer)
        return list(dict.fromkeys(found))

    def node(self, node_id: str) -> StreamNode:
        """The node of an id."""
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def reader(self, receiver: str) -> StreamNode | None:
        """The node that reads a receiver's input (None for the target)."""
        if receiver == "target":
            return None
        return self.node(receiver.rsplit(".", 1)[0] if receiver[-2:] in _ROLE_ENDS else receiver)

    def _upstream(self, receiver: str) -> list[StreamNode]:
        """The nodes whose outputs are in ``receiver``'s input."""
        node = self.reader(receiver)
        if node is None:
            return list(self.nodes)
        return [
            n
            for n in self.nodes
            if n.kind == "input"
            or n.block < node.block
            or (n.block == node.block and n.kind == "attn" and node.kind == "mlp")
        ]

    def _in_block(self, block: int, kind: str) -> list[StreamNode]:
        return [n for n in self.nodes if n.block == block and n.kind == kind]

    @property
    def copies(self) -> int:
        """How many times a run repeats the batch: the most inputs of one sublayer (three per
        group of heads)."""
        blocks = range(len(self.model.blocks))
        return max(
            max(3 * len(self._in_block(b, "attn")), len(self._in_block(b, "mlp"))) for b in blocks
        )

    def reference(self, inputs: Tensor) -> CorruptedRun:
        """The corrupted run's streams and node outputs (``inputs`` is the corrupted input).

        Examples
        --------
        >>> from captum_groups.induction import tiny_gpt, induction_prompts
        >>> clean, corrupted, _ = induction_prompts(2)
        >>> StreamGraph(tiny_gpt(), clean).reference(corrupted).streams["target"].shape
        torch.Size([2, 20, 32])
        """
        parts: list[dict[str, Tensor]] = []
        for rows in chunks(len(inputs), self.examples_per_pass):
            parts.append({})
            with self._hooks(_Recorder(self, parts[-1])), torch.no_grad():
                self.model(inputs[rows])
        reference = CorruptedRun({k: torch.cat([p[k] for p in parts]) for k in parts[0]})
        _, outputs = self.run_all(inputs, torch.zeros(1, len(self.edges)), reference)
        reference.outputs = {node: value[0] for node, value in outputs.items()}
        return reference

    def run_all(
        self,
        inputs: Tensor,
        keep: Tensor,
        reference: CorruptedRun,
        input_values: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """:meth:`run` without gradients, ``examples_per_pass`` examples at a time: the
        outputs (K, N, ...) and each node's output (K, N, ...) of every example.

        Examples
        --------
        >>> from captum_groups.induction import tiny_gpt, induction_prompts
        >>> clean, corrupted, _ = induction_prompts(5)
        >>> graph = StreamGraph(tiny_gpt(), clean, examples_per_pass=2)
        >>> outputs, _ = graph.run_all(clean, torch.ones(1, 110), graph.reference(corrupted))
        >>> torch.allclose(outputs[0], tiny_gpt()(clean), atol=1e-5)
        True
        """
        found: list[Tensor] = []
        nodes: dict[str, list[Tensor]] = {}
        with torch.no_grad():
            for rows in chunks(len(inputs), self.examples_per_pass):
                values = None if input_values is None else input_values[:, rows]
                output, outputs, _ = self.run(inputs[rows], keep, reference.rows(rows), values)
                found.append(output)
                for node, value in outputs.items():
                    nodes.setdefault(node, []).append(value)
        return torch.cat(found, 1), {node: torch.cat(v, 1) for node, v in nodes.items()}

    def held_outputs(
        self,
        inputs: Tensor,
        keep: Tensor,
        reference: CorruptedRun,
        input_values: Tensor | None = None,
    ) -> Callable[[slice, Tensor], Tensor]:
        """For gradients taken ``examples_per_pass`` examples at a time of a metric that
        reads every example: a function giving the outputs (K, N, ...) of every example,
        those of the chunk ``rows`` replaced by the chunk's own (with their gradients), the
        others held at their values. The others are computed once, here, and only when
        the examples take more than one pass.

        Examples
        --------
        >>> from captum_groups.induction import tiny_gpt, induction_prompts
        >>> clean, corrupted, _ = induction_prompts(5)
        >>> graph = StreamGraph(tiny_gpt(), clean, examples_per_pass=2)
        >>> keep, reference = torch.ones(1, 110), graph.reference(corrupted)
        >>> joined = graph.held_outputs(clean, keep, reference)
        >>> joined(slice(0, 2), torch.zeros(1, 2, 20, 24)).shape
        torch.Size([1, 5, 20, 24])
        """
        if len(inputs) <= self.examples_per_pass:
            return lambda _rows, outputs: outputs
        whole = self.run_all(inputs, keep, reference, input_values)[0]

        def joined(rows: slice, outputs: Tensor) -> Tensor:
            every = whole.clone()
            every[:, rows] = outputs
            return every

        return joined

    def run(
        self,
        inputs: Tensor,
        keep: Tensor,
        reference: CorruptedRun,
        input_values: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        """The model on ``inputs`` with the edges ``keep`` marks (K, edges; 1 kept, 0
        patched, between: blended) and the others patched from ``reference``; K masks
        at once.

        ``input_values`` (K, N, ...) replaces the embedding node's output (integrated
        gradients run along a path between two embeddings). Returns the outputs (K, N,
        ...), each node's output (K, N, ...) and each receiver's input (K, N, ...).
        """
        if keep.ndim != 2 or keep.shape[1] != len(self.edges):
            raise ParameterError(
                "keep", f"keep must be (masks, {len(self.edges)} edges), got {tuple(keep.shape)}"
            )
        state = _RunState(self, keep.to(inputs.device), reference, input_values)
        repeated = inputs.repeat(state.rows // len(inputs), *([1] * (inputs.ndim - 1)))
        with self._hooks(state):
            output = logits_of(self.model(repeated))
        output = output.view(len(keep), self.copies, len(inputs), *output.shape[1:])[:, 0]
        return output, state.outputs, state.inputs

    @contextmanager
    def _hooks(self, handler: Any) -> Iterator[None]:
        """``handler``'s methods as forward hooks on the hook points, removed on exit."""
        with ExitStack() as stack:
            for block, points in enumerate(self.model.blocks):
                for name in handler.points:
                    hook = on_this_thread(getattr(handler, name.replace(".", "_")))
                    module = points.get_submodule(name)
                    handle = module.register_forward_hook(
                        lambda _m, _a, out, hook=hook, block=block: hook(block, out)
                    )
                    stack.callback(handle.remove)
            yield


class _Recorder:
    """Records the stream where each sublayer reads it, as the model computes it."""

    points = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post")

    def __init__(self, graph: StreamGraph, streams: dict[str, Tensor]) -> None:
        self.graph, self.streams = graph, streams

    def hook_resid_pre(self, block: int, out: Tensor) -> None:
        self.streams[f"attn{block}"] = out

    def hook_resid_mid(self, block: int, out: Tensor) -> None:
        self.streams[f"mlp{block}"] = out

    def hook_resid_post(self, block: int, out: Tensor) -> None:
        if block == len(self.graph.model.blocks) - 1:
            self.streams["target"] = out


class _RunState:
    """The forward hooks of one :meth:`StreamGraph.run`: each sublayer's copies read
    their nodes' inputs, only their nodes' heads or neurons reach the output, and each
    node's output is kept."""

    points = (
        "hook_resid_pre",
        "attn.hook_q",
        "attn.hook_k",
        "attn.hook_v",
        "attn.hook_z",
        "hook_attn_out",
        "hook_resid_mid",
        "mlp.hook_post",
        "hook_mlp_out",
        "hook_resid_post",
    )

    def __init__(
        self, graph: StreamGraph, keep: Tensor, reference: CorruptedRun, input_values: Tensor | None
    ) -> None:
        self.graph, self.keep, self.reference = graph, keep, reference
        self.input_values = input_values
        self.masks, self.copies = len(keep), graph.copies
        self.outputs: dict[str, Tensor] = {}
        self.inputs: dict[str, Tensor] = {}
        self.batch = len(next(iter(reference.streams.values())))
        self.rows = self.masks * self.copies * self.batch

    def _split(self, value: Tensor) -> Tensor:
        """(K * copies * N, ...) -> (K, copies, N, ...)."""
        return value.view(self.masks, self.copies, self.batch, *value.shape[1:])

    def _receive(self, receivers: list[str], where: str) -> Tensor:
        """The inputs of ``receivers`` (one per copy), as the sublayer's batch."""
        stream = self.reference.streams[where]
        upstream = self.graph._upstream(receivers[0])  # the same for a sublayer's receivers
        if self.reference.outputs is None:
            values = [stream.expand(self.masks, *stream.shape)] * len(receivers)
        else:
            # (K, upstream, ...): each upstream node's change from its corrupted output,
            # weighed per receiver by the edges' keep values in one contraction
            changes = torch.stack(
                [self.outputs[n.id] - self.reference.outputs[n.id] for n in upstream], 1
            )
            values = []
            for receiver in receivers:
                columns = [self.graph.edge_index[n.id, receiver] for n in upstream]
                weights = self.keep[:, columns].to(changes.dtype)
                values.append(stream + torch.einsum("ku,ku...->k...", weights, changes))
        self.inputs.update(zip(receivers, values, strict=True))
        values += [values[0]] * (self.copies - len(values))
        return torch.stack(values, 1).flatten(0, 2)

    def _keep_members(self, value: Tensor, nodes: list[StreamNode], axis: int) -> Tensor:
        """Copy c keeps only node c's heads or neurons (``axis`` of the unsplit value)."""
        mask = torch.zeros(self.copies, value.shape[axis], dtype=value.dtype, device=value.device)
        for copy, node in enumerate(nodes):
            mask[copy, list(node.group.indices)] = 1
        shape = [1, self.copies, 1] + [1] * (value.ndim - 1)
        shape[axis + 2 if axis >= 0 else axis] = value.shape[axis]
        return (self._split(value) * mask.view(shape)).flatten(0, 2)

    def _keep_outputs(self, value: Tensor, nodes: list[StreamNode]) -> None:
        split = self._split(value)
        for copy, node in enumerate(nodes):
            self.outputs[node.id] = split[:, copy]

    def hook_resid_pre(self, block: int, out: Tensor) -> Tensor:
        if block == 0:
            values = self._split(out)[:, 0] if self.input_values is None else self.input_values
            self.outputs[INPUT] = values
        nodes = self.graph._in_block(block, "attn")
        return self._receive([f"{n.id}.{r}" for r in ROLES for n in nodes], f"attn{block}")

    def _from_own_copy(self, value: Tensor, block: int, role: int) -> Tensor:
        """Every copy's queries (keys, values) of each head: those computed in the copy that
        holds that head's query (key, value) input, so that each head reads its own inputs."""
        nodes = self.graph._in_block(block, "attn")
        split = self._split(value)
        source = [0] * value.shape[2]
        for number, node in enumerate(nodes):
            for head in node.group.indices:
                source[head] = role * len(nodes) + number
        heads = torch.arange(len(source), device=value.device)
        # one gather (its gradient one scatter) rather than a slice per head
        own = split[:, torch.tensor(source, device=value.device), :, :, heads]  # (H, K, N, T, d)
        return own.permute(1, 2, 3, 0, 4)[:, None].expand_as(split).flatten(0, 2)

    def attn_hook_q(self, block: int, out: Tensor) -> Tensor:
        return self._from_own_copy(out, block, 0)

    def attn_hook_k(self, block: int, out: Tensor) -> Tensor:
        return self._from_own_copy(out, block, 1)

    def attn_hook_v(self, block: int, out: Tensor) -> Tensor:
        return self._from_own_copy(out, block, 2)

    def attn_hook_z(self, block: int, out: Tensor) -> Tensor:
        return self._keep_members(out, self.graph._in_block(block, "attn"), 2)

    def hook_attn_out(self, block: int, out: Tensor) -> None:
        self._keep_outputs(out, self.graph._in_block(block, "attn"))

    def hook_resid_mid(self, block: int, out: Tensor) -> Tensor:
        nodes = self.graph._in_block(block, "mlp")
        return self._receive([n.id for n in nodes], f"mlp{block}")

    def mlp_hook_post(self, block: int, out: Tensor) -> Tensor:
        return self._keep_members(out, self.graph._in_block(block, "mlp"), -1)

    def hook_mlp_out(self, block: int, out: Tensor) -> None:
        self._keep_outputs(out, self.graph._in_block(block, "mlp"))

    def hook_resid_post(self, block: int, out: Tensor) -> Tensor | None:
        if block != len(self.graph.model.blocks) - 1:
            return None
        return self._receive(["target"], "target")


def _stream_model(model: nn.Module) -> HookedModel:
    """``model`` hooked, refused by name where its blocks have no residual stream of
    their own (bare attention modules) or normalise the stream itself (post-norm)."""
    wrapped = hooked(model)
    if not isinstance(wrapped, HookedModel):
        raise ParameterError(
            "model", "circuits through the stream run on hooked(model) of a known architecture"
        )
    if isinstance(wrapped.adapter, MultiheadAttentionAdapter):
        raise ParameterError(
            "model",
            "a circuit through the residual stream needs transformer blocks (attention and MLP "
            "adding to a stream); this model has only bare nn.MultiheadAttention modules",
        )
    blocks = wrapped.adapter.blocks(wrapped.model)
    post_norm = type(wrapped.adapter).__name__ == "BertAdapter" or (
        isinstance(wrapped.adapter, TorchEncoderAdapter) and not all(b.norm_first for b in blocks)
    )
    if post_norm:
        raise ParameterError(
            "model",
            "a post-norm transformer (BERT, nn.TransformerEncoderLayer with norm_first=False) "
            "normalises the stream after each sublayer, so the stream is not a sum of its "
            "components' outputs and has no edges to score; pre-norm models only",
        )
    return wrapped


def _nodes(
    model: HookedModel, sizes: dict[str, int], groups: list[NeuronGroup]
) -> list[StreamNode]:
    """The embedding, then per block its head nodes and its MLP nodes, in forward order."""
    given: dict[tuple[int, str], list[NeuronGroup]] = {}
    for position, group in enumerate(groups):
        block, kind = _place(group, len(model.blocks), f"groups[{position}]")
        given.setdefault((block, kind), []).append(group)
    width = sizes["d_model"]
    nodes = [StreamNode(INPUT, NeuronGroup("blocks.0.hook_resid_pre", range(width), dim=-1,
                                           name=INPUT), -1, "input")]  # fmt: skip
    for block in range(len(model.blocks)):
        for kind, layer, prefix, axis in (
            ("attn", f"blocks.{block}.attn.hook_z", f"a{block}", 2),
            ("mlp", f"blocks.{block}.mlp.hook_post", f"m{block}", -1),
        ):
            chosen = given.get((block, kind), [])
            units = sizes["heads"] if kind == "attn" else sizes["d_mlp"]
            nodes += _sublayer_nodes(chosen, layer, prefix, axis, units, block, kind)
    return nodes


def _sublayer_nodes(
    chosen: list[NeuronGroup], layer: str, prefix: str, axis: int, units: int, block: int, kind: str
) -> list[StreamNode]:
    covered: set[int] = set()
    nodes = []
    for number, group in enumerate(chosen):
        overlap = covered & set(group.indices)
        if overlap:
            raise ParameterError(
                "groups",
                f"groups of {layer} overlap (units {sorted(overlap)}): a unit's output would be "
                f"counted twice in the stream",
            )
        if max(group.indices) >= units:
            raise ParameterError(
                "groups", f"a group of {layer} selects unit {max(group.indices)}; it has {units}"
            )
        covered |= set(group.indices)
        name = group.name or f"{prefix}.g{number}"
        nodes.append(StreamNode(name, group.replace(dim=axis, name=name), block, kind))
    rest = [u for u in range(units) if u not in covered]
    if kind == "attn":
        for head in rest:
            name = f"{prefix}.h{head}"
            nodes.append(StreamNode(name, NeuronGroup(layer, [head], dim=axis, name=name),
                                    block, kind))  # fmt: skip
    elif rest:
        name = prefix if not chosen else f"{prefix}.rest"
        nodes.append(StreamNode(name, NeuronGroup(layer, rest, dim=axis, name=name), block, kind))
    return nodes


def _place(group: NeuronGroup, blocks: int, parameter: str) -> tuple[int, str]:
    """The block and sublayer of a group given as a node."""
    parts = str(group.layer).split(".")
    kind = {"attn.hook_z": "attn", "mlp.hook_post": "mlp"}.get(".".join(parts[2:]))
    if parts[0] != "blocks" or kind is None or not parts[1].isdigit() or int(parts[1]) >= blocks:
        raise ParameterError(
            parameter,
            f"{parameter} is a group of {group.layer!r}; a node of a circuit through the stream "
            f"is a group of heads (blocks.L.attn.hook_z) or of MLP neurons "
            f"(blocks.L.mlp.hook_post), L < {blocks}",
        )
    return int(parts[1]), kind


def _unit_counts(model: HookedModel, probe: Tensor) -> dict[str, int]:
    """The width of the stream, the heads per layer and the MLP neurons: the shapes of the
    first block's hook points when the model reads one example of ``probe``."""
    shapes: dict[str, torch.Size] = {}
    points = {"hook_resid_pre": "d_model", "attn.hook_z": "heads", "mlp.hook_post": "d_mlp"}
    with ExitStack() as stack:
        for point, key in points.items():
            module = model.blocks[0].get_submodule(point)
            handle = module.register_forward_hook(
                on_this_thread(lambda _m, _a, out, key=key: shapes.update({key: out.shape}))
            )
            stack.callback(handle.remove)
        with torch.no_grad():
            model(probe[:1])
    missing = [key for key in points.values() if key not in shapes]
    if missing:
        raise ParameterError(
            "model",
            f"the model's blocks did not run an attention and an MLP ({', '.join(missing)} "
            f"never read); a circuit through the stream needs both",
        )
    return {"d_model": shapes["d_model"][-1], "heads": shapes["heads"][2],
            "d_mlp": shapes["d_mlp"][-1]}  # fmt: skip
