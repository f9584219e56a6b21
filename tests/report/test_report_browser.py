"""The report in a real browser: the distribution's Chromium, driven by Selenium, from disk.

Needs ``apt-get install -y chromium chromium-driver`` and selenium (the ``dev``
extra). Where they are missing the test skips and says why, except when
``CAPTUM_GROUPS_REQUIRE_BROWSER=1`` (set by ``.ci/run``): then it fails.
With ``CAPTUM_GROUPS_SCREENSHOT=docs/report.png`` the screenshot is also
copied there (the one README shows).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from captum_groups import Circuit

CHROMIUM = Path(os.environ.get("CAPTUM_GROUPS_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CAPTUM_GROUPS_CHROMEDRIVER", "/usr/bin/chromedriver"))
REQUIRED = os.environ.get("CAPTUM_GROUPS_REQUIRE_BROWSER") == "1"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)
POSITIVE, NEGATIVE = (200, 55, 45), (44, 109, 178)  # the report's edge colours


def unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason}, and CAPTUM_GROUPS_REQUIRE_BROWSER=1 requires the browser test")
    pytest.skip(f"{reason}: install it with 'apt-get install -y chromium chromium-driver'")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        unavailable("selenium is not installed (pip install -e '.[dev]')")
    for program in (CHROMIUM, CHROMEDRIVER):
        if not program.exists():
            unavailable(f"no browser: {program} does not exist")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)  # with the driver path: Selenium Manager never runs
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def colour_of(element) -> tuple[int, ...]:
    text = element.value_of_css_property("stroke")
    return tuple(int(v) for v in text[text.index("(") + 1 : text.index(")")].split(",")[:3])


def test_report_in_chromium(browser, digits_report, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    out, _ = digits_report
    circuit = Circuit.from_json((out / "circuit.json").read_text())
    browser.get((out / "report.html").resolve().as_uri())

    nodes = browser.find_elements(By.CSS_SELECTOR, "#circuit .group-node")
    assert sorted(n.get_attribute("data-node") for n in nodes) == sorted(circuit.nodes)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#circuit .target-node")) == 1
    edges = browser.find_elements(By.CSS_SELECTOR, "#circuit .edge")
    drawn = {(e.get_attribute("data-lower"), e.get_attribute("data-upper")): e for e in edges}
    assert len(edges) == len(circuit.edges) and set(drawn) == set(circuit.edges)
    widths = {
        pair: float(e.value_of_css_property("stroke-width")[:-2]) for pair, e in drawn.items()
    }
    by_weight = sorted(circuit.edges, key=lambda pair: abs(circuit.edges[pair]))
    assert [widths[pair] for pair in by_weight] == sorted(widths.values())
    for pair, edge in drawn.items():
        assert colour_of(edge) == (POSITIVE if circuit.edges[pair] >= 0 else NEGATIVE)

    target_card = browser.find_element(By.CSS_SELECTOR, ".card[data-node='target']")
    assert target_card.is_displayed()
    shares = {n.get_attribute("data-node"): n for n in nodes}
    strongest = max(circuit.in_edges("target"), key=lambda n: abs(circuit.edges[(n, "target")]))
    card = browser.find_element(By.CSS_SELECTOR, f".card[data-node='{strongest}']")
    assert not card.is_displayed()
    shares[strongest].click()
    assert card.is_displayed() and not target_card.is_displayed()
    assert strongest in card.text and "share of the target" in card.text
    assert len(card.find_elements(By.TAG_NAME, "img")) >= 2  # exemplar crops and overlays

    other = next(node for node in circuit.nodes if node != strongest)
    other_card = browser.find_element(By.CSS_SELECTOR, f".card[data-node='{other}']")
    ActionChains(browser).move_to_element(shares[other]).perform()
    assert other_card.is_displayed() and not card.is_displayed()  # hovering shows a card
    ActionChains(browser).move_to_element(browser.find_element(By.TAG_NAME, "h1")).perform()
    assert card.is_displayed() and not other_card.is_displayed()  # the clicked one stays

    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert all(name.startswith(("data:", "file:")) for name in resources), resources
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors

    screenshot = tmp_path / "report.png"
    assert browser.save_screenshot(str(screenshot))
    pixels = np.asarray(Image.open(screenshot).convert("RGB")).astype(float)
    assert pixels.shape[0] >= 600 and pixels.std() > 20  # not blank
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500  # pictures, not flat colour
    red_pixels = (np.abs(pixels - POSITIVE).max(axis=-1) < 40).sum()
    assert red_pixels > 100  # the positive edges are on screen
    if os.environ.get("CAPTUM_GROUPS_SCREENSHOT"):
        shutil.copy(screenshot, os.environ["CAPTUM_GROUPS_SCREENSHOT"])


def test_a_900_px_window_shows_the_whole_graph_and_the_overlap_mark(browser, digits_report):
    from selenium.webdriver.common.by import By

    out, _ = digits_report
    circuit = Circuit.from_json((out / "circuit.json").read_text())
    browser.set_window_size(900, 1000)
    try:
        browser.get((out / "report.html").resolve().as_uri())
        width = browser.execute_script("return document.documentElement.clientWidth")
        graph = browser.find_element(By.ID, "circuit")
        box = browser.execute_script(
            "const r = arguments[0].getBoundingClientRect(); return [r.left, r.right, r.width];",
            graph,
        )
        assert 0 <= box[0] and box[1] <= width, (box, width)  # nothing cut off on the right
        overflow = browser.execute_script(
            "const g = document.querySelector('.graph'); return g.scrollWidth - g.clientWidth;"
        )
        assert overflow <= 1  # no horizontal scrolling inside the graph either
        for node in browser.find_elements(By.CSS_SELECTOR, "#circuit .group-node"):
            right = browser.execute_script(
                "return arguments[0].getBoundingClientRect().right", node
            )
            assert right <= width
        shared = {
            node
            for node, group in circuit.nodes.items()
            for other in circuit.node_ids(group.layer)
            if other != node and set(group.indices) & set(circuit.nodes[other].indices)
        }
        marked = {
            n.get_attribute("data-node")
            for n in browser.find_elements(By.CSS_SELECTOR, "#circuit .group-node.overlapping")
        }
        assert marked == shared
        note = browser.find_elements(By.ID, "overlap-note")
        assert bool(note) == bool(shared)
        if shared:
            assert note[0].is_displayed() and "do not add up" in note[0].text
            dashes = browser.execute_script(
                "return getComputedStyle(arguments[0]).strokeDasharray",
                browser.find_element(By.CSS_SELECTOR, "#circuit .group-node.overlapping rect"),
            )
            assert dashes not in ("none", "")
    finally:
        browser.set_window_size(1400, 1000)
