"""What an atlas class's files depend on, and the lock that keeps one run per folder.

A class's files are kept on ``resume`` only if they were made from the same
inputs: its :func:`provenance` (the atlas's file format, the class, the
layers, the circuit and report settings, a hash of the model's weights and
one of the images the class was built on) is stored in its
``summary.json`` and compared whole. Anything else, an older file without
one included, is rebuilt.

:class:`FolderLock` holds ``OUT/.atlas.lock`` (the holder's pid, host and
start time) for the length of a run, so a second run on the same folder is
refused instead of mixing its classes with the first's; a lock left by a
process of this host that is no longer running is stale and taken over.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._validation.errors import ParameterError

__all__ = ["ATLAS_FILES", "FolderLock", "model_fingerprint", "provenance"]

ATLAS_FILES = 1
"""The version of the files of an atlas class: a class written by another is rebuilt."""

LOCK_NAME = ".atlas.lock"


def model_fingerprint(model: nn.Module) -> str:
    """A SHA-256 of the model's parameters and buffers: names, dtypes, shapes and values.

    Examples
    --------
    >>> first, second = nn.Linear(2, 2), nn.Linear(2, 2)
    >>> model_fingerprint(first) == model_fingerprint(first), model_fingerprint(first) == model_fingerprint(second)
    (True, False)
    """  # noqa: E501
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)};".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())  # any dtype
    return digest.hexdigest()


def provenance(
    model: nn.Module,
    target: int,
    layers: tuple[str, ...],
    images: tuple[int, ...],
    n_images: int | None,
    settings: dict[str, Any],
    report: dict[str, Any],
) -> dict[str, Any]:
    """Everything a class's files depend on, as plain JSON values (see the module)."""
    return {
        "files": ATLAS_FILES,
        "target": target,
        "layers": list(layers),
        "settings": settings,
        "report": report,
        "model": model_fingerprint(model),
        "images": hashlib.sha256(json.dumps([n_images, list(images)]).encode()).hexdigest(),
    }


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


class FolderLock:
    """``OUT/.atlas.lock`` held for a run (a context manager): refused while another
    live run holds it, taken over when its holder (on this host) has died.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with FolderLock(folder):
    ...     try:
    ...         FolderLock(folder).__enter__()
    ...     except ValueError as error:
    ...         print(str(error).split(";")[0])  # doctest: +ELLIPSIS
    another atlas run (pid ... on ...) is writing into ...
    >>> (folder / ".atlas.lock").exists()
    False
    """

    def __init__(self, out: Path) -> None:
        self.path = Path(out) / LOCK_NAME
        self.held = False

    def __enter__(self) -> FolderLock:
        mine = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        for _ in range(2):  # a stale lock is removed once, then taken
            try:
                handle = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._refuse_or_clear()
                continue
            with os.fdopen(handle, "w") as stream:
                json.dump(mine, stream)
            self.held = True
            return self
        raise ParameterError("out", f"cannot take the lock {self.path}: it keeps reappearing")

    def _refuse_or_clear(self) -> None:
        try:
            holder = json.loads(self.path.read_text())
            pid, host = int(holder["pid"]), str(holder["host"])
        except (OSError, ValueError, KeyError, TypeError):
            holder, pid, host = {}, -1, "?"
        if host == socket.gethostname() and not _alive(pid):
            self.path.unlink(missing_ok=True)  # its holder died: stale
            return
        started = holder.get("started")
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "?"
        raise ParameterError(
            "out",
            f"another atlas run (pid {pid} on {host}, started {since}) is writing into "
            f"{self.path.parent}; wait for it to finish, or give another --out (if that run "
            f"is no longer running, remove {self.path})",
        )

    def __exit__(self, *exc: object) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
