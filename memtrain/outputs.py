"""Output paths are checked before any expensive work starts: a run must never end in a write error.

:func:`check_writable_output` looks at a file or folder a command is about to write (it writes nothing
there): the path must not be the wrong kind of thing (a file where a folder goes, or the reverse), and the
folder that will receive it must accept a new entry. That is probed by creating and removing a hidden file,
not judged by permission bits, so it is right for root, read-only mounts and ACLs alike.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Literal

from .errors import ConfigError

Kind = Literal["file", "dir"]


def _probe(folder: Path) -> str | None:
    """Why a new entry cannot be created in the existing folder `folder` (None: it can)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".memtrain-probe-", dir=folder)
    except OSError as exc:
        if exc.errno == errno.ENOENT:  # e.g. /proc: a folder that exists but takes no new files
            return "it takes no new files"
        return exc.strerror or str(exc)
    os.close(fd)
    os.unlink(name)
    return None


def check_writable_output(path: str | os.PathLike, *, kind: Kind, what: str | None = None) -> Path:
    """Raise `ConfigError` (one line naming `what`, e.g. ``--out`` or ``output_dir``, and the path) unless
    `path` can be written as a `kind` ("file" or "dir"); return it as a `Path`.

    * ``dir``: an existing folder must accept new files; a missing one must be creatable (its nearest
      existing ancestor is a folder that accepts new entries). An existing file is refused.
    * ``file``: an existing folder is refused; the file's folder (or its nearest existing ancestor) must
      accept new entries, since files are written under a temporary name and renamed into place. Whether an
      existing file may be replaced is the caller's decision.
    """
    if kind not in ("file", "dir"):
        raise ValueError(f"kind must be 'file' or 'dir', got {kind!r}")
    path = Path(path).expanduser()
    label = f"{what}: {path}" if what else str(path)
    if str(path) in ("", "."):
        path = Path.cwd()
    if path.is_dir():
        if kind == "file":
            raise ConfigError(f"{label}: is a directory; give a file name")
        problem = _probe(path)
        if problem:
            raise ConfigError(f"{label}: folder is not writable ({problem})")
        return path
    if path.exists() or path.is_symlink():
        if kind == "dir":
            raise ConfigError(f"{label}: exists and is not a directory; choose another folder")
        if not path.is_file():
            raise ConfigError(f"{label}: exists and is not a regular file")
    ancestor = path.parent
    while not ancestor.exists() and not ancestor.is_symlink() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"{label}: {ancestor} is not a directory, so nothing can be created under it")
    problem = _probe(ancestor)
    if problem:
        where = "its folder" if ancestor == path.parent else f"{ancestor} (where it would be created)"
        raise ConfigError(f"{label}: {where} is not writable ({problem})")
    return path
