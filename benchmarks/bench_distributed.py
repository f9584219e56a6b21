"""The atlas on 1 process x 1 thread, 1 x 2 threads, and 2 processes x 1 thread (torchrun, Ray).

Two workloads, each run by ``captum-groups atlas`` in fresh processes:

- the digits CNN's ten classes (layers relu1-relu3, NeurFlow's tau 16, k 50
  and 50 integration steps);
- resnet18 (``weights=None``, seeded) on 32 photos at 64 px (crops and flips
  of scikit-learn's two sample images), four classes, each built from every
  image (``--no-predicted-only``: a randomly initialised resnet predicts one
  class for nearly everything).

For each run it prints the job's time (from the workers being ready, with
their models and data, to the index written: ``atlas.json``'s ``seconds``),
the speed-up over 1 process x 1 thread beside the ideal 2x, the whole command's
wall time (process start, imports and Ray's start included), the peak
resident memory of each worker, and whether the circuits are byte-identical
to the 1 x 1 run's (they must be, at one thread per process). Run it on a quiet
machine (look at ``uptime`` before and after):

    python -m benchmarks.bench_distributed [--only digits|resnet18]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_sample_images

PYTHON = sys.executable
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))

WORKLOADS = {
    "digits": ["--layers", "relu1", "relu2", "relu3", "--tau", "16", "--k", "50", "--n-steps",
               "50", "--n-draws", "10"],
    "resnet18": ["--model", "torchvision:resnet18", "--layers", "layer3.1", "layer4.1",
                 "--targets", "0", "1", "2", "3", "--no-predicted-only", "--tau", "8", "--k",
                 "30", "--n-steps", "24", "--n-draws", "10", "--max-images", "32"],
}  # fmt: skip

RUNS = {
    "1 process x 1 thread": ([PYTHON, "-m"], 1, []),
    "1 process x 2 threads": ([PYTHON, "-m"], 2, []),
    "2 processes x 1 thread (torchrun)": (
        [TORCHRUN, "--standalone", "--nproc_per_node=2", "-m"],
        1,
        [],
    ),
    "2 processes x 1 thread (Ray)": ([PYTHON, "-m"], 1, ["--backend", "ray", "--workers", "2"]),
}


def photos(folder: Path) -> Path:
    """32 RGB images of 64 px, normalised as ImageNet's, saved as a tensor file."""
    rng = np.random.default_rng(0)
    images = []
    for picture in load_sample_images().images:
        for _ in range(16):
            top, left = (
                rng.integers(0, picture.shape[0] - 200),
                rng.integers(0, picture.shape[1] - 200),
            )
            crop = torch.tensor(picture[top : top + 200, left : left + 200]).permute(2, 0, 1)
            crop = torch.nn.functional.interpolate(crop[None].float() / 255, size=64)[0]
            images.append(crop.flip(-1) if rng.random() < 0.5 else crop)
    stacked = torch.stack(images)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    path = folder / "photos.pt"
    torch.save((stacked - mean) / std, path)
    return path


def run(name: str, workload: list[str], out: Path) -> dict:
    launcher, threads, extra = RUNS[name]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [*launcher, "captum_groups", "atlas", "--out", str(out), *workload, *extra]
    started = time.perf_counter()
    done = subprocess.run(command + ["--no-progress"], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{done.stderr[-3000:]}")
    index = json.loads((out / "atlas.json").read_text())
    peaks: dict[int, float] = {}
    for row in index["classes"]:
        peaks[row["worker"]] = max(peaks.get(row["worker"], 0.0), row["peak_rss_mib"])
    circuits = {p.parent.name: p.read_bytes() for p in out.glob("classes/*/circuit.json")}
    return {
        "job": index["seconds"],
        "wall": wall,
        "peaks": sorted(peaks.values()),
        "circuits": circuits,
    }


def bench(label: str, workload: list[str], folder: Path) -> None:
    print(f"\n{label}: {' '.join(workload)}")
    head = f"{'run':36s} {'job s':>7s} {'speed-up':>9s} {'ideal':>6s} {'wall s':>7s}"
    print(f"{head}  peak MiB per worker")
    base = None
    for name in RUNS:
        result = run(name, workload, folder / name.replace(" ", "_"))
        base = base or result
        same = "" if result["circuits"] == base["circuits"] else "  (circuits differ from 1 x 1)"
        ideal = "2.0x" if name.startswith("2 processes") else "-"
        print(
            f"{name:36s} {result['job']:7.1f} {base['job'] / result['job']:8.2f}x {ideal:>6s} "
            f"{result['wall']:7.1f}  {', '.join(f'{p:.0f}' for p in result['peaks'])}{same}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(WORKLOADS))
    args = parser.parse_args()
    print(f"load before: {os.getloadavg()}; {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as folder:
        workloads = dict(WORKLOADS)
        workloads["resnet18"] = [*workloads["resnet18"], "--data", str(photos(Path(folder)))]
        for label, workload in workloads.items():
            if args.only in (None, label):
                bench(label, workload, Path(folder))
    print(f"\nload after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
