"""Beyond one process: portable, mergeable state; the atlas on torchrun and Ray equal to one
process, byte for byte; resuming an interrupted atlas; data-parallel exemplar mining."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from captum_groups import build_circuit
from captum_groups.circuits import ClassRouting, route_classes
from captum_groups.circuits._passes import ImageReader, Selection
from captum_groups.circuits.settings import CircuitSettings
from captum_groups.circuits.summary import _SummaryPass
from captum_groups.datasets import digits_cnn, load_digits
from captum_groups.discovery import NEURFLOW_SCALES, ExemplarMiner, mine_exemplars
from captum_groups.discovery.mining import mine_into
from captum_groups.distributed import balanced
from captum_groups.report import build_atlas

pytestmark = pytest.mark.usefixtures("one_thread")

ATLAS = ["--tau", "4", "--k", "10", "--n-steps", "8", "--n-draws", "3", "--no-progress"]
"""Light atlas settings: ten digit classes in a few seconds."""

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""One thread per process: results then do not depend on how many processes share the work
(floating-point reductions split over threads add in another order)."""

TORCHRUN = Path(sys.executable).with_name("torchrun")


def _atlas(
    out: Path, *extra: str, launcher: list[str] | None = None
) -> subprocess.CompletedProcess:
    command = [*(launcher or [sys.executable]), "-m", "captum_groups", "atlas", "--out", str(out)]
    return subprocess.run(
        [*command, *ATLAS, *extra], env=ENV, capture_output=True, text=True, timeout=600
    )


def _circuits(out: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in sorted(out.glob("classes/*/circuit.json"))}


