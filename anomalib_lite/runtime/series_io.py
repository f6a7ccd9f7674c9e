"""Series detectors on files and live streams: what ``anomaly score`` does with a series bundle,
usable from Python.

* :func:`score_series`: score a whole series (optionally test-then-train with ``learn=True``).
* :func:`write_score_table`: the per-step CSV (timestamp or index, values, score, p-value, flag,
  label), written atomically.
* :func:`stream_lines`: CSV lines from a text stream (stdin, a pipe, a file being written), one
  at a time: each line is parsed, scored and answered with one flushed output line before the
  next is read; a bad line (unparsable, blank, holding NUL bytes, not UTF-8, or longer than
  :data:`MAX_LINE` characters, which is skipped without being held in memory) is reported with
  its number and skipped, the stream goes on. A header line is optional when the bundle knows
  the layout it was fitted on.
"""
from __future__ import annotations

import csv
import itertools
import sys
from collections.abc import Callable, Iterator
from typing import TextIO

import numpy as np

from ..errors import AnomalyError
from ..io import atomic_output
from ..data.series_sources import MAX_LINE, MISSING, SeriesReader, SeriesSource, delimiter, numbered_lines

__all__ = ["MAX_LINE", "read_lines", "score_series", "score_table", "stream_lines", "write_score_table"]


def fmt(v: float) -> str:
    """A score as written in CSV output ("nan" while a stream warms up)."""
    return "nan" if np.isnan(v) else f"{v:.6g}"


def score_series(det, source: SeriesSource, learn: bool = False, chunk: int = 256) -> np.ndarray:
    """Scores of every step of ``source`` from a reset stream; ``learn=True``: test-then-train
    (``partial_fit`` chunk by chunk: each chunk is scored before the detector learns from it).
    Leaves the detector with a reset stream."""
    if learn and not det.capabilities.learns_online:
        raise AnomalyError(f"--learn: {type(det).__name__} does not learn online; drop --learn")
    det.reset()
    if learn:
        parts = [det.partial_fit(source.values[i : i + chunk]).last_scores_ for i in range(0, len(source), chunk)]
        scores = np.concatenate(parts) if parts else np.zeros(0)
    else:
        scores = det.decision_function(source)
    det.reset()
    return scores


def score_table(source: SeriesSource, scores, p_values=None, flags=None, labels=None) -> tuple[list, list]:
    """(header, rows) of the per-step table: time (or index), the values, score, then p_value,
    is_anomaly and label where given."""
    head = [source.time_column or "index", *source.columns, "score"]
    head += (["p_value"] if p_values is not None else []) + (["is_anomaly"] if flags is not None else [])
    head += ["label"] if labels is not None else []
    rows = []
    for i in range(len(source)):
        row = [source.stamps[i] if source.stamps else i, *(f"{v:.10g}" for v in source.values[i]), fmt(scores[i])]
        row += ([fmt(p_values[i])] if p_values is not None else []) + ([int(flags[i])] if flags is not None else [])
        row += [int(labels[i])] if labels is not None else []
        rows.append(row)
    return head, rows


def write_score_table(path, source: SeriesSource, scores, p_values=None, flags=None, labels=None) -> None:
    """:func:`score_table` as a CSV file, written atomically."""
    head, rows = score_table(source, scores, p_values, flags, labels)
    with atomic_output(path, "scores") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(head)
        w.writerows(rows)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return text.strip().lower() in MISSING


def read_lines(fh: TextIO, max_line: int = MAX_LINE) -> Iterator[tuple[int, str | None, str | None]]:
    """``(line number, line, None)`` for each line of ``fh`` as it arrives, or ``(line number,
    None, kind)`` for a line that cannot be a row: "blank", "NUL bytes", "not UTF-8" (a line
    decoded with replacement characters) or "over-long" (more than ``max_line`` characters:
    read on in pieces and dropped, never held whole)."""
    for number, line, whole in numbered_lines(fh, max_line):
        if not whole:
            while True:  # the rest of the line, piece by piece
                more = fh.readline(1 << 16)
                if not more or more.endswith(("\n", "\r")):
                    break
            yield number, None, "over-long"
        elif "\x00" in line:
            yield number, None, "NUL bytes"
        elif "\ufffd" in line:
            yield number, None, "not UTF-8"
        elif not line.strip():
            yield number, None, "blank"
        else:
            yield number, line, None


#: how a skipped line of each kind is reported
_PROBLEMS = {
    "blank": "blank line",
    "NUL bytes": "holds NUL bytes",
    "not UTF-8": "is not UTF-8 text",
    "over-long": f"longer than {MAX_LINE:,} characters",
    "unparsable": "unparsable",
}


