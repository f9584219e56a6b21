"""The atlas: the circuits of every class of a model, across processes and machines.

:func:`build_atlas` routes the data once (each image's predicted class,
data-parallel), then builds each class's circuit on its own images, spread
over the workers of a backend (:mod:`captum_groups.distributed.backends`:
this process, the ranks of a ``torchrun`` job, or a Ray cluster). It writes
one folder per class and an index::

    OUT/classes/<class>/circuit.json   the circuit (written last: it marks the class done)
    OUT/classes/<class>/summary.json   the class's row of the index
    OUT/classes/<class>/report.html    its report (with ``reports=True``)
    OUT/classes/<class>/failed.json    why the class failed, if it did
    OUT/atlas.json, OUT/atlas.html     the index: every class, and the groups classes share

A class's circuit equals :func:`~captum_groups.build_circuit` on the same
data (the routing predicts in the build's own fixed groups), whichever
backend and however many workers built it. A class that fails is reported
with its error and the others are kept; ``resume=True`` keeps the classes
already written from the same inputs (settings of the build and the report,
layers, class, the model's weights and the class's images: see
``atlas_state``), adds a report to kept classes where ``reports`` asks
for one, and builds the rest. One run at a time writes into a folder: a
second is refused while the first holds ``OUT/.atlas.lock``.

Groups are *shared* between classes when their neuron sets in the same layer
overlap by at least :data:`OVERLAP` (Jaccard index): the atlas lists each set
of classes that share a group, with the neurons common to them.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from .._model.guards import guarded_call
from .._validation.checks import Count, validate
from .._validation.errors import ParameterError
from .._validation.schemas import ATLAS_ROW, check, read_json
from ..circuits import (
    TARGET,
    Circuit,
    CircuitSettings,
    ClassRouting,
    FaithfulnessCurve,
    build_circuit,
    build_stream_circuit,
    faithfulness_curve,
    stream_inputs,
)
from ..circuits._passes import model_device_dtype
from ..circuits.fidelity import masking_fidelity
from ..circuits.requests import check_precision
from ..data import Data, examples_at, n_examples
from ..distributed.backends import Workload, check_workload, make_backend
from ..files import check_folder_path, write_atomic
from ..groups import resolve_layer
from .atlas_index import OVERLAP, class_folder, shared_groups, write_index
from .atlas_state import FolderLock, provenance
from .images import array_uri
from .settings import ReportSettings
from .stream_report import LEVEL, curve_sizes, write_stream_report
from .write import write_report

__all__ = ["OVERLAP", "AtlasResult", "build_atlas", "shared_groups"]

REPORT_ONLY = sorted(
    set(ReportSettings.__dataclass_fields__) - set(CircuitSettings.__dataclass_fields__)
)
"""Keyword options of :func:`build_atlas` that set its ReportSettings (the others, its
CircuitSettings)."""


@dataclass(frozen=True)
class ClassJob:
    """One class's work: what a worker needs besides its model and data (small, picklable)."""

    target: int
    images: tuple[int, ...]
    layers: tuple[str, ...]
    settings: CircuitSettings
    report: ReportSettings
    reports: bool
    out: str
    resume: bool


@dataclass(frozen=True)
class AtlasResult:
    """What :func:`build_atlas` wrote.

    Attributes
    ----------
    rows : list of dict
        One per class built (or kept on resume): images, groups per layer,
        edges, whole-circuit masking and retaining fidelity, time, memory.
    failures : list of dict
        ``{"target": class, "error": "Type: message"}`` for each class that failed.
    shared : list of dict
        The groups classes share (see ``shared_groups``).
    html, index : Path
        ``atlas.html`` and ``atlas.json``.
    seconds : float
        The job's time on the main process, from the workers being ready (with
        their models and data) to the index written.

    Examples
    --------
    >>> import tempfile
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> x, _ = load_digits("test")
    >>> atlas = build_atlas(digits_cnn(), ["relu3"], x, tempfile.mkdtemp(), targets=[3],
    ...                     tau=4, k=10, n_groups=2, n_steps=8, n_draws=2, progress=False)
    >>> [row["target"] for row in atlas.rows], atlas.failures, atlas.index.name
    ([3], [], 'atlas.json')
    """

    rows: list[dict]
    failures: list[dict]
    shared: list[dict]
    html: Path
    index: Path
    seconds: float


