"""Trust, second pass: what a careful user does outside the cases listed before, and what
they expect. Each test is stated as the case. (Threads: ``test_threads.py``.)"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from captum_groups import Circuit, NeuronGroup, ParameterError, build_circuit
from captum_groups.cli import main
from captum_groups.cli.inputs import ImageOptions, load_image_files
from captum_groups.data import examples_at
from captum_groups.datasets import digits_cnn, load_digits
from captum_groups.discovery import find_core_neurons, mine_exemplars
from captum_groups.report import write_report

SMALL = {"tau": 3, "k": 10, "n_groups": 2, "n_steps": 8, "progress": False}


@pytest.fixture(scope="module")
def resnet() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    with torch.no_grad():
        model.fc.bias[7] += 50  # every image is predicted as class 7
    return model, torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_a_users_hook_on_a_batch_norm_counts_as_if_built_into_the_model(resnet):
    """A hook tripling bn1's output gives the circuit of a model whose bn1 is tripled."""
    model, x = resnet
    built = copy.deepcopy(model)
    with torch.no_grad():
        built.layer4[0].bn1.weight.mul_(3)
        built.layer4[0].bn1.bias.mul_(3)
    hooked = copy.deepcopy(model)
    hooked.layer4[0].bn1.register_forward_hook(lambda module, args, out: out * 3)
    layers = ["layer3.1", "layer4.1"]
    expected = build_circuit(built, layers, 7, x, **SMALL)
    found = build_circuit(hooked, layers, 7, x, **SMALL)
    assert found.core_neurons == expected.core_neurons
    assert found.core_neurons != build_circuit(model, layers, 7, x, **SMALL).core_neurons
    cores = find_core_neurons(hooked, "layer4.0", 7, x, tau=4, n_steps=8)
    assert cores.indices == find_core_neurons(built, "layer4.0", 7, x, tau=4, n_steps=8).indices
    assert len(hooked.layer4[0].bn1._forward_hooks) == 1  # the user's hook is still there


def test_a_users_hook_on_a_block_counts_too(resnet):
    """A hook that silences half of a block's channels: the circuit of that silenced model."""
    model, x = resnet

    class Silenced(nn.Module):
        def __init__(self, block: nn.Module) -> None:
            super().__init__()
            self.block = block

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            out = self.block(inputs)
            return torch.cat([out[:, :256] * 0, out[:, 256:]], 1)

    built = copy.deepcopy(model)
    built.layer4[0] = Silenced(built.layer4[0])
    hooked = copy.deepcopy(model)
    hooked.layer4[0].register_forward_hook(
        lambda m, a, out: torch.cat([out[:, :256] * 0, out[:, 256:]], 1)
    )
    layers = ["layer3.1", "layer4.1"]
    expected = build_circuit(built, layers, 7, x, **SMALL)
    assert build_circuit(hooked, layers, 7, x, **SMALL).core_neurons == expected.core_neurons


def test_data_read_through_a_sampler_is_numbered_by_its_data_set_indices(tmp_path):
    """A loader that reads some images in its own order: the circuit's exemplars, and the
    report's crops of them, are those images, not others."""
    model, (x, y) = digits_cnn(), load_digits("test")
    dataset = TensorDataset(x, y)
    threes = (model(x).argmax(1) == 3).nonzero()[:, 0].tolist()
    for chosen in (threes[::-1], threes):  # the images predicted as 3, last first, then in order
        loader = DataLoader(dataset, batch_size=16, sampler=chosen)
        circuit = build_circuit(model, ["relu3"], 3, loader, **SMALL)
        shown = {index for items in circuit.exemplars.values() for index, _ in items}
        assert shown and shown <= set(chosen)
        for index in shown:
            torch.testing.assert_close(examples_at(loader, [index])[0], x[index])
    # read in the data's order, they are the images the tensor's circuit is built from
    assert circuit.to_json() == build_circuit(model, ["relu3"], 3, x, **SMALL).to_json()
    files = write_report(model, circuit, loader, tmp_path, render_steps=0, n_draws=2,
                         progress=False)  # fmt: skip
    assert files.html.exists()


def _digit_png(folder: Path, bits: int) -> Path:
    digit = load_digits("test")[0][0, 0].numpy()
    scale = 65535 if bits == 16 else 255
    pixels = np.round(digit / digit.max() * scale).astype(np.uint16 if bits == 16 else np.uint8)
    path = folder / f"digit{bits}.png"
    Image.fromarray(pixels).save(path)
    return path


