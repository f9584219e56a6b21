"""Evidence for BEAN on the digits CNN: with and without the regularizer, several seeds.

For each seed the digits CNN is trained on the full training split without BEAN
and with BEAN (first order, on relu3 and relu4; Gao et al. 2021). The script
reports test accuracy, the sparsity of the regularized layers' outgoing weights
(fraction below 1% of the largest), and, for the assemblies that
find_assemblies finds in relu3, the modularity of the co-activation graph and
their mean class selectivity. Then it compares 10-shot training (10 images per
class) without and with BEAN (second order, as in the paper's few-shot
setting). Results are printed whichever way they come out.

Run: python -m benchmarks.bean_digits [--seeds 3] [--alpha 1.0] [--few-shot-alpha 10.0]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch

from captum_groups.datasets import load_digits, train_digits_cnn
from captum_groups.regularize import BEANRegularizer, find_assemblies

LAYERS = ["relu3", "relu4"]


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def sparsity(model) -> float:
    weights = torch.cat([model.fc1.weight.flatten(), model.fc2.weight.flatten()]).abs()
    return float((weights < 0.01 * weights.max()).float().mean())


def few_shot_split(seed: int, shots: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_digits("train")
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.cat(
        [
            (y == c).nonzero()[:, 0][
                torch.randperm(int((y == c).sum()), generator=generator)[:shots]
            ]
            for c in range(10)
        ]
    )
    return x[chosen], y[chosen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--few-shot-alpha", type=float, default=10.0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    x_test, y_test = load_digits("test")
    rows = {"without": [], "with BEAN": []}
    for seed in range(args.seeds):
        for name, alpha in [("without", None), ("with BEAN", args.alpha)]:
            regularizer = (
                None if alpha is None else lambda m, a=alpha: BEANRegularizer(m, LAYERS, alpha=a)
            )
            model = train_digits_cnn(random_state=seed, regularizer=regularizer)
            found = find_assemblies(model, "relu3", (x_test, y_test))
            rows[name].append(
                [
                    accuracy(model, x_test, y_test),
                    sparsity(model),
                    found.modularity,
                    float(found.selectivity.mean()),
                    len(found.groups),
                ]
            )
    print(f"digits CNN, {args.seeds} seeds, BEAN first order alpha={args.alpha} on {LAYERS}")
    header = ["test acc", "sparsity", "modularity", "selectivity", "assemblies"]
    print(f"{'':10s} " + " ".join(f"{h:>12s}" for h in header))
    for name, values in rows.items():
        mean, std = np.mean(values, 0), np.std(values, 0)
        print(
            f"{name:10s} {mean[0]:6.4f}±{std[0]:.3f} {mean[1]:6.3f}±{std[1]:.2f} "
            f"{mean[2]:8.3f}±{std[2]:.2f} {mean[3]:9.3f}±{std[3]:.2f} {mean[4]:8.1f}"
        )
    shots = {"without": [], "with BEAN": []}
    for seed in range(args.seeds):
        x_few, y_few = few_shot_split(seed)
        for name, alpha in [("without", None), ("with BEAN", args.few_shot_alpha)]:
            regularizer = (
                None
                if alpha is None
                else lambda m, a=alpha: BEANRegularizer(m, LAYERS, alpha=a, order=2)
            )
            model = train_digits_cnn(
                epochs=150,
                random_state=seed,
                images=x_few,
                labels=y_few,
                batch_size=20,
                regularizer=regularizer,
            )
            shots[name].append(accuracy(model, x_test, y_test))
    print(f"10-shot (10 training images per class), BEAN second order alpha={args.few_shot_alpha}")
    for name, values in shots.items():
        print(f"{name:10s} test accuracy {np.mean(values):.4f} ± {np.std(values):.3f}  ({values})")


if __name__ == "__main__":
    main()