def _finished(folder: Path, expected: dict) -> tuple[dict, Circuit] | None:
    """The row and circuit of a class already built from the same inputs (``expected``,
    its ``atlas_state.provenance``), or None if it must be built: a file missing,
    damaged or incomplete, or made from anything else."""
    try:
        circuit = Circuit.from_json((folder / "circuit.json").read_bytes())
        row = read_json((folder / "summary.json").read_bytes(), "summary.json")
        check(row, ATLAS_ROW, "summary.json")
    except (OSError, ValueError):
        return None
    same = (
        row.get("provenance") == expected
        and row["target"] == circuit.target == expected["target"]
        # a circuit through the stream chose its layers itself (the hook points)
        and (list(circuit.layers) == expected["layers"] or not expected["layers"])
        and circuit.settings is not None
        and circuit.settings.to_dict() == expected["settings"]
    )
    return (row, circuit) if same else None


def _evaluation_ids(job: ClassJob, data: Data) -> list[int]:
    """The images the class's fidelity is measured on: its own (or the first ones)."""
    if job.images:
        return list(job.images[: job.report.max_images])
    return list(range(min(job.report.max_images, n_examples(data) or job.report.max_images)))


def _fidelity(model: nn.Module, circuit: Circuit, images: torch.Tensor, job: ClassJob) -> dict:
    """The whole circuit masked and retained at once, against random neurons."""
    found = {}
    for mode, key in (("mask", "masked"), ("retain", "retained")):
        result = masking_fidelity(
            model,
            circuit,
            images,
            mode=mode,
            per_layer=False,
            n_draws=job.report.n_draws,
            random_state=job.settings.random_state,
        )["all layers"]
        found[key] = {
            "baseline": result.baseline,
            "circuit": result.circuit,
            "random": result.random_mean,
            "random_ci": list(result.random_ci),
        }
    return found


def _thumbnail(circuit: Circuit, data: Data, job: ClassJob) -> str | None:
    """The whole image of the top exemplar of the group that feeds the target most (or
    the class's first image), as a PNG data URI: a crop of a small image, scaled up, is
    a few pixels that show no digit (blank or a grey ramp)."""
    into = circuit.in_edges(TARGET)
    items = circuit.exemplars.get(max(into, key=lambda n: abs(into[n]))) if into else None
    index = items[0][0] if items else (job.images[0] if job.images else None)
    if index is None:
        return None
    image = examples_at(data, [index])[0].float()
    image = (image - image.min()) / (image.max() - image.min()).clamp_min(1e-12)
    return array_uri(image.permute(1, 2, 0).cpu().numpy())


def _provenance(model: nn.Module, data: Data, job: ClassJob) -> dict:
    return provenance(
        model,
        job.target,
        job.layers,
        job.images,
        n_examples(data),
        job.settings.to_dict(),
        job.report.to_dict(),
    )


@dataclass(frozen=True)
class _StreamClass:
    """A class's circuit through the stream, the inputs it was built on and its curve."""

    circuit: Circuit
    clean: Tensor
    corrupted: Tensor
    positions: Tensor | None
    curve: FaithfulnessCurve


def _stream_class(model: nn.Module, data: Data, job: ClassJob) -> tuple[dict, _StreamClass]:
    """A class's circuit through the stream (on every example: those predicted as the class
    against the others resampled as corrupted inputs), and the smallest of its circuits that
    keeps 80% of the clean - corrupted difference, against random ones."""
    inputs = examples_at(data, list(range(n_examples(data) or 0)))
    clean, corrupted, positions, _ = stream_inputs(
        model, inputs, job.target, None, None, job.settings
    )
    circuit = build_stream_circuit(model, clean, job.target, corrupted, positions=positions,
                                   settings=job.settings, progress=False)  # fmt: skip
    total = len(circuit.stream_edges())
    curve = faithfulness_curve(
        model, circuit, clean, corrupted, positions, curve_sizes(total), job.report.n_draws,
        job.settings.random_state,
    )  # fmt: skip
    size = curve.smallest(LEVEL) or total
    point = curve.sizes.index(size)
    faithful = {
        "edges_kept": size,
        "share": size / total,
        "recovered": curve.recovered[point],
        "random": curve.random_mean[point],
        "random_ci": list(curve.random_ci[point]),
    }
    built = _StreamClass(circuit, clean, corrupted, positions, curve)
    return {"images": len(clean), "faithful": faithful}, built


