"""The report of a circuit through the stream in Chromium: the tiny GPT's and the tiny ViT's
open with no console error, every picture loads, a card per head and MLP group drawn."""

from __future__ import annotations

import pytest

from captum_groups.circuits import build_stream_circuit
from captum_groups.datasets import load_digits
from captum_groups.digits_vit import digits_vit
from captum_groups.induction import induction_prompts, tiny_gpt
from captum_groups.report.stream_report import write_stream_report

from .test_report_browser import browser  # noqa: F401 (the fixture)


def _gpt(folder):
    model, (clean, corrupted, copyable) = tiny_gpt(), induction_prompts(24, random_state=7)
    circuit = build_stream_circuit(model, clean, "next_token", corrupted, positions=copyable,
                                   eap_steps=4, progress=False)  # fmt: skip
    return write_stream_report(model, circuit, clean, folder, corrupted, positions=copyable,
                               n_random=3, points=6)  # fmt: skip


def _vit(folder):
    model, (images, _) = digits_vit(), load_digits("test")
    circuit = build_stream_circuit(model, images, 3, eap_steps=4, random_state=0, progress=False)
    return write_stream_report(model, circuit, images, folder, n_random=3, points=6)


@pytest.mark.parametrize("make", [_gpt, _vit], ids=["tiny GPT", "tiny ViT"])
def test_the_stream_report_opens_with_no_console_error(browser, make, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By

    html, _ = make(tmp_path)
    browser.get_log("browser")  # what earlier pages logged
    browser.get(html.resolve().as_uri())
    images = browser.find_elements(By.TAG_NAME, "img")
    assert images and all(
        browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i)
        for i in images
    )
    cards = browser.find_elements(By.CSS_SELECTOR, "#nodes .card")
    assert cards and all(c.find_element(By.TAG_NAME, "h2").text for c in cards)
    rows = browser.find_elements(By.CSS_SELECTOR, "#faithfulness tr")
    assert len(rows) >= 5
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []


def test_the_atlas_of_circuits_through_the_stream_opens_with_no_console_error(
    browser,  # noqa: F811
    tmp_path,
):
    from selenium.webdriver.common.by import By

    from captum_groups.report import build_atlas

    images, _ = load_digits("test")
    atlas = build_atlas(digits_vit(), [], images, tmp_path, targets=[3], corrupt="resample",
                        eap_steps=4, n_draws=3, reports=True, progress=False)  # fmt: skip
    browser.get_log("browser")
    for page in (atlas.html, tmp_path / "classes" / "3" / "report.html"):
        browser.get(page.resolve().as_uri())
        assert browser.find_elements(By.TAG_NAME, "table")
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert errors == [], page
