"""Sphinx configuration of captum-groups' documentation site.

Build it with ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (README's
command; CI runs it). The tutorials are copied in from ``tutorials/`` and rendered
with the outputs they were saved with: they are not executed again.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import captum_groups

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

project = "captum-groups"
author = "the captum-groups developers"
copyright = "2026, the captum-groups developers"  # noqa: A001 (Sphinx's name)
release = version = captum_groups.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_nb",
]

# The notebooks are rendered as saved (their outputs are the pictures); CI runs them
# once already, as tests.
nb_execution_mode = "off"
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}

autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()

# Every explicit cross-reference must resolve. The docs build offline (no intersphinx
# inventories can be fetched), so references to other projects' objects are left as
# plain names: those, and only those, are ignored.
nitpicky = True
nitpick_ignore_regex = [
    (
        r"py:.*",
        r"(torch|captum|sklearn|numpy|np|networkx|nx|matplotlib|scipy|ray|rsatoolbox"
        r"|lucent|PIL|jsonschema|argparse|collections|typing|pathlib|concurrent|os|io)(\..*)?",
    ),
    (r"py:.*", r"(Tensor|nn\.Module|Module|Dataset|DataLoader|Figure|Axes|Path|DiGraph)"),
]

html_theme = "pydata_sphinx_theme"
html_title = "captum-groups"
html_static_path: list[str] = []
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}
html_context = {"default_mode": "light"}  # the theme logs an error on a first visit without one

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
templates_path = ["_templates"]


def _copy_tutorials() -> None:
    """The tutorial notebooks, copied beside the pages that list them (git ignores the copy)."""
    target = HERE / "tutorials"
    target.mkdir(exist_ok=True)
    for notebook in sorted((ROOT / "tutorials").glob("*.ipynb")):
        shutil.copyfile(notebook, target / notebook.name)


_copy_tutorials()


def _documented_names() -> dict[int, str]:
    """Each public object's documented name (its subpackage's path, or the root's), by
    identity: a reference by any path that imports the same object resolves to its page."""
    import importlib

    names: dict[int, str] = {}
    for page in sorted((HERE / "api").glob("*.rst")):
        module = f"captum_groups.{page.stem}" if page.stem != "index" else "captum_groups"
        members = ["ParameterError", "layer_activations"] if page.stem == "index" else None
        imported = importlib.import_module(module)
        for name in members or imported.__all__:
            names.setdefault(id(getattr(imported, name)), f"{module}.{name}")
    return names


def _object_at(path: str) -> object | None:
    """The object a dotted path names (module attributes, then class attributes), or None."""
    import importlib

    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            found = getattr(found, part, None)
            if found is None:
                return None
        return found
    return None


def _resolve_alias(app, env, node, contnode):  # type: ignore[no-untyped-def]
    """Resolve ``captum_groups.X`` by any import path (root re-export, defining module)."""
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py":
        return None
    if not target.startswith("captum_groups"):
        # a short name, relative to the class or module whose docstring holds it
        context = [node.get("py:module"), node.get("py:class")]
        scope = ".".join(part for part in context if part)
        candidates = [f"{scope}.{target}", f"{node.get('py:module')}.{target}"]
        target = next((c for c in candidates if _object_at(c) is not None), "")
        if not target.startswith("captum_groups"):
            return None
    parent, _, attribute = target.rpartition(".")
    found = _object_at(target)
    documented = DOCUMENTED.get(id(found)) if found is not None else None
    if documented is None and parent:
        owner = DOCUMENTED.get(id(_object_at(parent)))
        documented = f"{owner}.{attribute}" if owner else None
    if documented is None or documented == node.get("reftarget"):
        return None
    domain = env.get_domain("py")
    return domain.resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], documented, node, contnode
    ) or domain.resolve_xref(env, node["refdoc"], app.builder, "obj", documented, node, contnode)


DOCUMENTED = _documented_names()


def _skip_foreign_members(app, what, name, obj, skip, options):  # type: ignore[no-untyped-def]
    """Leave out members a class inherits from other projects (scikit-learn's metadata
    routing ``set_*_request``, Captum's methods): their pages are those projects'."""
    module = getattr(obj, "__module__", None) or ""
    if what == "class" and callable(obj) and not module.startswith("captum_groups"):
        return True
    return skip


def setup(app):  # type: ignore[no-untyped-def]
    app.connect("missing-reference", _resolve_alias)
    app.connect("autodoc-skip-member", _skip_foreign_members)