def _build_class(model: nn.Module, data: Data, job: ClassJob, folder: Path, origin: dict) -> dict:
    started = time.perf_counter()
    built = None
    if job.settings.corrupt is not None:
        found, built = _stream_class(model, data, job)
        circuit = built.circuit
    else:
        routing = None
        if job.images:
            routing = ClassRouting()
            routing.update(torch.tensor(job.images), torch.full((len(job.images),), job.target))
        circuit = build_circuit(
            model, job.layers, job.target, data, settings=job.settings, routing=routing,
            progress=False,
        )  # fmt: skip
        images = examples_at(data, _evaluation_ids(job, data))
        found = {"images": circuit.params.get("images"), **_fidelity(model, circuit, images, job)}
    row = {
        "target": job.target,
        **found,
        "groups": {layer: len(circuit.node_ids(layer)) for layer in circuit.layers},
        "edges": len(circuit.edges),
        "thumbnail": _thumbnail(circuit, data, job),
        "report": job.reports,
        "seconds": time.perf_counter() - started,
        "worker": os.getpid(),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "provenance": origin,
    }
    write_atomic(folder / "summary.json", json.dumps(row, indent=1))
    if job.reports:
        _write_class_report(model, data, job, folder, circuit, built)
    else:
        write_atomic(folder / "circuit.json", circuit.to_json())
    return row


def _write_class_report(
    model: nn.Module,
    data: Data,
    job: ClassJob,
    folder: Path,
    circuit: Circuit,
    built: _StreamClass | None = None,
) -> None:
    """A class's report; a circuit through the stream's from the inputs and curve its row
    was computed with, when there are (else they are made again)."""
    if job.settings.corrupt is None:
        write_report(model, circuit, data, folder, settings=job.report, progress=False)
    elif built is not None:
        write_stream_report(model, circuit, built.clean, folder, built.corrupted,
                            positions=built.positions, curve=built.curve)  # fmt: skip
    else:
        inputs = examples_at(data, list(range(n_examples(data) or 0)))
        write_stream_report(model, circuit, inputs, folder, n_random=job.report.n_draws)


def _add_report(
    model: nn.Module, data: Data, job: ClassJob, folder: Path, row: dict, circuit: Circuit
) -> dict:
    """A kept class's report, written now that ``reports`` asks for it (its row says so)."""
    row = {**row, "report": True}
    write_atomic(folder / "summary.json", json.dumps(row, indent=1))
    _write_class_report(model, data, job, folder, circuit)
    return row


def atlas_class(model: nn.Module, data: Data, job: ClassJob) -> dict:
    """One class of the atlas, on a worker: built and written, kept (on resume), or failed."""
    folder = class_folder(job.out, job.target)
    folder.mkdir(parents=True, exist_ok=True)
    origin = _provenance(model, data, job)
    if job.resume:
        kept = _finished(folder, origin)
        if kept is not None and (not job.reports or (folder / "report.html").exists()):
            return kept[0]
        if kept is not None:  # built before without its report, now asked for
            return _add_report(model, data, job, folder, *kept)
    # the marker of a finished class goes first, so a class cut off midway is not done
    for marker in ("circuit.json", "failed.json"):
        (folder / marker).unlink(missing_ok=True)
    try:
        return _build_class(model, data, job, folder, origin)
    except Exception as error:  # a class's failure is reported; the others go on
        failure = {"target": job.target, "error": f"{type(error).__name__}: {error}"}
        write_atomic(folder / "failed.json", json.dumps(failure))
        return failure


