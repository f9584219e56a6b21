"""``captum-groups circuit --corrupt``: a transformer's circuit through the stream from the
command line, for the tiny GPT (token ids, next token) and the tiny ViT (a digit class)."""

from __future__ import annotations

import json

import pytest
import torch

from captum_groups import Circuit
from captum_groups.cli import main
from captum_groups.induction import induction_prompts

FAST = ["--n-steps", "4", "--eap-steps", "2", "--n-draws", "3", "--no-progress"]


@pytest.fixture(scope="module")
def token_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tokens")
    clean, corrupted, _ = induction_prompts(24, random_state=7)
    torch.save(clean, folder / "tokens.pt")
    torch.save(corrupted, folder / "corrupted.pt")
    return folder


@pytest.fixture(scope="module")
def gpt_report(token_files):
    out = token_files / "gpt"
    argv = ["circuit", "--model", "captum_groups.induction:tiny_gpt", "--data",
            str(token_files / "tokens.pt"), "--target", "next_token", "--corrupt",
            str(token_files / "corrupted.pt"), "--out", str(out), *FAST]  # fmt: skip
    assert main(argv) == 0
    return out


@pytest.fixture(scope="module")
def vit_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("vit") / "report"
    argv = ["circuit", "--model", "captum_groups.digits_vit:digits_vit", "--target", "3",
            "--corrupt", "resample", "--out", str(out), *FAST]  # fmt: skip
    assert main(argv) == 0
    return out


def test_the_tiny_gpt_circuit_is_built_reported_and_saved(gpt_report, token_files):
    circuit = Circuit.from_json((gpt_report / "circuit.json").read_text())
    assert circuit.target == "next_token" and circuit.params["procedure"] == "EAP-IG"
    assert circuit.settings.corrupt == str(token_files / "corrupted.pt")
    page = (gpt_report / "report.html").read_text()
    assert "each position&#39;s next token" in page or "each position's next token" in page
    assert 'alt="a1.h0 attention pattern"' in page  # a card per head, its pattern drawn
    assert "Where it is most active" in page  # token contexts, shaded
    curve = json.loads((gpt_report / "faithfulness.json").read_text())
    assert curve["total"] == 110 and curve["recovered"][-1] == pytest.approx(1.0, abs=1e-4)


def test_mlp_neurons_are_grouped_neurflow_s_way_on_request(token_files):
    out = token_files / "grouped"
    argv = ["circuit", "--model", "captum_groups.induction:tiny_gpt", "--data",
            str(token_files / "tokens.pt"), "--target", "next_token", "--corrupt", "shuffle",
            "--mlp-groups", "neurflow", "--tau", "4", "--k", "10", "--n-groups", "2",
            "--random-state", "0", "--out", str(out), *FAST]  # fmt: skip
    assert main(argv) == 0
    circuit = Circuit.from_json((out / "circuit.json").read_text())
    assert circuit.settings.mlp_groups == "neurflow" and circuit.settings.eap_steps == 2
    assert {"m0.g0", "m0.g1", "m0.rest", "m1.g0", "m1.g1", "m1.rest"} <= set(circuit.nodes)
    assert len(circuit.nodes["m1.rest"]) == 128 - 4


def test_the_tiny_vit_circuit_of_a_class_is_built_and_reported(vit_report):
    circuit = Circuit.from_json((vit_report / "circuit.json").read_text())
    assert circuit.target == 3 and circuit.settings.corrupt == "resample"
    page = (vit_report / "report.html").read_text()
    assert "class 3" in page and "Where it is most active" not in page  # images: no text
    curve = json.loads((vit_report / "faithfulness.json").read_text())
    middle = len(curve["sizes"]) // 2 + 2
    assert curve["recovered"][middle] > curve["random_ci"][middle][1]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--target", "3", "--corrupt", "nowhere.pt"], "--corrupt: 'nowhere.pt' is not a file"),
        (["--target", "three"], "neither a class index nor 'next_token'"),
        (["--target", "3", "--corrupt", "shuffle"], "--corrupt: corrupt='shuffle' reorders"),
    ],
)
def test_bad_options_are_refused_by_name(options, message, tmp_path, capsys):
    argv = ["circuit", "--model", "captum_groups.digits_vit:digits_vit", *options,
            "--out", str(tmp_path / "out"), *FAST]  # fmt: skip
    with pytest.raises(SystemExit):
        main(argv)
    assert message in capsys.readouterr().err


