"""Output files appear whole or not at all, never on top of an input, with the user's umask.

Every output is written to a temporary name beside its target and renamed at the end; the
temporary file is removed when the write fails or the process is interrupted (SIGINT; the CLI
turns SIGTERM into the same clean exit). :func:`check_outputs` refuses, before any work starts,
an output that resolves to the same file as an input (or a heatmap folder inside the data).
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import AnomalyError

__all__ = ["atomic_output", "check_outputs", "check_writable", "umask"]


def umask() -> int:
    """The process umask (read without changing it where /proc allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


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
    if path.exists() and not path.is_file():
        raise AnomalyError(f"{path}: is not a regular file; give a file name for the {what}")
    if not parent.is_dir():
        raise AnomalyError(f"{path}: folder '{parent}' does not exist")
    if not os.access(parent, os.W_OK):
        raise AnomalyError(f"{path}: folder '{parent}' is not writable")
    return path


def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _inside(child: Path, folder: Path) -> bool:
    try:
        child, folder = child.resolve(), folder.resolve()
    except OSError:
        return False
    return child == folder or folder in child.parents


def check_outputs(outputs: dict[str, object], inputs: Iterable[object] = (), folders: Iterable[object] = ()) -> None:
    """Refuse outputs (name -> path; None and "-" are skipped) that are the same file as an input
    or as each other, and output folders (``folders``: e.g. heatmaps, named after the images)
    that hold an input file or overlap an input folder, where their files could replace the
    data. One AnomalyError."""
    outs = {name: Path(p) for name, p in outputs.items() if p is not None and str(p) != "-"}
    ins = [Path(p) for p in inputs if p is not None and str(p) != "-"]
    for name, out in outs.items():
        for src in ins:
            if _same(out, src) or (not out.exists() and out.resolve() == src.resolve()):
                raise AnomalyError(f"{out}: the {name} would overwrite the input {src}; write it elsewhere")
            if src.is_dir() and out.is_dir() and (_inside(out, src) or _inside(src, out)):
                raise AnomalyError(f"{out}: the {name} folder overlaps the input folder {src}; write it elsewhere")
    names = list(outs)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if outs[a].resolve() == outs[b].resolve():
                raise AnomalyError(f"{outs[a]}: given as both the {a} and the {b}")
    for folder in folders:
        if folder is None:
            continue
        f = Path(folder)
        for src in ins:
            if (src.is_dir() and (_inside(f, src) or _inside(src, f))) or (src.is_file() and _inside(src, f)):
                raise AnomalyError(f"{f}: the output folder holds or overlaps the input {src}; write it elsewhere")


@contextmanager
def atomic_output(path, what: str = "output", mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success. The file
    gets ``mode`` (default: 0o666 less the umask, as ``open()`` would give it)."""
    path = check_writable(path, what)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    except OSError as e:
        raise AnomalyError(f"{path}: cannot write ({e.strerror})") from None
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, mode if mode is not None else 0o666 & ~umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