def _clear(out: Path) -> None:
    """Before a fresh (not resumed) atlas: no class of an earlier run counts as done."""
    for pattern in ("classes/*/circuit.json", "classes/*/failed.json", "classes/*/summary.json"):
        for path in out.glob(pattern):
            path.unlink(missing_ok=True)


def _count_done(out: Path, targets: Sequence[int]) -> Callable[[], int]:
    """A probe of how many of the classes are finished (built or failed), from their files."""

    def count() -> int:
        return sum(
            (class_folder(out, t) / "circuit.json").exists()
            or (class_folder(out, t) / "failed.json").exists()
            for t in targets
        )

    return count


def _check_request(
    workload: Workload, layers: Sequence[str], targets: Sequence[int] | None, stream: bool
) -> int:
    """What the atlas is asked for, checked before any work (the routing pass, a worker,
    Ray): layers that exist (none for circuits through the stream), targets that are
    distinct outputs of the model, and a precision the circuits can be built in. Returns
    the model's number of outputs."""
    if stream:
        layers = ()
    elif isinstance(layers, (str, nn.Module)) or not isinstance(layers, Sequence) or not layers:
        raise ParameterError(
            "layers",
            f"layers must be a non-empty sequence of layer names, lowest first, got {layers!r}"
            + (f" (for one layer: [{layers!r}])" if isinstance(layers, str) else ""),
        )
    if targets is not None:
        for target in targets:
            if isinstance(target, bool) or not isinstance(target, int) or target < 0:
                raise ParameterError("targets", f"targets must be class indices, got {target!r}")
        repeated = sorted({t for t in targets if list(targets).count(t) > 1})
        if repeated:
            raise ParameterError("targets", f"targets names class {repeated[0]} more than once")
    model, data = workload.load()
    check_precision(model)
    for name in layers:
        resolve_layer(model, name, "layers")
    with guarded_call(model, "build_atlas"), torch.no_grad():
        n_outputs = model(examples_at(data, [0]).to(model_device_dtype(model)[0])).shape[-1]
    for target in targets or ():
        if target >= n_outputs:
            raise ParameterError(
                "targets",
                f"class {target} is out of range: the model has {n_outputs} outputs "
                f"(0 to {n_outputs - 1})",
            )
    return n_outputs


def _jobs(
    routing: ClassRouting,
    targets: Sequence[int] | None,
    layers: Sequence[str],
    settings: CircuitSettings,
    report: ReportSettings,
    reports: bool,
    out: Path,
    resume: bool,
) -> list[ClassJob]:
    """A job per class: the given targets, or every class the model predicts on the data."""
    counts = routing.counts()
    chosen = sorted(counts) if targets is None else list(targets)
    return [
        ClassJob(
            target,
            tuple(routing.images_of(target)) if settings.predicted_only else (),
            tuple(layers),
            settings,
            report,
            reports,
            str(out),
            resume,
        )
        for target in chosen
    ]


