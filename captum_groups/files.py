"""Files written whole or not at all, never through a symbolic link.

Every file the package writes goes through :func:`write_atomic`: the content
is written to a temporary file in the same folder, flushed to disk, and
renamed over the destination, with the mode a new file gets from the umask.
A rename replaces the directory entry, so a
symbolic link at the destination is replaced, not followed, and a reader (or
an interrupted run) sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from ._validation.errors import ParameterError

__all__ = ["check_folder_path", "write_atomic"]


def check_folder_path(out: str | Path, parameter: str = "out") -> Path:
    """``out`` as a folder to write into (it may not exist yet), checked before any work:
    a file, or a symbolic link to nothing, is refused by ``parameter``.

    Examples
    --------
    >>> check_folder_path("report-folder")
    PosixPath('report-folder')
    """
    path = Path(out)
    if path.is_symlink() and not path.exists():
        raise ParameterError(
            parameter,
            f"{parameter}={str(out)!r} is a symbolic link to {os.readlink(path)!r}, which does "
            "not exist; remove the link or give another folder",
        )
    if path.exists() and not path.is_dir():
        raise ParameterError(
            parameter, f"{parameter}={str(out)!r} is a file; give a folder to write into"
        )
    return path


def _temporary(path: Path) -> tuple[int, str]:
    """A new file beside ``path``, created with mode 0o666 less the umask, as ``open``
    creates files (``tempfile.mkstemp`` makes them 0o600, and the mode survives the
    rename: a report could then not be served or shared as it is)."""
    while True:
        name = path.parent / f".{path.name[:60]}.{secrets.token_hex(6)}"
        try:
            return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), str(name)
        except FileExistsError:
            continue


def write_atomic(path: str | Path, content: str | bytes) -> Path:
    """Write ``content`` (text as UTF-8) to ``path`` atomically; return the path.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_atomic(folder / "a.txt", "hello").read_text()
    'hello'
    >>> sorted(p.name for p in folder.iterdir())  # no temporary file left behind
    ['a.txt']
    """
    path = Path(path)
    data = content.encode("utf-8") if isinstance(content, str) else content
    handle, temporary = _temporary(path)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
