"""build_circuit against the official NeurFlow code, side by side in one process.

The setting of the circuit issue: torchvision ``resnet50(weights=None)`` after
``torch.manual_seed(0)``, N random 64x64 images (seed 0), the class the model
predicts most often as the target, the images predicted as it, crops at
scales 1, 1/2, 1/4, k=50 exemplars, 50 integration steps, fixed tau, layers
fc -> layer4.2 -> layer4.1 -> layer4.0. The reference (github tue147/neurflow,
kept at ``../shared/bench/neurflow_ref``; make its runnable copy with that
folder's ``setup.sh``) is driven as its ``run.py`` drives it: ``Framework.fit``
per layer on ``split_model`` / ``get_sub_model`` pieces. Ours is the public
``build_circuit``; its per-layer times come from the ``captum_groups`` logger
and its per-target core neurons from ``Circuit.core_neurons``.

Printed: per layer, both times and their ratio, and whether every target's
core neurons agree (as a set, and in order); the totals. Ours is timed with
its default quadrature unless ``--steps`` / ``--method`` are given.

Run (about 5 min at tau=16, 8 images; 1 min at tau=4, 4 images):

    ../shared/bench/neurflow_ref/setup.sh
    python -m benchmarks.bench_neurflow_reference --tau 16 --images 8
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

import torch
import torchvision

from captum_groups import build_circuit
from captum_groups.circuits import TARGET

LAYERS = ["layer4.0", "layer4.1", "layer4.2"]
REFERENCE_LAYERS = ["fc", "layer4.2", "layer4.1", "layer4.0"]
SCALES = [1, 0.5, 0.25]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tau", type=int, default=16)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=None, help="ours: n_steps (default: ours)")
    parser.add_argument("--method", default=None, help="ours: quadrature (default: ours)")
    parser.add_argument(
        "--ref-dir", default=os.environ.get("NEURFLOW_REF", "/tmp/neurflow_ref"), type=Path
    )
    return parser.parse_args()


def run_reference(model, images, target, args) -> dict:
    """The official code as run.py drives it; per-layer seconds and per-target core neurons."""
    sys.path.insert(0, str(args.ref_dir))
    import NeurFlow  # noqa: PLC0415
    from utils import get_conditional_modules, get_sub_model, split_model  # noqa: PLC0415

    cores: dict[str, dict[int, list[int]]] = defaultdict(dict)
    state = {"layer": ""}
    store = NeurFlow.Framework._store_critical_neuron_info

    def capture(self, neuron, labels, acts, vectors, scores, top, indices_top, n):
        cores[state["layer"]][neuron.neuron_id] = list(indices_top)
        return store(self, neuron, labels, acts, vectors, scores, top, indices_top, n)

    NeurFlow.Framework._store_critical_neuron_info = capture
    try:
        conditional = get_conditional_modules("resnet50")
        start, end = 1, len(REFERENCE_LAYERS) - 1
        began = time.perf_counter()
        framework = NeurFlow.Framework(start, end, images, target, "cpu", granularities=SCALES)
        seconds = {"setup": time.perf_counter() - began}
        for layer in range(end, start - 1, -1):
            index = len(REFERENCE_LAYERS) - layer
            name = REFERENCE_LAYERS[index]
            state["layer"] = name
            t0 = time.perf_counter()
            net_a, _ = split_model(model, name, True, conditional)
            net_b = get_sub_model(model, name, REFERENCE_LAYERS[index - 1], True, conditional)
            framework.fit(
                layer,
                net_a,
                net_b,
                top_images_per_neuron=args.k,
                max_top_neurons=args.tau,
                acceptable_error_range=-1,
                batch_size_ig=8,
                batch_size=128,
            )
            seconds[name] = time.perf_counter() - t0
        seconds["total"] = time.perf_counter() - began
    finally:
        NeurFlow.Framework._store_critical_neuron_info = store
    return {"seconds": seconds, "cores": cores}


class _LayerTimes(logging.Handler):
    """Collects build_circuit's per-layer times from the captum_groups logger."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seconds: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "seconds"):
            self.seconds[record.layer] = record.seconds