def build_atlas(
    model: nn.Module | Callable[[], nn.Module],
    layers: Sequence[str],
    data: Data | Callable[[], Data],
    out: str | Path,
    *,
    targets: Sequence[int] | None = None,
    settings: CircuitSettings | None = None,
    report: ReportSettings | None = None,
    reports: bool = False,
    resume: bool = False,
    backend: str | None = None,
    address: str | None = None,
    workers: int | None = None,
    device: str | None = None,
    progress: bool = True,
    **options: Any,
) -> AtlasResult:
    """The circuits of every class of a model (or of ``targets``), and their index page.

    Parameters
    ----------
    model : nn.Module or callable returning one
        The classifier. With ``backend="ray"``, a function that builds it
        (each worker builds its own; the model is never pickled).
    layers : sequence of str
        Circuit layers, lowest first (as :func:`~captum_groups.build_circuit`); ignored
        with ``corrupt`` set: each class's circuit is then one through the residual
        stream (:func:`~captum_groups.circuits.build_stream_circuit`), of every class
        (every output) by default.
    data : Tensor, Dataset or DataLoader over a map-style Dataset, or callable
        The images, read by data-set index (a function that returns them
        with ``backend="ray"``).
    out : str or Path
        Folder to write into (see the module docstring for what it holds).
    targets : sequence of int, optional
        The classes; by default every class the model predicts on the data.
    settings : CircuitSettings, optional
        How each circuit is built; keyword ``options`` apply over it.
    report : ReportSettings, optional
        The fidelity's draws and images (``n_draws``, ``max_images``), and
        the per-class reports' settings.
    reports : bool
        Also write each class's ``report.html``.
    resume : bool
        Keep the classes already written to ``out`` from the same inputs (build and
        report settings, layers, class, model weights, the class's images), complete
        and consistent; rebuild the others (see ``atlas_state``).
    backend : {"local", "torch", "ray"}, optional
        Where the work runs; by default ``"torch"`` under torchrun, else ``"local"``.
    address : str, optional
        The Ray cluster's address (``ray.init(address=...)``); a local one by default.
    workers : int, optional
        Ray actors; by default one per CPU of the cluster.
    device : str, optional
        Where each worker's model runs; ``"cuda"`` is each rank's own GPU.
    progress : bool
        One progress display (on the main process) over the classes.

    Returns
    -------
    AtlasResult
        On the main process (rank 0); the other ranks get the same rows.

    Examples
    --------
    >>> import tempfile
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> x, _ = load_digits("test")
    >>> atlas = build_atlas(digits_cnn(), ["relu3"], x, tempfile.mkdtemp(), targets=[3, 5],
    ...                     tau=4, k=10, n_groups=2, n_steps=8, n_draws=2, progress=False)
    >>> [row["target"] for row in atlas.rows], atlas.failures, atlas.html.name
    ([3, 5], [], 'atlas.html')
    """
    report_options = {name: options.pop(name) for name in REPORT_ONLY if name in options}
    settings = CircuitSettings.merged(settings, options, "build_atlas")
    report = ReportSettings.merged(report, report_options, "build_atlas")
    validate({"workers": Count(1, optional=True)}, {"workers": workers})
    folder = check_folder_path(out)
    workload = Workload(model, data, device)
    check_workload(backend, workload)
    n_outputs = _check_request(workload, layers, targets, settings.corrupt is not None)
    if settings.corrupt is not None and targets is None:  # every output is a class
        targets = list(range(n_outputs))
    folder.mkdir(parents=True, exist_ok=True)
    main_process = int(os.environ.get("RANK", "0")) == 0
    with FolderLock(folder) if main_process else contextlib.nullcontext():
        return _run_atlas(
            folder,
            workload,
            layers,
            targets,
            settings,
            report,
            reports,
            resume,
            backend,
            address,
            workers,
            progress,
        )


def _run_atlas(
    folder: Path,
    workload: Workload,
    layers: Sequence[str],
    targets: Sequence[int] | None,
    settings: CircuitSettings,
    report: ReportSettings,
    reports: bool,
    resume: bool,
    backend: str | None,
    address: str | None,
    workers: int | None,
    progress: bool,
) -> AtlasResult:
    """:func:`build_atlas` once its request is checked and its folder locked."""
    runner = make_backend(backend, workload, address, workers)
    started = time.perf_counter()  # the workers are up, with their models and data
    try:
        if runner.is_main and not resume:
            _clear(folder)
        # a circuit through the stream reads every example (its build keeps the class's own)
        routing = (
            ClassRouting()
            if settings.corrupt is not None
            else runner.route(settings.batch_size, progress and runner.is_main)
        )
        jobs = _jobs(routing, targets, layers, settings, report, reports, folder, resume)
        with tqdm(
            total=len(jobs), desc="atlas", unit="class", disable=not (progress and runner.is_main)
        ) as bar:
            results = runner.map(
                atlas_class,
                jobs,
                [len(job.images) or 1 for job in jobs],
                on_result=lambda _: bar.update(),
                probe=_count_done(folder, [job.target for job in jobs]),
            )
        rows = [r for r in results if "error" not in r]
        failures = [r for r in results if "error" in r]
        index = write_index(folder, rows, failures, settings, report, runner, started)
    finally:
        runner.close()
    return AtlasResult(
        rows, failures, index["shared"], index["html"], index["json"], index["seconds"]
    )
