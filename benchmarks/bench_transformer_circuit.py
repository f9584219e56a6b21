"""A transformer's circuit by EAP-IG against exact patching of every edge.

The shipped tiny GPT (two blocks of four heads and an MLP; 110 edges through the
residual stream, each head reading its queries, keys and values on its own) on
induction prompts whose first occurrence of the repeated segment is replaced:
``build_stream_circuit`` (EAP-IG, five steps; one forward and backward pass per chunk
of runs) against exact patching (one patched run per edge, the measurement EAP-IG
approximates, batched 16 runs per pass as the package runs it), for both integration
paths: ``activations`` (the default: each node's output interpolated on its own, 5 runs
per node) and ``inputs`` (Hanna et al.'s EAP-IG-inputs: the embedding interpolated, 5
runs in all). Prints, per path, the time and peak-memory ratios (exact / EAP-IG) and the
Spearman correlation of the scores with exact patching.

Run: python -m benchmarks.bench_transformer_circuit [--device cuda] [--prompts 200]
"""

from __future__ import annotations

import argparse
import os
import warnings

import torch
from scipy.stats import spearmanr

from benchmarks._measure import compare
from captum_groups.circuits import Circuit, build_stream_circuit
from captum_groups.circuits.edge_scores import EAP_PATHS, exact_scores, metric_of
from captum_groups.circuits.stream import StreamGraph
from captum_groups.induction import induction_prompts, tiny_gpt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    device = torch.device(args.device)
    model = tiny_gpt().to(device)
    clean, corrupted, copyable = (t.to(device) for t in induction_prompts(args.prompts, 7))

    def reference() -> torch.Tensor:
        graph = StreamGraph(model, clean)
        metric = metric_of("next_token", clean, copyable)
        return exact_scores(graph, clean, graph.reference(corrupted), metric)

    edges = StreamGraph(model, clean).edges
    print(f"device {device}, load {os.getloadavg()[0]:.2f}, {args.prompts} prompts, "
          f"{len(edges)} edges, EAP-IG {args.steps} steps")  # fmt: skip
    for path in EAP_PATHS:

        def ours(path: str = path) -> Circuit:
            return build_stream_circuit(
                model, clean, "next_token", corrupted, positions=copyable,
                eap_steps=args.steps, eap_path=path, progress=False,
            )  # fmt: skip

        measured = compare(reference, ours, args.repeats, device)
        seconds, peak = measured["seconds"], measured["peak"]
        circuit = measured["results"]["ours"]
        scores = [circuit.edges[edge] for edge in edges]
        rho = spearmanr(scores, measured["results"]["reference"].cpu()).statistic
        print(f"path {path}: exact patching {seconds['reference']:.3f} s, peak "
              f"{peak['reference'] / 2**20:.1f} MiB; EAP-IG {seconds['ours']:.3f} s, peak "
              f"{peak['ours'] / 2**20:.1f} MiB")  # fmt: skip
        print(f"  time ratio (exact / EAP-IG): {seconds['reference'] / seconds['ours']:.2f}x; "
              f"peak-memory ratio: {peak['reference'] / max(peak['ours'], 1):.2f}x; "
              f"Spearman of the scores: {rho:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