def run_ours(model, images, target, args) -> dict:
    handler = _LayerTimes()
    log = logging.getLogger("captum_groups")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    options = {}
    if args.steps is not None:
        options["n_steps"] = args.steps
    if args.method is not None:
        options["method"] = args.method
    try:
        began = time.perf_counter()
        circuit = build_circuit(
            model,
            LAYERS,
            target,
            images,
            tau=args.tau,
            k=args.k,
            scales=SCALES,
            random_state=0,
            progress=False,
            **options,
        )
        total = time.perf_counter() - began
    finally:
        log.removeHandler(handler)
    seconds = dict(handler.seconds, total=total)
    return {"seconds": seconds, "circuit": circuit}


def compare_cores(reference: dict, circuit, target: int) -> dict[str, dict]:
    """Per layer: targets, identical core sets, identical order, critical-set Jaccard."""
    rows = {}
    for layer in reversed(LAYERS):
        ours = {
            (target if unit == TARGET else int(unit)): ranked
            for unit, ranked in circuit.core_neurons[layer].items()
        }
        theirs = reference["cores"][layer]
        shared = sorted(set(ours) & set(theirs))
        ours_union = set().union(*map(set, ours.values()))
        theirs_union = set().union(*map(set, theirs.values()))
        rows[layer] = {
            "targets": (len(theirs), len(ours)),
            "same sets": sum(set(ours[u]) == set(theirs[u]) for u in shared),
            "same order": sum(list(ours[u]) == list(theirs[u]) for u in shared),
            "critical jaccard": len(ours_union & theirs_union) / len(ours_union | theirs_union),
        }
    return rows


def main() -> None:
    args = parse_args()
    warnings.filterwarnings("ignore")
    if not (args.ref_dir / "NeurFlow.py").exists():
        print(
            f"SKIPPED: the NeurFlow reference is not at {args.ref_dir}; run "
            f"../shared/bench/neurflow_ref/setup.sh (or pass --ref-dir / set NEURFLOW_REF)."
        )
        return
    os.environ.setdefault("TQDM_DISABLE", "1")
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    data = torch.rand(
        args.images, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        predicted = model(data).argmax(1)
    target = int(torch.bincount(predicted, minlength=1000).argmax())
    images = data[predicted == target]
    with torch.no_grad():  # warm-up, untimed
        model(torch.cat([images] * 8))
    reference = run_reference(model, images, target, args)
    ours = run_ours(model, images, target, args)
    rows = compare_cores(reference, ours["circuit"], target)
    params = ours["circuit"].params
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    print(
        f"resnet50 (weights=None), {len(images)}/{args.images} random {args.size}px images of "
        f"class {target}, tau={args.tau}, k={args.k}; reference: 50 Gauss-Legendre steps; "
        f"ours: {params['n_steps']} steps, {params['method']}"
    )
    header = (
        "| layer | targets | reference (s) | ours (s) | speed-up | same core sets | same order |"
    )
    print(header)
    print("|" + "---|" * 7)
    for layer, row in rows.items():
        ref_s, our_s = reference["seconds"][layer], ours["seconds"][layer]
        n = row["targets"][0]
        print(
            f"| {layer} | {n} | {ref_s:.1f} | {our_s:.1f} | {ref_s / our_s:.1f}x | "
            f"{row['same sets']}/{n} | {row['same order']}/{n} |"
        )
    ref_total, our_total = reference["seconds"]["total"], ours["seconds"]["total"]
    print(
        f"| total (with set-up: reference {reference['seconds']['setup']:.1f} s, ours "
        f"{ours['seconds'].get('summaries', 0.0):.1f} s) | | {ref_total:.1f} | {our_total:.1f} | "
        f"{ref_total / our_total:.1f}x | | |"
    )
    jaccards = [round(row["critical jaccard"], 3) for row in rows.values()]
    identical = all(
        row["same sets"] == row["targets"][0] == row["targets"][1] for row in rows.values()
    )
    print(f"critical-set Jaccard per layer {jaccards}; every core set identical: {identical}")
    ratios = [round(reference["seconds"][layer] / ours["seconds"][layer], 1) for layer in rows]
    print(f"speed-up per layer: {ratios}, total {ref_total / our_total:.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()
