"""Real faults for tests: a full disk and a read-only folder, as small tmpfs mounts (root only).

As root, permission bits do not stop a write, so a chmod'ed folder proves nothing; a read-only or full
filesystem does. Tests that need one are skipped where mounting is not allowed.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def tmpfs(folder: Path, size: str = "1m", readonly: bool = False) -> Iterator[Path]:
    """Mount a tmpfs of `size` on `folder` (read-only if asked) for the block's duration."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        if not readonly:
            pytest.skip("a full-disk test needs root (to mount a small tmpfs)")
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
        try:
            yield folder
        finally:
            folder.chmod(stat.S_IRWXU)
        return
    options = f"size={size}" + (",ro" if readonly else "")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
