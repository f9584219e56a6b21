"""Score fixed data with Kornblith et al.'s own CKA code and store the numbers.

``tests/neuro/test_neuro_parity.py`` compares :func:`captum_groups.neuro.cka`
with what this script stored. The reference is ``feature_space_linear_cka``
of the notebook of Kornblith, Norouzi, Lee & Hinton (ICML 2019), published in
google-research's ``representation_similarity`` folder; it is not copied
here. Save its functions (``_debiased_dot_product_similarity_helper`` and
``feature_space_linear_cka``) as a module and pass its path::

    python benchmarks/cka_fixtures.py path/to/reference_cka.py

It writes ``tests/fixtures/cka/cka.npz`` (the representations) and
``tests/fixtures/cka/scores.json`` (the reference's linear and debiased CKA
of each pair: the same data at offsets 0 to 1e6, stored in float64 and
float32; the reference runs on the float64 values of the stored arrays).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parents[1] / "tests" / "fixtures" / "cka"
OFFSETS = (0.0, 1e2, 1e4, 1e6)


def _reference(path: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("reference_cka", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.feature_space_linear_cka


def main(path: str) -> None:
    reference = _reference(path)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 8))
    y = x[:, :4] @ rng.normal(size=(4, 6)) + 0.5 * rng.normal(size=(50, 6))
    arrays, scores = {}, {}
    for dtype in ("float64", "float32"):
        for offset in OFFSETS:
            name = f"{dtype}/{offset:g}"
            arrays[f"{name}/x"] = (x + offset).astype(dtype)
            arrays[f"{name}/y"] = (3 * y + offset).astype(dtype)
            first, second = (arrays[f"{name}/{s}"].astype(np.float64) for s in "xy")
            scores[name] = {
                "linear": float(reference(first, second)),
                "debiased": float(reference(first, second, debiased=True)),
            }
    HERE.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(HERE / "cka.npz", **arrays)
    (HERE / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
