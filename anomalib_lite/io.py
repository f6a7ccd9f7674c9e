"""Output files appear whole or not at all, never on top of anything the run reads, with the
user's umask.

Every output is written to a temporary name beside its target and renamed at the end; the
temporary file is removed when the write fails or the process is interrupted (SIGINT; the CLI
turns SIGTERM into the same clean exit), and one that a kill -9 left behind is removed by the
next output written into that folder (its name says which process owned it). :func:`check_outputs`
refuses, before any work starts, an output that is the same file as an input (compared by real
path and by device and inode, so symlinks and hard links do not hide it), or an output folder
that holds or overlaps the data.
"""
from __future__ import annotations

import hashlib
import os
import re
import stat
import socket
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import AnomalyError

__all__ = ["atomic_output", "check_outputs", "check_writable", "sweep_temps", "umask"]


def open_to_read(path, what: str) -> int:
    """A descriptor for reading the regular file ``path`` once: opened without blocking (a FIFO or
    device never hangs the caller) and closed on exec. A missing or unreadable file, a folder, a
    FIFO or a device is one error that names ``what`` (e.g. "bundle", "verify key")."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise AnomalyError(f"{path}: {what} not found") from None
    except OSError as e:
        raise AnomalyError(f"{path}: cannot read the {what} ({e.strerror})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise AnomalyError(f"{path}: is a folder, not a {what}" if stat.S_ISDIR(mode)
                           else f"{path}: not a regular file, so not a {what}")
    return fd


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


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of an existing file (after symlinks): hard links share it."""
    try:
        st = path.stat()
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _real(path: Path) -> str:
    return os.path.realpath(path)


def _inside(child: str, folder: str) -> bool:
    return child == folder or child.startswith(folder.rstrip(os.sep) + os.sep)


def _files(inputs: Iterable[object]) -> list[Path]:
    """The input files: a folder given as an input stands for every file under it."""
    out = []
    for p in inputs:
        if p is None or str(p) in ("", "-"):
            continue
        p = Path(p)
        out += sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    return out


def check_outputs(outputs: dict[str, object], inputs: Iterable[object] = (), folders: Iterable[object] = (),
                  roots: Iterable[object] = ()) -> None:
    """Refuse, in one AnomalyError, outputs (name -> path; None and "-" are skipped) that are the
    same file as an input or as each other, and output folders (``folders``: heatmaps, NAB
    results, named after the data) that hold an input file or overlap an input folder.

    ``inputs``: every file the run reads (a folder: every file under it); ``roots``: folders the
    data comes from (an output folder must not overlap them). Files are compared by what they
    are, not by how they are named: real paths (symlinks resolved) and (device, inode) (hard
    links)."""
    outs = {name: Path(p) for name, p in outputs.items() if p is not None and str(p) != "-"}
    files = _files(inputs)
    by_id, by_real = {}, {}
    for src in files:
        ident = _identity(src)
        if ident is not None:
            by_id.setdefault(ident, src)
        by_real.setdefault(_real(src), src)
    for name, out in outs.items():
        ident = _identity(out)
        src = (by_id.get(ident) if ident is not None else None) or by_real.get(_real(out))
        if src is not None:
            raise AnomalyError(f"{out}: the {name} would overwrite the input {src}; write it elsewhere")
    names = list(outs)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            same_id = _identity(outs[a]) is not None and _identity(outs[a]) == _identity(outs[b])
            if same_id or _real(outs[a]) == _real(outs[b]):
                raise AnomalyError(f"{outs[a]}: given as both the {a} and the {b}")
    dirs = [_real(Path(r)) for r in [*roots, *inputs] if r is not None and str(r) not in ("", "-") and Path(r).is_dir()]
    reals = list(by_real)
    for folder in folders:
        if folder is None:
            continue
        f = _real(Path(folder))
        src = next((d for d in dirs if _inside(f, d) or _inside(d, f)), None)
        if src is None:
            src = next((by_real[r] for r in reals if _inside(r, f)), None)
        if src is not None:
            raise AnomalyError(f"{folder}: the output folder holds or overlaps the input {src}; write it elsewhere")


#: temporary outputs are named ``.<target>.<TAG>-<host>-<pid>-<start>-<random>``: whoever finds
#: one whose process is gone (killed with -9, the machine reset) can remove it
TAG = "al-tmp"
_TEMP = re.compile(rf"^\..+\.{TAG}-(?P<host>[0-9a-f]{{8}})-(?P<pid>\d+)-(?P<start>\d+)-[a-z0-9_]+$")
_swept: set[str] = set()


def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _start_time(pid: int) -> int:
    """When process ``pid`` started (clock ticks since boot, from /proc), 0 where unknown; with
    the pid it names a process even after the pid is reused."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        return int(text.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def _alive(pid: int, start: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not start or _start_time(pid) in (0, start)


def sweep_temps(folder) -> list[Path]:
    """Remove the temporary outputs in ``folder`` left by processes of this machine that are gone
    (killed with -9 mid-write); returns what was removed. Run once per folder and process,
    before the first output is written there."""
    removed, host = [], _host()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m is None or m["host"] != host or _alive(int(m["pid"]), int(m["start"])):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


@contextmanager
def atomic_output(path, what: str = "output", mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success. The file
    gets ``mode`` (default: 0o666 less the umask, as ``open()`` would give it). The temporary
    name says which process owns it, so a temporary file that a kill -9 left behind is removed
    by the next output written into the same folder (:func:`sweep_temps`)."""
    path = check_writable(path, what)
    folder = str(path.parent or ".")
    key = os.path.realpath(folder)
    if key not in _swept:
        sweep_temps(folder)
        _swept.add(key)
    pid = os.getpid()
    prefix = f".{path.name}.{TAG}-{_host()}-{pid}-{_start_time(pid)}-"
    try:
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix="", dir=folder)
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
