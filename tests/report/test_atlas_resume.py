"""The atlas's resume and its folder, as a careful user meets them: every kind of change
rebuilds what it touches (the result equals a fresh atlas with the new options, byte for
byte), damaged or swapped files are rebuilt, and one run at a time writes into a folder."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from captum_groups import ParameterError
from captum_groups.datasets import digits_cnn, load_digits
from captum_groups.report import build_atlas

SMALL = {"tau": 4, "k": 10, "n_steps": 8, "n_draws": 2, "random_state": 0, "progress": False}
FIELDS = ("target", "images", "groups", "edges", "masked", "retained")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def digits():
    return digits_cnn(), load_digits("test")[0]


def _atlas(digits, out: Path, layers=("relu3",), **options):
    model, x = digits
    return build_atlas(model, list(layers), x, out, targets=[3, 5], **{**SMALL, **options})


def _files(out: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in sorted(out.glob("classes/*/circuit.json"))}


def _rows(out: Path) -> list[dict]:
    index = json.loads((out / "atlas.json").read_text())
    return [{f: row[f] for f in FIELDS} for row in index["classes"]]


def _same_as_fresh(digits, out: Path, fresh: Path, **options) -> None:
    _atlas(digits, fresh, **options)
    assert _files(out) == _files(fresh)
    assert _rows(out) == _rows(fresh)


def test_resume_after_new_layers_rebuilds_every_class(digits, tmp_path):
    _atlas(digits, tmp_path / "a")
    _atlas(digits, tmp_path / "a", layers=("relu2", "relu3"), resume=True)
    _same_as_fresh(digits, tmp_path / "a", tmp_path / "fresh", layers=("relu2", "relu3"))


def test_resume_after_new_report_settings_rebuilds_the_intervals(digits, tmp_path):
    _atlas(digits, tmp_path / "a", n_draws=1)
    _atlas(digits, tmp_path / "a", n_draws=6, resume=True)
    _same_as_fresh(digits, tmp_path / "a", tmp_path / "fresh", n_draws=6)


def test_resume_rebuilds_a_swapped_or_damaged_class(digits, tmp_path):
    out = tmp_path / "a"
    _atlas(digits, out)
    classes = out / "classes"
    for name in ("circuit.json", "summary.json"):  # class 3's files copied over class 5's
        shutil.copy(classes / "3" / name, classes / "5" / name)
    summary = json.loads((classes / "3" / "summary.json").read_text())
    (classes / "3" / "summary.json").write_text(json.dumps({**summary, "masked": None}))
    _atlas(digits, out, resume=True)
    _same_as_fresh(digits, out, tmp_path / "fresh")


def test_resume_with_reports_writes_the_reports_of_kept_classes(digits, tmp_path):
    out = tmp_path / "a"
    _atlas(digits, out)
    before = _files(out)
    _atlas(digits, out, reports=True, resume=True, max_images=20)
    assert _files(out) == before  # kept, not rebuilt
    assert all((out / "classes" / c / "report.html").exists() for c in ("3", "5"))
    assert all(row["report"] for row in json.loads((out / "atlas.json").read_text())["classes"])


def test_a_stale_lock_of_a_dead_run_is_taken_over(digits, tmp_path):
    out = tmp_path / "a"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    holder = {"pid": dead.pid, "host": socket.gethostname(), "started": time.time()}
    (out / ".atlas.lock").write_text(json.dumps(holder))
    _atlas(digits, out)
    assert not (out / ".atlas.lock").exists() and len(_files(out)) == 2


def test_a_live_lock_refuses_the_second_run(digits, tmp_path):
    out = tmp_path / "a"
    out.mkdir()
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    (out / ".atlas.lock").write_text(json.dumps(holder))
    with pytest.raises(ParameterError, match="another atlas run .* is writing into") as caught:
        _atlas(digits, out)
    assert caught.value.parameter == "out" and not (out / "classes").exists()


def test_two_runs_on_one_folder_the_second_refused_the_first_intact(digits, tmp_path):
    shared = tmp_path / "shared"
    first: dict = {}

    def run_first() -> None:
        first["result"] = _atlas(digits, shared, layers=("relu2", "relu3"), n_steps=32)

    thread = threading.Thread(target=run_first)
    thread.start()
    deadline = time.monotonic() + 120
    while not (shared / ".atlas.lock").exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    with pytest.raises(ParameterError, match="another atlas run") as caught:
        _atlas(digits, shared, n_draws=3)  # other settings: they must not mix in
    still_running = thread.is_alive()
    thread.join()
    assert still_running and caught.value.parameter == "out"
    _same_as_fresh(digits, shared, tmp_path / "alone", layers=("relu2", "relu3"), n_steps=32)


def test_the_command_refuses_a_folder_another_run_holds(tmp_path):
    out = tmp_path / "held"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = {"pid": holder.pid, "host": socket.gethostname(), "started": time.time()}
        (out / ".atlas.lock").write_text(json.dumps(lock))
        command = [sys.executable, "-m", "captum_groups", "atlas", "--out", str(out)]
        done = subprocess.run(
            [*command, "--targets", "3", "--no-progress"], env=ENV, capture_output=True,
            text=True, timeout=300,
        )  # fmt: skip
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 2
    assert f"--out: another atlas run (pid {holder.pid}" in done.stderr
    assert not (out / "classes").exists()
