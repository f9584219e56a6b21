"""Edge weights between the groups of two layers against the plain Captum way.

resnet18 (weights=None), 64x64 inputs, batch 8: 16 upper groups in ``layer3``
x 32 lower groups in ``layer2``. The plain Captum way is one
``LayerConductance(layer2)`` call per upper group, each with a callable
forward function that runs the whole model and returns the upper group's
value; its per-element conductances are then summed per lower group.
captum-groups: one ``LayerGroupInteraction`` call (one forward pass per
integration batch, stopped at layer3, and one layer3 -> layer2 backward pass
per upper group). Prints the speed ratio and the max abs difference.

Run: python -m benchmarks.bench_group_interaction [--device cuda] [--repeats 3]
"""

from __future__ import annotations

import argparse
import warnings

import torch
import torchvision
from captum.attr import LayerConductance

from benchmarks._measure import compare
from captum_groups import GroupSet
from captum_groups.attr import LayerGroupInteraction


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=32)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    device = torch.device(args.device)

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval().to(device)
    x = torch.randn(8, 3, 64, 64, device=device)
    upper = GroupSet.from_labels("layer3", torch.arange(256) % 16)
    lower = GroupSet.from_labels("layer2", torch.arange(128) % 32)

    def upper_value(group):
        def forward(inputs):
            captured = {}
            handle = model.layer3.register_forward_hook(lambda m, i, o: captured.update(o=o))
            try:
                model(inputs)
            finally:
                handle.remove()
            return group(captured["o"])

        return forward

    def captum_way() -> torch.Tensor:
        edges = []
        for group in upper:
            per_element = LayerConductance(upper_value(group), model.layer2).attribute(
                x, n_steps=args.steps
            )
            edges.append(
                torch.stack([per_element[:, list(g.indices)].sum((1, 2, 3)) for g in lower], 1)
            )
        return torch.stack(edges, 1)

    def grouped() -> torch.Tensor:
        interaction = LayerGroupInteraction(model, "layer2", "layer3")
        return interaction.attribute(x, upper, lower, n_steps=args.steps)

    run = compare(captum_way, grouped, args.repeats, device)
    reference, result = run["results"]["reference"], run["results"]["ours"]
    captum_best, ours_best = run["seconds"]["reference"], run["seconds"]["ours"]
    captum_peak, ours_peak = run["peak"]["reference"], run["peak"]["ours"]
    difference = (result - reference).abs().max().item()
    scale = reference.abs().max().item()
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(
        f"resnet18 64x64 batch 8, {len(upper)} upper groups (layer3) x {len(lower)} lower "
        f"groups (layer2), {args.steps} steps, best of {args.repeats}"
    )
    print(f"captum way    : {captum_best:8.3f} s   peak memory {captum_peak / 2**20:8.1f} MiB")
    print(f"captum-groups : {ours_best:8.3f} s   peak memory {ours_peak / 2**20:8.1f} MiB")
    print(f"speed ratio   : {captum_best / ours_best:.2f}x  (target >= 3x)")
    print(f"max abs diff  : {difference:.2e}  (largest edge {scale:.2e}; target <= 1e-4)")


if __name__ == "__main__":
    main()
