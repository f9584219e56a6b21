"""Score fixed synthetic data with Brain-Score itself and store the numbers.

The tests in ``tests/neuro/test_neuro_parity.py`` compare
:class:`captum_groups.neuro.NeuralPredictivity` with what this script stored,
so CI needs no Brain-Score install. Brain-Score pins old NumPy, pandas,
xarray and scikit-learn, so it runs in an environment of its own::

    python -m venv /tmp/brainscore && . /tmp/brainscore/bin/activate
    pip install "numpy<2" "pandas<2" "xarray<2022.6" "scikit-learn<1.6" scipy tqdm \
        networkx pybtex peewee fire h5py netCDF4 boto3 PyYAML Pillow requests \
        result-caching "importlib-metadata<5" psutil gitpython
    pip install --no-deps brainscore-vision==2.4.2 brainscore-core==2.5.0 brainio
    python benchmarks/brainscore_fixtures.py

It writes ``data.npz`` (the synthetic features and recordings) and
``scores.json`` under ``tests/fixtures/brainscore/`` (Brain-Score's raw score
and its error over splits, ceiling and ceiled score of each data set, with
and without stratification by object). The scoring is
Brain-Score's own: the ``pls_cv`` metric (PLS, 10 splits of 90/10 over
stimuli, seed 1, median over sites per split, mean over splits), the
``internal_consistency`` ceiling (10 halvings of the repetitions, seed 1,
Spearman-Brown corrected) and ``explained_variance`` (r**2 / ceiling), as
``NeuralBenchmark`` combines them.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import numpy as np
from brainscore_core.supported_data_standards.brainio.assemblies import NeuroidAssembly
from brainscore_vision import load_ceiling, load_metric
from brainscore_vision.benchmark_helpers.neural_common import (
    average_repetition,
    explained_variance,
)

HERE = Path(__file__).parents[1] / "tests" / "fixtures" / "brainscore"
N_STIMULI, N_OBJECTS, N_FEATURES, N_SITES = 120, 12, 40, 16


def _synthetic() -> dict[str, dict[str, np.ndarray]]:
    """Data sets with a known relation between features and recordings."""
    rng = np.random.default_rng(2026)
    features = rng.normal(size=(N_STIMULI, N_FEATURES)) + 3.0
    objects = np.arange(N_STIMULI) % N_OBJECTS
    signal = features[:, :10] @ rng.normal(size=(10, N_SITES)) / np.sqrt(10)

    def noisy(repetitions: int, noise: float) -> np.ndarray:
        return 5.0 + signal[None] + noise * rng.normal(size=(repetitions, *signal.shape))

    constant_site = noisy(4, 1.0)
    constant_site[:, :, 0] = 7.0  # a silent site: its r and its ceiling are undefined
    return {
        "related": {"features": features, "recordings": noisy(4, 1.0), "objects": objects},
        "null": {
            "features": features,
            "recordings": rng.normal(size=(4, N_STIMULI, N_SITES)),
            "objects": objects,
        },
        "two_repetitions": {"features": features, "recordings": noisy(2, 0.8), "objects": objects},
        "five_repetitions": {
            "features": features,
            "recordings": noisy(5, 1.5),
            "objects": objects,
        },
        "constant_site": {"features": features, "recordings": constant_site, "objects": objects},
    }


def _stimulus_ids() -> list[str]:
    return [f"s{i:03d}" for i in range(N_STIMULI)]


def _model_assembly(features: np.ndarray, objects: np.ndarray) -> NeuroidAssembly:
    return NeuroidAssembly(
        features,
        coords={
            "stimulus_id": ("presentation", _stimulus_ids()),
            "object_name": ("presentation", [f"o{o:02d}" for o in objects]),
            "neuroid_id": ("neuroid", np.arange(features.shape[1])),
        },
        dims=["presentation", "neuroid"],
    )


def _neural_assembly(recordings: np.ndarray, objects: np.ndarray) -> NeuroidAssembly:
    repetitions = recordings.shape[0]
    return NeuroidAssembly(
        recordings.reshape(-1, recordings.shape[-1]),
        coords={
            "stimulus_id": ("presentation", _stimulus_ids() * repetitions),
            "object_name": ("presentation", [f"o{o:02d}" for o in objects] * repetitions),
            "repetition": ("presentation", np.repeat(np.arange(repetitions), N_STIMULI)),
            "neuroid_id": ("neuroid", np.arange(recordings.shape[-1])),
            "region": ("neuroid", ["IT"] * recordings.shape[-1]),
        },
        dims=["presentation", "neuroid"],
    )


def _score(data: dict[str, np.ndarray], stratified: bool) -> dict[str, object]:
    source = _model_assembly(data["features"], data["objects"])
    neural = _neural_assembly(data["recordings"], data["objects"])
    averaged = average_repetition(neural)
    # the rows Brain-Score splits are the averaged assembly's, in stimulus_id order:
    # the order of the arrays stored beside
    assert list(averaged["stimulus_id"].values) == _stimulus_ids()
    kwargs = {} if stratified else {"crossvalidation_kwargs": {"stratification_coord": None}}
    raw = load_metric("pls_cv", **kwargs)(source, averaged)
    ceiling = load_ceiling("internal_consistency")(neural)
    ceiled = explained_variance(raw, ceiling)
    return {
        "raw": float(raw.values),
        "error": float(raw.attrs["error"].values),
        "ceiling": float(ceiling.values),
        "ceiled": float(ceiled.values),
        "split_medians": [float(v) for v in raw.raw.median("neuroid").values],
    }


def main() -> None:
    data = _synthetic()
    shared = data["related"]
    np.savez_compressed(
        HERE / "data.npz",
        features=shared["features"],
        objects=shared["objects"],
        **{f"{name}/recordings": arrays["recordings"] for name, arrays in data.items()},
    )
    scores = {
        name: {
            ("stratified" if stratified else "unstratified"): _score(arrays, stratified)
            for stratified in (False, True)
        }
        for name, arrays in data.items()
    }
    packages = ("brainscore-vision", "brainscore-core", "scikit-learn")
    scores["_reference"] = {package: version(package) for package in packages}
    (HERE / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")


if __name__ == "__main__":
    main()
