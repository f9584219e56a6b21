"""The atlas's files and index: ``atlas.json`` (the numbers) and ``atlas.html`` (a page to look at).

The page is self-contained, like the report: a table of the classes (their
images, circuit size, fidelity, a thumbnail and links to each class's files),
the groups classes share, the classes that failed and why, and how the atlas
was made.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import networkx as nx

from ..circuits import Circuit, CircuitSettings
from ..files import write_atomic
from .html import environment
from .settings import ReportSettings
from .stream_report import drawn_circuit

__all__ = ["OVERLAP", "class_folder", "shared_groups", "write_index"]

FORMAT = "captum-groups atlas"
"""The ``format`` field of ``atlas.json``."""


OVERLAP = 0.5
"""Least Jaccard index of two groups' neuron sets (same layer) for them to count as shared."""


def class_folder(out: str | Path, target: int) -> Path:
    """Where a class's files go."""
    return Path(out) / "classes" / str(target)


def shared_groups(circuits: Mapping[int, Circuit], overlap: float = OVERLAP) -> list[dict]:
    """Groups of different classes' circuits whose neurons overlap strongly.

    Two groups of one layer are linked when the Jaccard index of their
    neuron sets is at least ``overlap``; every connected set of linked
    groups that spans two or more classes is one shared group.

    Returns
    -------
    list of dict
        ``{"layer", "classes", "members": [[class, node], ...], "neurons"
        (common to all members), "most" (in at least half of the members: a
        chain of linked groups may have none in common), "jaccard" (the least
        linked pair's)}``, most classes first.

    Examples
    --------
    >>> from captum_groups import NeuronGroup
    >>> def one(target, neurons):
    ...     return Circuit(target, ["l"], {"g": NeuronGroup("l", neurons)}, {("g", "target"): 1.0})
    >>> found = shared_groups({1: one(1, [0, 1, 2]), 2: one(2, [1, 2, 3]), 3: one(3, [7])})
    >>> found == [{"layer": "l", "classes": [1, 2], "members": [[1, "g"], [2, "g"]],
    ...            "neurons": [1, 2], "most": [0, 1, 2, 3], "jaccard": 0.5}]
    True
    """
    graph = nx.Graph()
    found = []
    for target, circuit in circuits.items():
        for node, group in circuit.nodes.items():
            graph.add_node((target, node), layer=group.layer, neurons=frozenset(group.indices))
    members = list(graph.nodes(data=True))
    for i, (a, first) in enumerate(members):
        for b, second in members[i + 1 :]:
            if a[0] == b[0] or first["layer"] != second["layer"]:
                continue
            union = first["neurons"] | second["neurons"]
            jaccard = len(first["neurons"] & second["neurons"]) / len(union)
            if jaccard >= overlap:
                graph.add_edge(a, b, jaccard=jaccard)
    for component in nx.connected_components(graph):
        classes = sorted({target for target, _ in component})
        if len(classes) < 2:
            continue
        nodes = sorted(component)
        sets = [graph.nodes[n]["neurons"] for n in nodes]
        common = frozenset.intersection(*sets)
        most = sorted(
            i for i in frozenset.union(*sets) if 2 * sum(i in s for s in sets) >= len(sets)
        )
        found.append(
            {
                "layer": graph.nodes[nodes[0]]["layer"],
                "classes": classes,
                "members": [[target, node] for target, node in nodes],
                "neurons": sorted(common),
                "most": most,
                "jaccard": round(
                    min(w for *_, w in graph.subgraph(nodes).edges(data="jaccard")), 4
                ),
            }
        )
    return sorted(found, key=lambda item: (-len(item["classes"]), item["layer"], item["classes"]))


def _circuits(out: Path, rows: Sequence[dict]) -> dict[int, Circuit]:
    """Each class's circuit; through the stream, its faithful part (every such circuit holds
    every head and MLP: what classes share is in the edges that keep 80%)."""
    found = {}
    for row in rows:
        text = (class_folder(out, row["target"]) / "circuit.json").read_text(encoding="utf-8")
        circuit = Circuit.from_json(text)
        if "faithful" in row:
            circuit = drawn_circuit(circuit, row["faithful"]["edges_kept"])
        found[row["target"]] = circuit
    return found


def write_index(
    out: Path,
    rows: Sequence[dict],
    failures: Sequence[dict],
    settings: CircuitSettings,
    report: ReportSettings,
    runner: Any,
    started: float,
) -> dict[str, Any]:
    """Write ``atlas.json`` and ``atlas.html`` (on the main process); return the shared
    groups, the two paths and the job's time."""
    rows = sorted(rows, key=lambda row: row["target"])
    shared = shared_groups(_circuits(out, rows))
    seconds = time.perf_counter() - started
    html, index = out / "atlas.html", out / "atlas.json"
    if runner.is_main:
        record = {
            "format": FORMAT,
            "version": 1,
            "settings": settings.to_dict(),
            "report": report.to_dict(),
            "classes": [
                {k: v for k, v in row.items() if k not in ("thumbnail", "provenance")}
                for row in rows
            ],
            "failures": sorted(failures, key=lambda f: f["target"]),
            "shared_groups": shared,
            "backend": runner.name,
            "workers": runner.workers,
            "seconds": seconds,
        }
        write_atomic(index, json.dumps(record, indent=1))
        page = (
            environment()
            .get_template("atlas.html.j2")
            .render(
                record=record,
                rows=rows,
                created=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            )
        )
        write_atomic(html, page)
    return {"shared": shared, "html": html, "json": index, "seconds": seconds}
