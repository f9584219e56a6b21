"""Every Python block of README.md runs as pasted: each in a fresh namespace, in an empty
folder, loading what it uses itself (the embedded digits CNN and data)."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_has_python_blocks_and_none_imports_a_private_module():
    assert len(BLOCKS) >= 10
    private = [line for block in BLOCKS for line in block.splitlines()
               if re.match(r"\s*(from|import) captum_groups\S*\._", line)]  # fmt: skip
    assert private == []


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_readme_block_runs_as_pasted(number, tmp_path, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    code = compile(BLOCKS[number], f"README.md python block {number}", "exec")
    exec(code, {"__name__": f"readme_block_{number}"})