def test_a_16_bit_png_reads_as_its_8_bit_twin(tmp_path):
    options = ImageOptions(size=8, mean=None, std=None, grayscale=True)
    eight = load_image_files([str(_digit_png(tmp_path, 8))], options)
    sixteen = load_image_files([str(_digit_png(tmp_path, 16))], options)
    assert (sixteen - eight).abs().max() <= 1 / 255  # not clipped: the same digit
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 3] = 0  # fully transparent: a viewer shows white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "clear.png")
    clear = load_image_files([str(tmp_path / "clear.png")], options)
    torch.testing.assert_close(clear, torch.ones_like(clear))


def _saved_digits_report(tmp_path: Path) -> tuple[Path, Circuit]:
    out = tmp_path / "report"
    argv = ["circuit", "--target", "3", "--out", str(out), "--render-steps", "0", "--n-draws",
            "2", "--tau", "4", "--k", "10", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    return out, Circuit.from_json((out / "circuit.json").read_text())


def test_the_report_replaces_symlinks_instead_of_writing_through_them(tmp_path):
    out, circuit = _saved_digits_report(tmp_path)
    victims = {name: tmp_path / f"victim-{name}" for name in ("report.html", "circuit.json")}
    for name, victim in victims.items():
        victim.write_text("mine")
        (out / name).unlink()
        (out / name).symlink_to(victim)
    write_report(digits_cnn(), circuit, load_digits("test")[0], out, render_steps=0, n_draws=2,
                 progress=False)  # fmt: skip
    for name, victim in victims.items():
        assert victim.read_text() == "mine"
        assert not (out / name).is_symlink() and (out / name).stat().st_size > 100


def test_an_interrupted_report_leaves_no_report_beside_another_circuit(tmp_path, monkeypatch):
    out, circuit = _saved_digits_report(tmp_path)
    import captum_groups.report.write as writing

    real = writing.write_atomic

    def interrupted(path, content):
        if Path(path).name == "report.html":
            raise KeyboardInterrupt
        return real(path, content)

    monkeypatch.setattr(writing, "write_atomic", interrupted)
    relabelled = circuit.relabel({next(iter(circuit.nodes)): "loops"})
    with pytest.raises(KeyboardInterrupt):
        write_report(digits_cnn(), relabelled, load_digits("test")[0], out, render_steps=0,
                     n_draws=2, progress=False)  # fmt: skip
    assert not (out / "report.html").exists()  # no old report beside the new circuit
    assert Circuit.from_json((out / "circuit.json").read_text()) == relabelled
    assert sorted(p.name for p in out.iterdir()) == ["circuit.json"]  # no temporary files


def test_ctrl_c_during_the_renderings_stops_with_130_and_writes_nothing(tmp_path, monkeypatch):
    steps = {"taken": 0}
    real_step = torch.optim.Adam.step

    def step(self, *args, **kwargs):
        steps["taken"] += 1
        if steps["taken"] == 3:
            raise KeyboardInterrupt  # Lucent catches it inside its loop
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    out = tmp_path / "report"
    code = main(["circuit", "--target", "3", "--out", str(out), "--render-steps", "20",
                 "--n-draws", "2", "--no-progress"])  # fmt: skip
    assert code == 130
    assert not out.exists() or list(out.iterdir()) == []


def test_render_groups_reraises_an_interrupt_instead_of_returning_half_an_image(monkeypatch):
    from captum_groups.viz import render_groups

    real_step = torch.optim.Adam.step
    calls = {"n": 0}

    def step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    model = digits_cnn()
    with pytest.raises(KeyboardInterrupt, match="interrupted after 1 of 10 steps"):
        render_groups(model, [NeuronGroup("relu3", [1])], size=8, steps=10)
    assert not any(m._forward_hooks for m in model.modules())


def _circuit_text(**changes: object) -> str:
    circuit = Circuit(3, ["relu3"], {"a": NeuronGroup("relu3", [0, 1], name="a")},
                      {("a", "target"): 1.0}, typical_activations={"a": [1.0, 2.0]})  # fmt: skip
    data = circuit.to_dict()
    for path, value in changes.items():
        node, _, field = path.partition("__")
        if field:
            data[node]["a"][field] = value
        else:
            data[node] = value
    return json.dumps(data)


@pytest.mark.parametrize(
    "text, where",
    [
        (
            _circuit_text().replace(
                '"nodes": {', '"nodes": {"a": {"layer": "relu3", "indices": [5]}, '
            ),
            "appears twice",
        ),  # fmt: skip
        (_circuit_text(typical_activations={"a": [float("nan"), 1.0]}), "NaN is not a number"),
        (_circuit_text(typical_activations={"a": "high"}), r"\$\.typical_activations\.a"),
        (_circuit_text(nodes__label=["x"]), r"\$\.nodes\.a\.label"),
        (_circuit_text(nodes__name=7), r"\$\.nodes\.a\.name"),
        ("[" * 100_000 + "]" * 100_000, "nests deeper than 32"),
        (_circuit_text(nodes__indices=[10**30]), r"\$\.nodes\.a\.indices\[0\]"),
    ],
    ids=["repeated-node", "nan", "string-typical", "list-label", "int-name", "deep", "huge"],
)
def test_circuit_json_is_read_strictly_with_the_fields_path(text, where):
    with pytest.raises(ParameterError, match=where):
        Circuit.from_json(text)


def test_a_saved_circuit_that_does_not_fit_the_model_is_named_in_one_line(tmp_path, capsys):
    out, circuit = _saved_digits_report(tmp_path)
    data = circuit.to_dict()
    node = next(iter(data["nodes"]))
    data["nodes"][node]["indices"] = [999 + i for i in range(len(data["nodes"][node]["indices"]))]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(SystemExit) as stopped:
        main(["report", str(bad), "--out", str(tmp_path / "again"), "--no-progress"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    # the library's message (write_report gives the same), under the circuit argument
    assert "circuit: node" in err and "does not fit the model" in err


def test_a_mathtext_label_is_shown_as_typed(tmp_path):
    group = NeuronGroup("relu3", [0, 1], name="a", label=r"cost $\x$")
    circuit = Circuit(3, ["relu3"], {"a": group}, {("a", "target"): 1.0},
                      exemplars={"a": [(0, (0, 0, 8, 8))]})  # fmt: skip
    x = load_digits("test")[0]
    circuit.plot(x).savefig(tmp_path / "circuit.png")
    files = write_report(digits_cnn(), circuit, x, tmp_path / "out", render_steps=0, n_draws=2,
                         progress=False)  # fmt: skip
    assert r"cost $\x$" in files.html.read_text()


def test_confusing_cases_get_messages_that_name_what_to_do(tmp_path, capsys):
    model, (x, _) = digits_cnn(), load_digits("test")
    with pytest.raises(ParameterError, match=r"computes in torch.bfloat16.*model.float\(\)"):
        build_circuit(copy.deepcopy(model).to(torch.bfloat16), ["relu3"], 3, x, **SMALL)
    with pytest.raises(ParameterError, match=r"compiled with torch.compile.*model._orig_mod"):
        build_circuit(torch.compile(model), ["relu3"], 3, x, **SMALL)
    with torch.inference_mode(), pytest.raises(RuntimeError, match="outside the inference_mode"):
        build_circuit(model, ["relu3"], 3, x, **SMALL)
    with pytest.raises(ParameterError, match="outside the 8x8 images"):
        from captum_groups.discovery import crop_and_resize

        crop_and_resize(x[:1], torch.tensor([[4, 4, 8, 8]]))
    with pytest.raises(SystemExit):
        main(["circuit", "--target", "3", "--seed", "-1", "--no-progress"])
    assert "--random-state: random_state must be an int between 0 and" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["circuit", "--target", "3", "--batch-size", str(10**30), "--no-progress"])
    assert "--batch-size: batch_size must be a positive int" in capsys.readouterr().err


def test_a_long_group_name_gives_a_file_name_the_file_system_takes(tmp_path):
    groups = tmp_path / "groups.json"
    groups.write_text(json.dumps([{"layer": "relu3", "indices": [1], "name": "x" * 300}]))
    argv = ["attribute", "--groups", str(groups), "--indices", "0", "--n-steps", "4",
            "--out", str(tmp_path / "out"), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    names = [p.name for p in (tmp_path / "out").iterdir() if p.suffix == ".png"]
    assert len(names) == 1 and len(names[0]) <= 84


def test_a_relu_after_a_linear_on_tokens_needs_its_neuron_axis_named():
    """(N, T, F) from a ReLU: tokens or channels? Mining asks instead of guessing."""
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU())
    tokens = torch.randn(4, 3, 6)
    with pytest.raises(ParameterError, match=r"dim=-1 for \(N, T, F\)"):
        mine_exemplars(model, "1", tokens, k=2, progress=False)
    found = mine_exemplars(model, "1", tokens, k=2, dim=-1, progress=False)
    assert found.neurons.values.shape == (5, 2)


def test_thread_safety_is_documented():
    from captum_groups._model import capture as _hooks

    assert re.search(r"Hooks act only on the thread that registered them", _hooks.__doc__)