@pytest.fixture(scope="module")
def one_process_atlas(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("atlas") / "one"
    done = _atlas(out)
    assert done.returncode == 0, done.stderr
    return out


def test_the_atlas_of_one_process_equals_build_circuit_class_by_class(one_process_atlas):
    circuits = _circuits(one_process_atlas)
    assert sorted(circuits, key=int) == [str(c) for c in range(10)]
    model, (x, _) = digits_cnn(), load_digits("test")
    for target in (0, 7):
        expected = build_circuit(
            model, ["relu2", "relu3"], target, x, tau=4, k=10, n_steps=8, thumbnails=6,
            random_state=0, progress=False,
        )  # fmt: skip
        assert circuits[str(target)] == expected.to_json().encode()
    index = json.loads((one_process_atlas / "atlas.json").read_text())
    assert [row["target"] for row in index["classes"]] == list(range(10))
    assert sum(row["images"] for row in index["classes"]) == 450
    assert index["failures"] == [] and index["backend"] == "local"
    page = (one_process_atlas / "atlas.html").read_text()
    assert page.count('<tr data-class="') == 10 and "Groups shared between classes" in page


@pytest.mark.slow
def test_torchrun_with_two_ranks_writes_the_same_circuits(one_process_atlas, tmp_path):
    out = tmp_path / "torchrun"
    launcher = [str(TORCHRUN), "--standalone", "--nproc_per_node=2"]
    done = _atlas(out, launcher=launcher)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _circuits(out) == _circuits(one_process_atlas)
    index = json.loads((out / "atlas.json").read_text())
    assert (index["backend"], index["workers"]) == ("torch", 2)
    assert done.stdout.count("wrote") == 1  # the main rank reports, once


@pytest.mark.slow
def test_ray_with_two_workers_writes_the_same_circuits(one_process_atlas, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        atlas = build_atlas(
            digits_cnn, ["relu2", "relu3"], lambda: load_digits("test")[0], tmp_path / "ray",
            backend="ray", workers=2, tau=4, k=10, n_steps=8, thumbnails=6, random_state=0,
            n_draws=3, progress=False,
        )  # fmt: skip
    finally:
        ray.shutdown()
    assert _circuits(tmp_path / "ray") == _circuits(one_process_atlas)
    assert len(atlas.rows) == 10 and not atlas.failures


def test_ray_refuses_a_model_object_it_would_have_to_pickle(tmp_path):
    pytest.importorskip("ray")
    with pytest.raises(ValueError, match="backend='ray' builds the model on each worker"):
        build_atlas(digits_cnn(), ["relu3"], lambda: None, tmp_path, backend="ray")


@pytest.mark.slow
def test_an_atlas_killed_half_way_and_resumed_equals_an_uninterrupted_one(
    one_process_atlas, tmp_path
):
    out = tmp_path / "resumed"
    command = [sys.executable, "-m", "captum_groups", "atlas", "--out", str(out), *ATLAS]
    running = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while len(_circuits(out)) < 4 and running.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    running.send_signal(signal.SIGKILL)
    running.wait()
    written = len(_circuits(out))
    assert 0 < written < 10, f"the run was not cut half-way ({written} classes written)"
    resumed = _atlas(out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert _circuits(out) == _circuits(one_process_atlas)
    fields = ("target", "images", "groups", "edges", "masked", "retained")

    def rows(folder: Path) -> list[dict]:
        index = json.loads((folder / "atlas.json").read_text())
        return [{f: row[f] for f in fields} for row in index["classes"]]

    assert rows(out) == rows(one_process_atlas)


def test_a_class_out_of_range_is_refused_before_any_work(tmp_path):
    done = _atlas(tmp_path / "refused", "--targets", "3", "99", "5")
    assert done.returncode == 2
    assert "--targets: class 99 is out of range" in done.stderr
    assert not (tmp_path / "refused").exists()


def test_a_class_that_fails_is_reported_and_the_others_kept(tmp_path, monkeypatch):
    from captum_groups.report import atlas as atlas_module

    def failing_for_4(model, layers, target, *args, **kwargs):
        if target == 4:
            raise RuntimeError("class 4 cannot be built")
        return build_circuit(model, layers, target, *args, **kwargs)

    monkeypatch.setattr(atlas_module, "build_circuit", failing_for_4)
    x, _ = load_digits("test")
    out = tmp_path / "failing"
    found = build_atlas(
        digits_cnn(), ["relu3"], x, out, targets=[3, 4, 5], tau=4, k=10, n_steps=8,
        n_draws=3, progress=False,
    )  # fmt: skip
    assert [f["target"] for f in found.failures] == [4]
    assert "class 4 cannot be built" in found.failures[0]["error"]
    assert sorted(_circuits(out)) == ["3", "5"]
    index = json.loads((out / "atlas.json").read_text())
    assert [f["target"] for f in index["failures"]] == [4]
    assert "Classes that failed" in (out / "atlas.html").read_text()


def test_routing_merges_from_any_shards_and_crosses_processes():
    model, (x, _) = digits_cnn(), load_digits("test")
    whole = route_classes(model, x, batch_size=64, progress=False)
    shards = [route_classes(model, x, 64, range(r, 8, 3), progress=False) for r in range(3)]
    moved = [
        ClassRouting.from_state_dict(pickle.loads(pickle.dumps(s.state_dict()))) for s in shards
    ]
    merged = moved[0].merge(moved[1]).merge(moved[2])
    assert merged.state_dict()["indices"].equal(whole.state_dict()["indices"])
    assert merged.state_dict()["classes"].equal(whole.state_dict()["classes"])
    with pytest.raises(ValueError, match="more than once"):
        shards[0].merge(shards[0])
    predicted = model(x).argmax(1)
    assert whole.images_of(3) == (predicted == 3).nonzero()[:, 0].tolist()


def test_building_with_a_routing_gives_the_same_circuit_reading_fewer_images():
    model, (x, _) = digits_cnn(), load_digits("test")
    routing = route_classes(model, x, progress=False)
    settings = {"tau": 4, "k": 10, "n_groups": 2, "n_steps": 8, "progress": False}
    alone = build_circuit(model, ["relu2", "relu3"], 6, x, **settings)
    routed = build_circuit(model, ["relu2", "relu3"], 6, x, routing=routing, **settings)
    assert routed.to_json() == alone.to_json()


def _sharded_miners(dataset, world: int, **kw) -> list[dict]:
    """Each rank's miner state, as a DistributedSampler's rank would mine it."""
    states = []
    for rank in range(world):
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False)
        miner = ExemplarMiner(digits_cnn(), "relu3", **kw)
        mine_into(miner, DataLoader(dataset, batch_size=16, sampler=sampler), progress=False)
        states.append(pickle.loads(pickle.dumps(miner.state_dict())))
    return states


@pytest.mark.parametrize("size", [450, 449])  # 449: the sampler pads a shard with a duplicate
def test_mining_over_distributed_sampler_shards_equals_one_process(size):
    x = load_digits("test")[0][:size]
    dataset = TensorDataset(x, torch.zeros(size))
    kw = {"k": 12, "scales": NEURFLOW_SCALES}
    one = mine_exemplars(digits_cnn(), "relu3", x, progress=False, **kw)
    states = _sharded_miners(dataset, 3, **kw)
    model = digits_cnn()  # a different module object: miners merge by layer name
    merged = ExemplarMiner.from_state_dict(model, states[0])
    for state in states[1:]:
        merged = merged.merge(ExemplarMiner.from_state_dict(model, state))
    found = merged.result().neurons
    assert found.indices.equal(one.neurons.indices) and found.boxes.equal(one.neurons.boxes)
    torch.testing.assert_close(found.values, one.neurons.values, rtol=0, atol=0)
    assert merged.ranges == [(0, size)]


MINING_SCRIPT = """
import sys, torch, torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset
from captum_groups.datasets import digits_cnn, load_digits
from captum_groups.discovery import NEURFLOW_SCALES
from captum_groups.distributed import mine_exemplars
dist.init_process_group("gloo")
x = load_digits("test")[0]
dataset = TensorDataset(x, torch.zeros(len(x)))
loader = DataLoader(dataset, batch_size=32, sampler=DistributedSampler(dataset, shuffle=False))
found = mine_exemplars(digits_cnn(), "relu3", loader, k=12, scales=NEURFLOW_SCALES, progress=False)
if dist.get_rank() == 1:
    torch.save(found.neurons.__dict__, sys.argv[1])
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_distributed_mining_under_torchrun_equals_one_process(tmp_path):
    script = tmp_path / "mine.py"
    script.write_text(MINING_SCRIPT)
    saved = tmp_path / "found.pt"
    done = subprocess.run(
        [str(TORCHRUN), "--standalone", "--nproc_per_node=2", str(script), str(saved)],
        env=ENV, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    found = torch.load(saved, weights_only=True)
    x = load_digits("test")[0]
    one = mine_exemplars(digits_cnn(), "relu3", x, k=12, scales=NEURFLOW_SCALES, progress=False)
    assert found["indices"].equal(one.neurons.indices) and found["boxes"].equal(one.neurons.boxes)
    torch.testing.assert_close(found["values"], one.neurons.values, rtol=0, atol=0)


def test_crop_summaries_merge_from_shards_and_cross_processes():
    model, (x, _) = digits_cnn(), load_digits("test")
    images = route_classes(model, x, progress=False).images_of(2)

    def selection(indices: list[int]) -> Selection:
        """The summaries of class 2's crops, over the images at ``indices`` only."""
        routing = ClassRouting()
        routing.update(torch.tensor(indices), torch.full((len(indices),), 2))
        reader = ImageReader(x, torch.device("cpu"), torch.float32, 64, False)
        return _SummaryPass(model, reader, ["relu3"], [2], CircuitSettings(), routing).run()[2]

    whole = selection(images)
    first, second = selection(images[1::2]), selection(images[::2])
    moved = Selection.from_state_dict(pickle.loads(pickle.dumps(second.state_dict())))
    merged = first.merge(moved)
    assert merged.image_ids == whole.image_ids == images
    torch.testing.assert_close(merged.summaries["relu3"], whole.summaries["relu3"])
    torch.testing.assert_close(merged.target_values[2], whole.target_values[2])
    with pytest.raises(ValueError, match="share images"):
        merged.merge(first)


def test_classes_are_spread_over_ranks_by_their_images():
    shares = balanced([40, 45, 38, 50, 44, 41, 47, 39, 52, 54], 2)
    loads = [sum([40, 45, 38, 50, 44, 41, 47, 39, 52, 54][i] for i in share) for share in shares]
    assert sorted(i for share in shares for i in share) == list(range(10))
    assert abs(loads[0] - loads[1]) <= 10
