"""Output files appear whole or not at all: write to a temporary name, rename at the end."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import AnomalyError

__all__ = ["atomic_output", "check_writable"]


def check_writable(path, what: str = "output", folder: bool = False) -> Path:
    """Fail early (before long work) if ``path`` cannot be written (``folder``: a folder that
    exists and is writable, or can be made in a writable parent)."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if folder:
        if path.exists() and not path.is_dir():
            raise AnomalyError(f"{path}: is a file; give a folder for the {what}")
        target = path if path.is_dir() else parent
        if not target.is_dir():
            raise AnomalyError(f"{path}: folder '{parent}' does not exist")
        if not os.access(target, os.W_OK):
            raise AnomalyError(f"{path}: folder '{target}' is not writable")
        return path
    if path.is_dir():
        raise AnomalyError(f"{path}: is a folder; give a file name for the {what}")
    if not parent.is_dir():
        raise AnomalyError(f"{path}: folder '{parent}' does not exist")
    if not os.access(parent, os.W_OK):
        raise AnomalyError(f"{path}: folder '{parent}' is not writable")
    return path


@contextmanager
def atomic_output(path, what: str = "output") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success."""
    path = check_writable(path, what)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    except OSError as e:
        raise AnomalyError(f"{path}: cannot write ({e.strerror})") from None
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
