"""Which quadrature finds the same core neurons as NeurFlow's 50 Gauss-Legendre steps?

For each setting, ``build_circuit`` runs once with NeurFlow's integration (50
Gauss-Legendre steps) and once per candidate quadrature (Captum's methods
and step counts), everything else equal. For every circuit layer it counts
the upper units (the target, or a critical neuron of the layer above) present
in both circuits whose core neurons are the same set, and in the same order;
a circuit is *identical* when every layer's units and core neurons are.
Layers are compared top-down, so a difference high up changes the units
below it.

Settings:

- ``resnet50``: the reference benchmark's (resnet50 weights=None, 8 random
  64 px images, the class predicted most often, layers layer4.0-4.2, tau=16,
  k=50, NeurFlow crops);
- ``digits``: the trained digits CNN, each of the ten classes, layers
  relu1-relu3, tau=6, k=50, NeurFlow crops, all 1,797 images;
- ``digits-wide``: the same with layers relu2, relu3 and relu4 (after fc1)
  and tau=10 (a check of the choice made on the first two).

Run: python -m benchmarks.study_quadrature [--settings digits resnet50]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
import torchvision

from captum_groups import build_circuit

CANDIDATES = [
    ("gausslegendre", 8),
    ("gausslegendre", 16),
    ("gausslegendre", 24),
    ("gausslegendre", 32),
    ("riemann_middle", 16),
    ("riemann_middle", 32),
    ("riemann_trapezoid", 16),
    ("riemann_trapezoid", 32),
]
REFERENCE = ("gausslegendre", 50)


def _settings(name: str) -> list[tuple[str, torch.nn.Module, list[str], int, torch.Tensor, dict]]:
    """(label, model, layers, target, images, options) for each circuit of a setting."""
    if name == "resnet50":
        torch.manual_seed(0)
        model = torchvision.models.resnet50(weights=None).eval()
        data = torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            predicted = model(data).argmax(1)
        target = int(torch.bincount(predicted, minlength=1000).argmax())
        layers = ["layer4.0", "layer4.1", "layer4.2"]
        return [(f"class {target}", model, layers, target, data, {"tau": 16, "k": 50})]
    from captum_groups.datasets import digits_cnn, load_digits

    model, images = digits_cnn(), load_digits("all")[0]
    layers, tau = (
        (["relu1", "relu2", "relu3"], 6) if name == "digits" else (["relu2", "relu3", "relu4"], 10)
    )
    return [(f"digit {d}", model, layers, d, images, {"tau": tau, "k": 50}) for d in range(10)]


def _agreement(reference, candidate) -> tuple[list[tuple[int, int, int]], bool]:
    """Per layer (top-down): (units compared, same sets, same order); and whether identical."""
    rows, identical = [], True
    for layer in reversed(reference.layers):
        ours, theirs = candidate.core_neurons[layer], reference.core_neurons[layer]
        shared = set(ours) & set(theirs)
        same_set = sum(set(ours[u]) == set(theirs[u]) for u in shared)
        same_order = sum(ours[u] == theirs[u] for u in shared)
        rows.append((len(theirs), same_set, same_order))
        identical &= set(ours) == set(theirs) and same_set == len(theirs)
    return rows, identical


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--settings",
        nargs="+",
        default=["digits", "resnet50"],
        choices=["digits", "digits-wide", "resnet50"],
    )
    parser.add_argument(
        "--candidates",
        nargs="+",
        metavar="METHOD:STEPS",
        default=[f"{m}:{n}" for m, n in CANDIDATES],
        help="quadratures to compare with 50 Gauss-Legendre steps",
    )
    args = parser.parse_args()
    candidates = [(c.split(":")[0], int(c.split(":")[1])) for c in args.candidates]
    warnings.filterwarnings("ignore")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    print(
        "| setting | quadrature | identical circuits | same core sets per layer (top-down) "
        "| same order | time vs 50 GL |"
    )
    print("|---|---|---|---|---|---|")
    for setting in args.settings:
        circuits = _settings(setting)
        references, reference_seconds = [], 0.0
        for _, model, layers, target, images, options in circuits:
            start = time.perf_counter()
            references.append(
                build_circuit(
                    model,
                    layers,
                    target,
                    images,
                    n_steps=REFERENCE[1],
                    method=REFERENCE[0],
                    progress=False,
                    **options,
                )
            )
            reference_seconds += time.perf_counter() - start
        for method, n_steps in candidates:
            seconds, identical, totals = 0.0, 0, None
            for (_, model, layers, target, images, options), reference in zip(
                circuits, references, strict=True
            ):
                start = time.perf_counter()
                candidate = build_circuit(
                    model,
                    layers,
                    target,
                    images,
                    n_steps=n_steps,
                    method=method,
                    progress=False,
                    **options,
                )
                seconds += time.perf_counter() - start
                rows, same = _agreement(reference, candidate)
                identical += same
                totals = (
                    rows
                    if totals is None
                    else [
                        tuple(a + b for a, b in zip(t, r, strict=True))
                        for t, r in zip(totals, rows, strict=True)
                    ]
                )
            assert totals is not None
            sets = ", ".join(f"{s}/{n}" for n, s, _ in totals)
            orders = ", ".join(f"{o}/{n}" for n, _, o in totals)
            print(
                f"| {setting} | {method} {n_steps} | {identical}/{len(circuits)} | {sets} | "
                f"{orders} | {seconds / reference_seconds:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
