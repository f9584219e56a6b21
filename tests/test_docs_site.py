"""The documentation site covers the public API: every name a public module exports has a
reference page (an autosummary entry) and an example; the pages the guide promises exist.
The site itself is built by ``.ci/run`` with warnings as errors."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
API = ROOT / "docs" / "api"

PUBLIC_MODULES = sorted(
    ["captum_groups"]
    + [f"captum_groups.{page.stem}" for page in API.glob("*.rst") if page.stem != "index"]
)


def _listed(page: Path) -> set[str]:
    """The names an API page's autosummary lists."""
    text = page.read_text(encoding="utf-8")
    names: set[str] = set()
    for block in re.findall(r"\.\. autosummary::\n((?:   .*\n|\n)+)", text):
        names.update(line.strip() for line in block.splitlines() if line.strip()
                     and not line.strip().startswith(":"))  # fmt: skip
    return names


def _documented() -> dict[int, str]:
    """Each documented object, by identity: the page that lists it."""
    found: dict[int, str] = {}
    for page in API.glob("*.rst"):
        module = "captum_groups" if page.stem == "index" else f"captum_groups.{page.stem}"
        imported = importlib.import_module(module)
        for name in _listed(page):
            found[id(getattr(imported, name))] = f"{module}.{name}"
    return found


def test_every_subpackage_with_public_names_has_an_api_page():
    import pkgutil

    import captum_groups

    packages = {
        m.name
        for m in pkgutil.iter_modules(captum_groups.__path__, "captum_groups.")
        if not m.name.split(".")[-1].startswith("_")
    }
    assert packages <= set(PUBLIC_MODULES), sorted(packages - set(PUBLIC_MODULES))


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_every_exported_name_has_a_reference_page(module):
    documented = _documented()
    imported = importlib.import_module(module)
    missing = [name for name in imported.__all__ if id(getattr(imported, name)) not in documented]
    assert missing == [], f"{module} exports {missing} without an API page"


def _has_example(obj: object) -> bool:
    """An Examples section in the docstring, or, for a class, in one of its own methods'."""
    if "Examples\n" in (inspect.getdoc(obj) or ""):
        return True
    if inspect.isclass(obj):
        return any(
            "Examples\n" in (inspect.getdoc(member) or "")
            for name, member in vars(obj).items()
            if not name.startswith("_") or name == "__call__"
        )
    return False


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_every_exported_class_and_function_has_an_example(module):
    imported = importlib.import_module(module)
    missing = [
        name
        for name in imported.__all__
        if (inspect.isclass(getattr(imported, name)) or inspect.isfunction(getattr(imported, name)))
        and not _has_example(getattr(imported, name))
    ]
    assert missing == [], f"{module}: {missing} have no Examples section"


def test_the_guide_has_a_page_per_job_and_the_index_lists_them():
    guide = {page.stem for page in (ROOT / "docs" / "guide").glob("*.md")}
    jobs = {"attribution", "finding_groups", "circuits", "report_and_cli", "scaling_out",
            "brains", "transformers", "bean"}  # fmt: skip
    assert jobs <= guide
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    assert all(f"guide/{page}" in index for page in guide)
    for page in ("glossary", "changelog", "contributing", "api/index", "tutorials"):
        assert (
            page in index
            and (ROOT / "docs" / page)
            .with_suffix(".rst" if page == "api/index" else ".md")
            .exists()
        )


def test_readme_is_a_front_page_of_at_most_250_lines_with_the_set_up_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    assert 'pip install -e ".[dev]" && captum-groups circuit --target 3 --out report' in readme
    assert "apt-get update && apt-get install -y chromium chromium-driver" in readme
    assert "sphinx-build -W --keep-going -b html docs docs/_build/html" in readme
