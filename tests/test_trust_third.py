"""The third trust pass, each case as the user met it: files a user can serve, frozen
settings that stay frozen, one warning per call, the neuro functions' messages.

(The bad values of this pass are also in the battery of ``test_bad_input.py``.)
"""

from __future__ import annotations

import os
import stat
import warnings

import numpy as np
import pytest
from torch import nn

from captum_groups import CircuitSettings, ParameterError
from captum_groups.datasets import digits_cnn, load_digits
from captum_groups.files import write_atomic
from captum_groups.neuro import localize, reverse_predictivity


def test_written_files_take_the_umask_mode_so_a_report_can_be_served(tmp_path):
    previous = os.umask(0o022)
    try:
        shared = write_atomic(tmp_path / "report.html", "<html></html>")
        os.umask(0o077)
        private = write_atomic(tmp_path / "circuit.json", "{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o644
    assert stat.S_IMODE(private.stat().st_mode) == 0o600


def test_frozen_settings_cannot_be_changed_through_their_n_groups():
    settings = CircuitSettings(n_groups={"relu3": 2})
    with pytest.raises(TypeError):
        settings.n_groups["relu3"] = 0  # type: ignore[index]
    assert settings.groups_for("relu3") == 2
    assert hash(settings) == hash(CircuitSettings(n_groups={"relu3": 2}))
    assert settings == CircuitSettings.from_dict(settings.to_dict())
    source = {"relu3": 2}
    kept = CircuitSettings(n_groups=source)
    source["relu3"] = 0  # the caller's dict is copied, not held
    assert kept.groups_for("relu3") == 2


def test_localize_on_a_training_model_warns_once():
    model = digits_cnn()
    model.dropout = nn.Dropout()  # a module whose training mode matters
    model.train()
    x, y = load_digits("test")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        localize(model, "relu3", x[y == 0], x[y != 0], fraction=0.1)
    assert sum("training mode" in str(w.message) for w in caught) == 1


def test_reverse_predictivity_names_features_and_recordings_the_right_way_round():
    with pytest.raises(ParameterError) as caught:
        reverse_predictivity(np.ones((50, 3)), np.ones((60, 2)))
    assert caught.value.parameter == "recordings"
    assert "50 rows of features, 60 recorded stimuli" in str(caught.value)


@pytest.mark.parametrize(
    "command", [["circuit", "--target", "3"], ["atlas", "--targets", "3"], ["classes"]]
)
def test_an_image_folder_with_a_corrupt_png_is_refused_by_data(tmp_path, capsys, command):
    from PIL import Image

    from captum_groups.cli import main

    folder = tmp_path / "images" / "digits"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray((rng.random((8, 8)) * 255).astype("uint8")).save(folder / f"{i}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    options = ["--data", str(tmp_path / "images"), "--grayscale", "--image-size", "8"]
    options += ["--no-normalize", "--no-progress"]
    out = [] if command[0] == "classes" else ["--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as caught:
        main([*command, *options, *out])
    assert caught.value.code == 2
    error = capsys.readouterr().err
    assert "--data: cannot read the image" in error and "broken.png" in error


def test_the_batch_size_changes_nothing_beyond_rounding():
    from captum_groups import build_circuit

    model, (x, _) = digits_cnn(), load_digits("test")
    options = {"tau": 8, "k": 20, "n_steps": 16, "random_state": 0, "progress": False}
    circuits = [
        build_circuit(model, ["relu2", "relu3"], 3, x, batch_size=size, **options)
        for size in (256, 64, 17)
    ]
    first = circuits[0]
    for other in circuits[1:]:
        assert other.core_neurons == first.core_neurons
        assert {k: g.indices for k, g in other.nodes.items()} == {
            k: g.indices for k, g in first.nodes.items()
        }
        assert set(other.edges) == set(first.edges)
        for edge, weight in first.edges.items():
            assert other.edges[edge] == pytest.approx(weight, rel=1e-6)


def test_write_report_leaves_the_global_generators_where_they_were(tmp_path):
    import random

    import torch

    from captum_groups import build_circuit
    from captum_groups.report import write_report

    model, (x, _) = digits_cnn(), load_digits("test")
    circuit = build_circuit(model, ["relu3"], 3, x, tau=4, k=10, n_steps=8, progress=False)
    torch_state, numpy_state, python_state = (
        torch.get_rng_state(),
        np.random.get_state()[1].copy(),  # noqa: NPY002 (the user's global generator)
        random.getstate(),
    )
    write_report(model, circuit, x, tmp_path, max_images=20, n_draws=2, progress=False)
    assert torch.equal(torch_state, torch.get_rng_state())
    assert (numpy_state == np.random.get_state()[1]).all()  # noqa: NPY002
    assert python_state == random.getstate()


def test_what_the_report_and_atlas_pages_show(tmp_path, capsys):
    """Read as a user reads them: the command's timing is the page's, one group is '1 group',
    the fidelity legend sits outside the plots, the atlas thumbnails are whole images."""
    import base64
    import io
    import re

    from PIL import Image

    from captum_groups.cli import main
    from captum_groups.report import build_atlas
    from captum_groups.report.figures import fidelity_curves_figure

    out = tmp_path / "report"
    main(["circuit", "--target", "3", "--layers", "relu3", "--tau", "2", "--k", "5"]
         + ["--n-groups", "1", "--n-steps", "4", "--no-progress", "--out", str(out)])  # fmt: skip
    printed = re.search(r"report assembled in ([0-9.]+) s", capsys.readouterr().out).group(1)
    page = (out / "report.html").read_text()
    assert f"report assembled in {printed} s" in page
    assert "1 group in relu3" in page and "1 groups" not in page

    from captum_groups.circuits.fidelity import FidelityResult

    point = FidelityResult("mask", "all layers", 4, 1.0, 0.1, np.array([0.8, 0.9, 0.7]))
    figure = fidelity_curves_figure({"relu3": [point], "all layers": [point]}, "mask")
    assert figure.legends and not any(axis.get_legend() for axis in figure.axes)

    model, (x, _) = digits_cnn(), load_digits("test")

    atlas = build_atlas(model, ["relu3"], x, tmp_path / "atlas", targets=[0, 1, 8], tau=4,
                        k=10, n_steps=8, n_draws=2, random_state=0, progress=False)  # fmt: skip
    for row in atlas.rows:
        data = base64.b64decode(row["thumbnail"].split(",", 1)[1])
        thumbnail = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=float)
        assert thumbnail.shape == (8, 8) and thumbnail.std() > 40  # a digit, not a ramp


@pytest.mark.parametrize("kind", ["file", "dangling link"])
@pytest.mark.parametrize("command", [["circuit", "--target", "3"], ["atlas", "--targets", "3"]])
def test_an_out_that_is_no_folder_is_refused_by_out_before_any_work(
    tmp_path, capsys, kind, command
):
    from captum_groups.cli import main

    out = tmp_path / "out"
    if kind == "file":
        out.write_text("not a folder")
    else:
        out.symlink_to(tmp_path / "missing")
    with pytest.raises(SystemExit) as caught:
        main([*command, "--no-progress", "--out", str(out)])
    assert caught.value.code == 2
    error = capsys.readouterr().err
    assert "error: --out:" in error
    assert ("is a file" if kind == "file" else "symbolic link") in error
    assert not (tmp_path / "missing").exists()


def test_write_report_and_the_command_refuse_a_circuit_that_does_not_fit_alike(tmp_path, capsys):
    from captum_groups import Circuit, NeuronGroup
    from captum_groups.cli import main
    from captum_groups.report import write_report

    model, (x, _) = digits_cnn(), load_digits("test")
    wide = Circuit(3, ["relu3"], {"g": NeuronGroup("relu3", [99])}, {("g", "target"): 1.0})
    with pytest.raises(ParameterError) as caught:
        write_report(model, wide, x, tmp_path / "python", progress=False)
    assert caught.value.parameter == "circuit" and not (tmp_path / "python").exists()
    saved = tmp_path / "wide.json"
    saved.write_text(wide.to_json())
    with pytest.raises(SystemExit) as stopped:
        main(["report", str(saved), "--out", str(tmp_path / "command"), "--no-progress"])
    assert stopped.value.code == 2
    assert f"circuit: {caught.value}" in capsys.readouterr().err  # the same message