_SHORT = {"NUL bytes": "with NUL bytes"}


def skipped_summary(counts: dict[str, int]) -> str:
    """``'2 blank, 1 with NUL bytes, 3 unparsable'``: skipped lines by kind, for a summary."""
    return ", ".join(f"{n} {_SHORT.get(kind, kind)}" for kind, n in counts.items() if n)


def stream_lines(det, fh: TextIO, where: str = "stdin", columns=None, time_column=None, label_column=None,
                 nan: str = "reject", learn: bool = False, out: Callable[[str], None] | None = None,
                 err: Callable[[str], None] | None = None, counts: dict[str, int] | None = None) -> tuple[int, int]:
    """Score CSV lines from ``fh`` as they arrive: ``out`` gets the header
    ``time,values...,score[,p_value][,is_anomaly]`` (the columns of :func:`score_table`; p-values where the
    bundle was calibrated) and then one line per input line (default: print to
    stdout and flush), ``err`` a message per bad line, with its number (default: stderr).
    ``learn=True``: test-then-train, one step at a time. ``counts``: filled with the skipped
    lines by kind (see :func:`read_lines`, and "unparsable"). Returns (steps scored, bad lines
    skipped); no line is dropped without a message."""
    out = out or _print_flush
    err = err or (lambda msg: print(msg, file=sys.stderr, flush=True))
    counts = {} if counts is None else counts
    bad = 0

    def skip(number: int, kind: str, why: str | None = None) -> None:
        nonlocal bad
        bad += 1
        counts[kind] = counts.get(kind, 0) + 1
        err(f"anomaly: skipped: {where}: line {number}: {why or _PROBLEMS[kind]}")

    lines = read_lines(fh)
    first, lineno = None, 0
    for lineno, first, kind in lines:
        if kind is None:
            break
        skip(lineno, kind)
    if first is None:
        raise AnomalyError(f"{where}: no lines" + (f" ({bad} skipped)" if bad else ""))
    try:
        sep = delimiter(first)
        fields = next(csv.reader([first], delimiter=sep))
    except csv.Error as e:
        raise AnomalyError(f"{where}: line {lineno}: malformed CSV ({e})") from None
    info = getattr(det, "data_info_", None) or {}
    known = set(info.get("header") or []) | set(columns or []) | {time_column}
    dim = int(det.input_shape_[0])
    is_header = bool(known & {f.strip() for f in fields}) or not all(_is_number(f) for f in fields[1:])
    header = [f.strip() for f in fields] if is_header else info.get("header")
    if not is_header and (not header or len(header) != len(fields)):
        if len(fields) not in (dim, dim + 1):
            raise AnomalyError(f"{where}: line {lineno}: no header line and {len(fields)} fields for {dim} channel(s)")
        header = (["timestamp"] if len(fields) == dim + 1 else []) + [f"value{i}" for i in range(dim)]
        columns = time_column = None
    reader = SeriesReader(header, where, columns, time_column, label_column, nan, decimal_comma=sep != ",")
    if len(reader.columns) != dim:
        raise AnomalyError(f"{where}: {len(reader.columns)} value column(s) but the bundle takes {dim}")
    can_flag, calibrated = det.can_flag(), getattr(det, "calibration_scores_", None) is not None
    out(",".join([reader.time_column or "index", *reader.columns, "score"] + (["p_value"] if calibrated else [])
                 + (["is_anomaly"] if can_flag else [])))
    pending = [] if is_header else [(lineno, first, None)]
    step = 0
    for number, line, kind in itertools.chain(pending, lines):
        if kind is not None:
            skip(number, kind)
            continue
        try:
            stamp, _, values, _ = reader.parse(next(csv.reader([line], delimiter=sep)), number, stream=True)
        except AnomalyError as e:
            bad += 1
            counts["unparsable"] = counts.get("unparsable", 0) + 1
            err(f"anomaly: skipped: {e}")
            continue
        except csv.Error as e:
            skip(number, "unparsable", f"malformed CSV ({e})")
            continue
        x = np.asarray(values, dtype=np.float64)[None, :]
        if learn:
            det.partial_fit(x)
            s, f = det.last_scores_[0], bool(det.last_flags_[0])
        else:
            s = det.decision_function(x)[0]
            f = bool(det.flag([s])[0]) if can_flag else None
        row = [stamp if stamp is not None else str(step), *(f"{v:.10g}" for v in values), fmt(s)]
        row += [fmt(det.p_values([s])[0])] if calibrated else []
        out(",".join(row + ([str(int(f))] if can_flag else [])))
        step += 1
    return step, bad


def _print_flush(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
