"""Peak memory of the BEAN loss: the expanded square against the N x N x B tensor.

A layer of 2048 neurons at batch 256 with a next layer of 512 units: the loss
and its backward pass, as captum-groups computes it (squares and a Gram matrix,
O(N^2 + N B)) and as the reference code does (an explicit N x N x B tensor of
squared differences). Both run in this process; the values must agree.

Run: python -m benchmarks.bean_memory [--neurons 2048] [--batch 256]
"""

from __future__ import annotations

import argparse

import torch

from benchmarks._measure import measure
from captum_groups.regularize import bean_loss


def reference_loss(h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    w_hat = torch.abs(torch.tanh(weight.t()))
    shared = w_hat @ w_hat.t()
    return torch.mean(shared * ((h[:, :, None] - h[:, None, :]) ** 2).mean(0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--neurons", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    torch.manual_seed(0)
    h = torch.randn(args.batch, args.neurons, requires_grad=True)
    weight = torch.randn(512, args.neurons, requires_grad=True)
    device = torch.device("cpu")

    def run(loss_fn):
        def step():
            loss = loss_fn(h, weight)
            loss.backward()
            return loss.item()

        return step

    ours, ours_seconds, ours_peak = measure(run(bean_loss), device)
    reference, reference_seconds, reference_peak = measure(run(reference_loss), device)
    print(f"N={args.neurons} neurons, batch B={args.batch}, next layer 512, loss + backward")
    print(
        f"captum-groups (O(N^2 + NB))  : peak {ours_peak / 2**20:9.1f} MiB, {ours_seconds:6.2f} s"
    )
    print(
        f"reference (N x N x B tensor) : peak {reference_peak / 2**20:9.1f} MiB, "
        f"{reference_seconds:6.2f} s"
    )
    print(f"memory ratio                 : {reference_peak / max(ours_peak, 1):.0f}x less")
    print(f"relative difference of loss  : {abs(ours - reference) / abs(reference):.2e}")


if __name__ == "__main__":
    main()
