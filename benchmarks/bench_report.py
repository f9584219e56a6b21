"""The report against its circuit, on a real model: resnet18 on 40 photos at 128 px.

The setting of issue 23: resnet18 (``weights=None``, seeded), a folder of 40
photos (crops and flips of scikit-learn's two sample images) read at 128 px,
circuit layers ``layer3.1 layer4.1``, the class the model predicts most, and
the command's defaults (tau 8, k 30, 24 steps, 6 thumbnails, 30 fidelity
draws, 5 points per curve, 128 rendering steps).

It prints the circuit's time, the report's time and its ratio to the circuit
(the target: at most 0.5), the time of each part of the report (shares,
renderings, exemplar pictures, fidelity), and checks the report's numbers
against the plain implementation (one full forward pass per masked run, one
per edge-fidelity subset: the package before the report's fidelity ran on
cached activations), whose fidelity time it prints beside. Run it on a quiet
machine:

    python -m benchmarks.bench_report
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.datasets import load_sample_images

from captum_groups import CircuitSettings, build_circuit
from captum_groups._model.capture import layer_outputs
from captum_groups._model.subnetwork import subnetwork
from captum_groups.circuits import route_classes
from captum_groups.cli.inputs import Source
from captum_groups.discovery.core import core_scores
from captum_groups.report import ReportSettings, assemble
from captum_groups.report.assemble import _curve_circuits, evaluation_images
from tests._helpers import plain_edge_changes, plain_masking_fidelity

CLI_CIRCUIT = CircuitSettings(tau=8, k=30, thumbnails=6, random_state=0)
"""``captum-groups circuit``'s defaults."""


def photo_folder(root: Path, count: int = 40) -> Path:
    """``count`` photos: random crops of scikit-learn's sample images, half of them flipped."""
    rng = np.random.default_rng(0)
    folder = root / "photos" / "all"
    folder.mkdir(parents=True)
    pictures = load_sample_images().images
    for index in range(count):
        picture = pictures[index % len(pictures)]
        side = int(rng.integers(160, 400))
        top = int(rng.integers(0, picture.shape[0] - side))
        left = int(rng.integers(0, picture.shape[1] - side))
        crop = picture[top : top + side, left : left + side]
        if index % 2:
            crop = crop[:, ::-1]
        Image.fromarray(np.ascontiguousarray(crop)).save(folder / f"{index}.png")
    return folder.parent


def plain_numbers(model, circuit, inputs, report: ReportSettings) -> dict:
    """The report's fidelity numbers the plain way, for every curve point and the edges."""
    fidelity = {}
    for mode in ("mask", "retain"):
        for pruned in _curve_circuits(circuit, report.n_points):
            neurons = {
                layer: {i for n in pruned.node_ids(layer) for i in pruned.nodes[n].indices}
                for layer in pruned.layers
            }
            for scope, _, own, drawn in plain_masking_fidelity(
                model, pruned, inputs, mode, True, report.n_draws, report.random_state
            ):
                count = (
                    sum(map(len, neurons.values()))
                    if scope == "all layers"
                    else len(neurons[scope])
                )
                fidelity[(mode, scope, count)] = (own, drawn)
    activations = layer_outputs(model, inputs, model.get_submodule(circuit.layers[-1]))
    between = subnetwork(model, circuit.layers[-1], None)
    _, signed = core_scores(
        between, [circuit.target], activations, torch.zeros(len(activations), dtype=torch.long),
        report.n_steps,
    )  # fmt: skip
    sizes = [s for s in (1, 2, 5, 10) if s <= activations.shape[1]]
    rng = np.random.default_rng(report.random_state)
    subsets = [rng.choice(activations.shape[1], s, replace=False) for s in sizes
               for _ in range(report.n_draws)]  # fmt: skip
    importance = [float(signed[0][subset].sum()) for subset in subsets]
    changes = plain_edge_changes(between, circuit.target, activations, subsets)
    return {"fidelity": fidelity, "pearson": float(np.corrcoef(importance, changes)[0, 1])}


def main() -> None:
    print(f"load before: {os.getloadavg()}; torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as root:
        source = Source(model="torchvision:resnet18", data=str(photo_folder(Path(root))),
                        image_size=128)  # fmt: skip
        torch.manual_seed(0)
        model, data = source.load_model(), source.load_data()
        target = route_classes(model, data, progress=False).counts().most_common(1)[0][0]
        layers = ["layer3.1", "layer4.1"]
        started = time.perf_counter()
        circuit = build_circuit(model, layers, target, data, settings=CLI_CIRCUIT, progress=False)
        circuit_seconds = time.perf_counter() - started
        report = ReportSettings().for_circuit(circuit)
        started = time.perf_counter()
        content = assemble(model, circuit, data, report, progress=False)
        report_seconds = time.perf_counter() - started
        images, groups = circuit.params["images"], len(circuit.nodes)
        print(f"target class {target} ({images} images), {groups} groups")
        print(f"circuit {circuit_seconds:.1f} s, report {report_seconds:.1f} s: "
              f"ratio {report_seconds / circuit_seconds:.2f} (target: at most 0.5)")  # fmt: skip
        for part, seconds in content.timing.items():
            print(f"  {part:11s} {seconds:6.1f} s")
        inputs = evaluation_images(model, circuit, data, report.max_images, report.batch_size)
        started = time.perf_counter()
        plain = plain_numbers(model, circuit, inputs, report)
        print(
            f"the plain implementation's fidelity and edges: {time.perf_counter() - started:.1f} s"
        )
        check(content, plain)
    print(f"load after: {os.getloadavg()}")


def check(content, plain: dict) -> None:
    """Every point of the report's fidelity curves, and its edge correlation, equal the plain
    implementation's numbers."""
    shown = {
        (mode, scope, result.n_neurons): (result.circuit, list(result.random))
        for mode, by_scope in content.fidelity.curves.items()
        for scope, points in by_scope.items()
        for result in points
    }
    same = shown == plain["fidelity"]
    print(f"all {len(shown)} fidelity points identical to the plain implementation: {same}")
    pearson = content.fidelity.edge.pearson
    print(f"edge correlation {pearson:.6f}, plain {plain['pearson']:.6f}: "
          f"{'identical' if pearson == plain['pearson'] else 'DIFFERENT'}")  # fmt: skip


if __name__ == "__main__":
    main()
