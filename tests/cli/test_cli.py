"""The captum-groups command: the main job end to end, option mapping, usage errors."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from captum.attr import NeuronIntegratedGradients
from PIL import Image

from captum_groups import Circuit, CircuitSettings, GroupSet, NeuronGroup, build_circuit
from captum_groups.cli import CLI_DEFAULTS, COMMAND_OPTIONS, build_parser, main, threads
from captum_groups.cli.inputs import Source
from captum_groups.cli.options import flag_of, settings_from_args
from captum_groups.datasets import digits_cnn, load_digits
from captum_groups.report import ReportSettings

SCRIPT = Path(sys.executable).with_name("captum-groups")


def usage_error(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    """Run the command, expect a usage error; the error message (one line)."""
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_default_command_is_build_circuit_on_the_digits(digits_report):
    out, printed = digits_report
    circuit = Circuit.from_json((out / "circuit.json").read_text())
    model, (images, _) = digits_cnn(), load_digits("test")
    expected = build_circuit(
        model, ["relu2", "relu3"], 3, images, tau=8, k=30, n_steps=24, thumbnails=6,
        random_state=0, progress=False,
    )  # fmt: skip
    assert circuit == expected
    assert (out / "report.html").stat().st_size > 10_000
    assert "circuit built in" in printed and "report assembled in" in printed


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(commands.choices)


SETTINGS_OF = {
    "circuit": (CircuitSettings, Source, ReportSettings),
    "report": (ReportSettings, Source),
    "attribute": (CircuitSettings, Source),
    "atlas": (CircuitSettings, Source, ReportSettings),
    "classes": (Source,),
}
"""The settings classes each command's options come from, the first owning a shared name."""


def _fields(command: str) -> dict:
    fields = {}
    for cls in reversed(SETTINGS_OF[command]):
        fields.update(cls.__dataclass_fields__)
    return fields


def test_every_option_is_a_settings_field_with_its_default_or_a_listed_difference():
    for command, parser in _subcommands().items():
        fields = _fields(command)
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction) or action.default is argparse.SUPPRESS:
                continue  # --help, and the deprecated aliases (they set a field's option)
            name = action.dest
            if name in COMMAND_OPTIONS[command]:
                continue
            assert name in fields, f"{command}: option {action.option_strings} is no setting"
            assert action.option_strings == [flag_of(name)] or action.option_strings == [
                flag_of(name),
                "--no-" + name.replace("_", "-"),
            ]
            default = action.default
            default = tuple(default) if isinstance(default, list) else default
            listed = CLI_DEFAULTS.get(command, {})
            expected = listed[name][0] if name in listed else fields[name].default
            assert default == expected, (command, name, default, expected)
    # the listed differences are options of their command, and really differ
    for command, differences in CLI_DEFAULTS.items():
        actions = _subcommands()[command]._actions
        dests = {a.dest: a for a in actions if a.default is not argparse.SUPPRESS}
        for name, (default, why) in differences.items():
            assert dests[name].default == default and default != _fields(command)[name].default
            assert why in dests[name].help


def test_options_build_the_settings_object():
    args = build_parser().parse_args(
        "circuit --target 3 --tau 5 --k 7 --n-groups 2 --n-steps 9 --scales 1 0.5 --adaptive "
        "--tolerance 0.1 --thumbnails 3 --batch-size 64 --random-state 4 --no-progress "
        "--method riemann_middle --internal-batch-size 100 --no-predicted-only".split()
    )
    names = [n for n in CircuitSettings.__dataclass_fields__ if n != "grouping"]
    assert settings_from_args(CircuitSettings, args, names) == CircuitSettings(
        tau=5, k=7, n_groups=2, n_steps=9, method="riemann_middle", internal_batch_size=100,
        scales=(1.0, 0.5), adaptive=True, tolerance=0.1, predicted_only=False, thumbnails=3,
        batch_size=64, random_state=4,
    )  # fmt: skip
    assert args.progress is False


def test_deprecated_options_still_work_and_say_so(capsys):
    args = build_parser().parse_args(
        "circuit --target 3 --seed 4 --quiet --all-images --fidelity-draws 3".split()
    )
    assert (args.random_state, args.progress, args.predicted_only, args.n_draws) == (
        4,
        False,
        False,
        3,
    )
    err = capsys.readouterr().err
    for old, new in (
        ("--seed", "--random-state"),
        ("--quiet", "--no-progress"),
        ("--all-images", "--no-predicted-only"),
        ("--fidelity-draws", "--n-draws"),
    ):
        assert f"{old} is deprecated" in err and f"use {new}" in err
    args = build_parser().parse_args("attribute --groups g.json --method saliency".split())
    assert args.attribution == "saliency"


