"""Every Python block of the documentation (README.md, CONTRIBUTING.md and the pages of
docs/) runs as pasted: each in a fresh namespace, in an empty folder, loading what it uses
itself (the embedded digits CNN and data)."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted(p for p in (ROOT / "docs").rglob("*.md") if "_build" not in p.parts)
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *DOCS]
NAMED_BLOCKS = [
    (page.relative_to(ROOT).as_posix(), block)
    for page in PAGES
    for block in re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.S)
]
BLOCKS = [block for _, block in NAMED_BLOCKS]


def test_docs_have_python_blocks_and_none_imports_a_private_module():
    assert len(BLOCKS) >= 10
    private = [line for block in BLOCKS for line in block.splitlines()
               if re.match(r"\s*(from|import) captum_groups\S*\._", line)]  # fmt: skip
    assert private == []


@pytest.mark.parametrize(
    "number", range(len(BLOCKS)), ids=[f"{page}-{n}" for n, (page, _) in enumerate(NAMED_BLOCKS)]
)
def test_docs_block_runs_as_pasted(number, tmp_path, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    page, block = NAMED_BLOCKS[number]
    code = compile(block, f"{page} python block {number}", "exec")
    exec(code, {"__name__": f"readme_block_{number}"})