def test_corrupted_inputs_of_another_shape_are_refused(token_files, tmp_path, capsys):
    torch.save(torch.zeros(3, 20, dtype=torch.long), tmp_path / "short.pt")
    argv = ["circuit", "--model", "captum_groups.induction:tiny_gpt", "--data",
            str(token_files / "tokens.pt"), "--target", "next_token", "--corrupt",
            str(tmp_path / "short.pt"), "--out", str(tmp_path / "out"), *FAST]  # fmt: skip
    with pytest.raises(SystemExit):
        main(argv)
    assert "one corrupted input per example of --data" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["gpt", "vit"])
def test_the_atlas_of_a_transformer_holds_a_circuit_through_the_stream_per_class(
    model, token_files, tmp_path
):
    out = tmp_path / "atlas"
    source = (
        ["--model", "captum_groups.induction:tiny_gpt", "--data", str(token_files / "tokens.pt"),
         "--corrupt", "shuffle"]
        if model == "gpt"
        else ["--model", "captum_groups.digits_vit:digits_vit", "--corrupt", "resample"]
    )  # fmt: skip
    argv = ["atlas", *source, "--targets", "3", "5", "--reports", "--out", str(out), *FAST]
    assert main(argv) == 0
    index = json.loads((out / "atlas.json").read_text())
    assert [row["target"] for row in index["classes"]] == [3, 5] and not index["failures"]
    for row in index["classes"]:
        faithful = row["faithful"]
        assert 0 < faithful["edges_kept"] <= 110 and faithful["recovered"] >= 0.8 - 1e-6
        circuit = Circuit.from_json((out / "classes" / str(row["target"]) / "circuit.json")
                                    .read_text())  # fmt: skip
        assert circuit.target == row["target"] and circuit.params["procedure"] == "EAP-IG"
        assert (out / "classes" / str(row["target"]) / "report.html").exists()
    built = (out / "classes" / "3" / "circuit.json").stat().st_mtime_ns
    assert main([*argv, "--resume"]) == 0  # kept, not rebuilt
    assert (out / "classes" / "3" / "circuit.json").stat().st_mtime_ns == built
    assert "Circuits through the residual stream" in (out / "atlas.html").read_text()


def test_the_report_command_redraws_a_circuit_through_the_stream(vit_report, tmp_path):
    argv = ["report", str(vit_report / "circuit.json"), "--model",
            "captum_groups.digits_vit:digits_vit", "--out", str(tmp_path), "--n-draws", "3",
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    again = json.loads((tmp_path / "faithfulness.json").read_text())
    before = json.loads((vit_report / "faithfulness.json").read_text())
    assert again["recovered"] == pytest.approx(before["recovered"], abs=1e-5)  # same inputs


def test_neurflow_tools_refuse_a_circuit_through_the_stream_by_name(vit_report, tmp_path):
    from captum_groups import ParameterError, debug_image
    from captum_groups.datasets import load_digits
    from captum_groups.digits_vit import digits_vit
    from captum_groups.report import write_report

    circuit = Circuit.from_json((vit_report / "circuit.json").read_text())
    images, _ = load_digits("test")
    with pytest.raises(ParameterError, match="debug_image reads NeurFlow's circuits"):
        debug_image(digits_vit(), circuit, images[0])
    with pytest.raises(ParameterError, match="write_stream_report"):
        write_report(digits_vit(), circuit, images, tmp_path, progress=False)