def write_image_folder(root: Path, side: int = 32) -> Path:
    """16 generated RGB images in two class folders: bright discs and dark stripes."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:side, :side]
    for index in range(16):
        kind = "discs" if index % 2 == 0 else "stripes"
        (root / kind).mkdir(parents=True, exist_ok=True)
        pixels = rng.uniform(0, 60, (side, side, 3))
        if kind == "discs":
            cy, cx, r = rng.uniform(8, side - 8, 2).tolist() + [rng.uniform(4, 8)]
            pixels[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = rng.uniform(150, 255, 3)
        else:
            pixels[(xx // int(rng.integers(2, 6))) % 2 == 0] += 120
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(root / kind / f"{index}.png")
    return root


def test_resnet18_from_an_image_folder_end_to_end(tmp_path, capsys):
    folder = write_image_folder(tmp_path / "images")
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None)
    with torch.no_grad():
        resnet.fc.bias[7] += 50.0  # planted: every image is predicted as class 7
    torch.save(resnet.state_dict(), tmp_path / "resnet18.pt")
    out = tmp_path / "report"
    argv = (
        f"circuit --model torchvision:resnet18 --weights {tmp_path / 'resnet18.pt'} "
        f"--data {folder} --image-size 32 --layers layer3.1 layer4.1 --target 7 --tau 2 --k 6 "
        f"--n-groups 2 --n-steps 4 --scales 1 0.5 --thumbnails 3 --render-steps 2 "
        f"--n-draws 3 --n-points 2 --max-images 16 --no-progress --out {out}"
    )
    assert main(argv.split()) == 0
    circuit = Circuit.from_json((out / "circuit.json").read_text())
    assert circuit.target == 7 and circuit.layers == ("layer3.1", "layer4.1")
    widths = {"layer3.1": 256, "layer4.1": 512}
    for node, group in circuit.nodes.items():
        assert max(group.indices) < widths[group.layer]
        for index, (top, left, height, width) in circuit.exemplars[node]:
            assert 0 <= index < 16 and top + height <= 32 and left + width <= 32
    assert circuit.params["images"] == 16  # the planted bias: all 16 images predicted as 7
    html = (out / "report.html").read_text()
    assert len(re.findall('class="node group-node[^"]*"', html)) == len(circuit.nodes)
    assert html.count('<path class="edge') == len(circuit.edges)
    assert "16 evaluation images" in html
    assert "report assembled in" in capsys.readouterr().out


def test_report_is_written_again_from_the_saved_circuit(digits_report, tmp_path):
    out, _ = digits_report
    again = tmp_path / "again"
    argv = ["report", str(out / "circuit.json"), "--out", str(again), "--render-steps", "0"]
    assert main([*argv, "--n-draws", "3", "--n-points", "2", "--no-progress"]) == 0
    assert (again / "circuit.json").read_text() == (out / "circuit.json").read_text()
    html = (again / "report.html").read_text()
    circuit = Circuit.from_json((out / "circuit.json").read_text())
    assert len(re.findall('class="node group-node[^"]*"', html)) == len(circuit.nodes)
    assert "Lucent rendering:" not in html  # --render-steps 0 leaves renderings out


def test_attribute_writes_overlays_and_captum_attributions(digits_report, tmp_path):
    out, _ = digits_report
    circuit = Circuit.from_json((out / "circuit.json").read_text())
    node = next(iter(circuit.nodes))
    mine = NeuronGroup("relu3", [1, 5], name="mine")
    listed = tmp_path / "groups.json"
    listed.write_text(json.dumps([{"layer": "relu3", "indices": [1, 5], "name": "mine"}]))
    halves = GroupSet.from_labels("relu2", np.arange(32) % 2, names=["a", "b"])
    groupset = tmp_path / "groupset.json"
    groupset.write_text(halves.to_json())
    model, (images, _) = digits_cnn(), load_digits("test")
    for groups_file, nodes, groups in (
        (listed, [], [mine]),
        (groupset, [], list(halves)),
        (out / "circuit.json", ["--nodes", node], [circuit.nodes[node]]),
    ):
        target = tmp_path / groups_file.stem
        argv = ["attribute", "--groups", str(groups_file), *nodes, "--indices", "4", "9", "11"]
        assert main([*argv, "--n-steps", "8", "--out", str(target), "--no-progress"]) == 0
        saved = torch.load(target / "attributions.pt", weights_only=True)
        assert saved["groups"] == [g.name for g in groups]
        assert saved["attributions"].shape == (3, len(groups), 1, 8, 8)
        for position, group in enumerate(groups):
            assert Image.open(target / f"{group.name.replace(':', '_')}.png").size[0] > 50
            expected = NeuronIntegratedGradients(model, model.get_submodule(group.layer)).attribute(
                images[[4, 9, 11]], neuron_selector=group, n_steps=8
            )
            torch.testing.assert_close(saved["attributions"][:, position], expected)


def test_attribute_reads_image_files(tmp_path):
    rng = np.random.default_rng(1)
    pixels = [rng.integers(0, 256, (8, 8), dtype=np.uint8) for _ in range(2)]
    files = []
    for i, image in enumerate(pixels):
        files.append(tmp_path / f"digit{i}.png")
        Image.fromarray(image).save(files[-1])
    groups = tmp_path / "groups.json"
    groups.write_text(json.dumps([{"layer": "relu3", "indices": [3, 4, 8], "name": "g"}]))
    argv = ["attribute", "--groups", str(groups), "--images", *map(str, files)]
    options = ["--grayscale", "--no-normalize", "--image-size", "8", "--n-steps", "6"]
    options.append("--no-progress")
    assert main([*argv, *options, "--out", str(tmp_path / "out")]) == 0
    saved = torch.load(tmp_path / "out" / "attributions.pt", weights_only=True)
    expected_images = torch.tensor(np.stack(pixels), dtype=torch.float32)[:, None] / 255
    torch.testing.assert_close(saved["images"], expected_images)
    model = digits_cnn()
    expected = NeuronIntegratedGradients(model, model.relu3).attribute(
        expected_images, neuron_selector=NeuronGroup("relu3", [3, 4, 8]), n_steps=6
    )
    torch.testing.assert_close(saved["attributions"][:, 0], expected)


@pytest.fixture
def weights_of_resnet(tmp_path) -> Path:
    path = tmp_path / "resnet18.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def test_usage_errors_name_the_option(tmp_path, capsys, monkeypatch, weights_of_resnet):
    (tmp_path / "factories.py").write_text("def not_a_model():\n    return 3\n")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    broken = tmp_path / "broken" / "cats"
    broken.mkdir(parents=True)
    (broken / "cat.png").write_bytes(b"this is not a png")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    cases = [
        (["--model", "resnet18"], "--model", "not a model spec"),
        (["--model", "torchvision:resnet-18"], "--model", "torchvision has no model"),
        (["--model", "no_such_module:make"], "--model", "cannot import"),
        (["--model", "factories:missing"], "--model", "has no attribute"),
        (["--model", "factories:not_a_model", "--layers", "a"], "--model", "not a torch nn.Module"),
        (["--weights", str(weights_of_resnet)], "--weights", "does not match DigitsCNN"),
        (["--weights", str(garbage)], "--weights", "weights_only=True"),
        (["--weights", "missing.pt"], "--weights", "is not a file"),
        (["--data", str(tmp_path / "empty")], "--data", "no readable images"),
        (["--data", str(tmp_path / "broken")], "--data", "cannot read the image"),
        (["--data", "nowhere"], "--data", "is not a folder or a file"),
        (["--data", str(garbage)], "--data", "neither an image folder nor a tensor file"),
        (["--layers", "relu2", "relu9"], "--layers", "relu9"),
        (["--target", "10"], "--target", "out of range for 10 outputs (0 to 9)"),
        (["--target", "-1"], "--target", "must be non-negative"),
        (["--model", "torchvision:resnet18"], "--layers", "is required with --model"),
        (["--device", "warp"], "--device", "not a device"),
        (["--tau", "40"], "--tau", "tau=40 is larger than layer"),
    ]
    for options, option, words in cases:
        argv = ["circuit", "--no-progress", *options]
        if "--target" not in options:
            argv += ["--target", "3"]
        message = usage_error(capsys, argv)
        assert message.startswith(f"captum-groups circuit: error: {option}"), message
        assert words in message, message


def test_usage_errors_of_report_and_attribute(tmp_path, capsys, digits_report):
    out, _ = digits_report
    not_json = tmp_path / "circuit.json"
    not_json.write_text("{ not json")
    pickled = tmp_path / "pickled.json"
    pickled.write_bytes(b"\x80\x04\x95")
    few = tmp_path / "few.pt"
    torch.save(load_digits("test")[0][:20], few)
    groups = tmp_path / "groups.json"
    groups.write_text(json.dumps([{"layer": "relu3", "indices": [70]}]))
    bad_layer = tmp_path / "bad_layer.json"
    bad_layer.write_text(json.dumps([{"layer": "conv9", "indices": [1]}]))
    circuit_file = str(out / "circuit.json")
    cases = [
        (["report", str(not_json)], "circuit", "not a captum-groups circuit JSON"),
        (["report", str(pickled)], "circuit", "as JSON text"),
        (["report", circuit_file, "--data", str(few)], "--data", "the data hold 20 images"),
        (["report", circuit_file, "--model", "torchvision:resnet18"], "--model", "relu2"),
        (["attribute", "--groups", str(groups)], "--groups", "indices out of range"),
        (["attribute", "--groups", str(bad_layer)], "--groups", "conv9"),
        (["attribute", "--groups", str(not_json)], "--groups", "cannot read"),
        (["attribute", "--groups", circuit_file, "--nodes", "nope"], "--nodes", "nope"),
        (["attribute", "--groups", circuit_file, "--indices", "450"], "--indices", "449"),
    ]
    for argv, option, words in cases:
        message = usage_error(capsys, [*argv, "--no-progress", "--out", str(tmp_path / "x")])
        assert message.startswith(f"captum-groups {argv[0]}: error: {option}"), message
        assert words in message, message


def test_help_names_the_options(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["circuit", "--help"])
    assert stopped.value.code == 0
    shown = capsys.readouterr().out
    for option in ("--target", "--model", "--weights", "--data", "--layers", "--tau", "--k"):
        assert option in shown


def test_console_script_exits_with_code_2_and_one_line(tmp_path):
    assert SCRIPT.exists(), "install the package (pip install -e .) to get the console script"
    failed = subprocess.run(
        [SCRIPT, "circuit", "--target", "3", "--model", "nonsense"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines() == [
        "captum-groups circuit: error: --model: 'nonsense' is not a model spec; expected "
        "'torchvision:NAME' (e.g. torchvision:resnet18) or 'package.module:factory' "
        "(see captum-groups circuit --help)"
    ]


def test_classes_lists_what_the_model_predicts_most_first(capsys):
    assert main(["classes", "--no-progress", "--top", "3"]) == 0
    printed = capsys.readouterr().out.splitlines()
    model, (images, _) = digits_cnn(), load_digits("test")
    counts = torch.bincount(model(images).argmax(1), minlength=10)
    rows = [line.split() for line in printed[2:5]]
    assert [int(count) for _, count, _ in rows] == sorted(counts.tolist(), reverse=True)[:3]
    for target, count, _ in rows:
        assert counts[int(target)] == int(count)
    assert printed[0].startswith("10 classes predicted on 450 images")


def test_a_target_no_image_is_predicted_as_is_refused_before_the_build(tmp_path, capsys):
    images = load_digits("test")[0]
    only_threes = images[digits_cnn()(images).argmax(1) == 3]
    torch.save(only_threes, tmp_path / "threes.pt")
    started = time.perf_counter()
    message = usage_error(
        capsys, ["circuit", "--target", "5", "--data", str(tmp_path / "threes.pt"), "--no-progress"]
    )
    assert time.perf_counter() - started < 30
    assert "class 5 for none of the images; it predicts class 3" in message
    assert "--no-predicted-only" in message and "captum-groups classes" in message
    message = usage_error(
        capsys,
        [
            "circuit",
            "--target",
            "5",
            "--data",
            str(tmp_path / "threes.pt"),
            "--no-predicted-only",
            "--no-progress",
        ],
    )
    assert "no image to measure the circuit's fidelity on" in message


def test_an_out_that_is_a_file_is_refused_before_any_work(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("mine")
    message = usage_error(capsys, ["circuit", "--target", "3", "--out", str(taken)])
    assert message.startswith("captum-groups circuit: error: --out") and "is a file" in message
    assert taken.read_text() == "mine"


def test_threads_are_set_by_the_option_or_chosen_from_the_free_cores(monkeypatch, capsys):
    cores = len(os.sched_getaffinity(0))
    assert threads(1) == 1
    # more threads than cores wait on each other (20x slower): capped, with a word
    assert threads(999) == cores
    assert f"--threads 999 is more than the {cores} cores" in capsys.readouterr().err
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads(None) == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(os, "getloadavg", lambda: (50.0, 0.0, 0.0))
    assert threads(None) == 1  # every core busy: one thread
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert threads(None) == len(os.sched_getaffinity(0))
