"""Time-series data: CSV files, CSV lines on stdin, and NAB series with their anomaly windows.

:func:`anomalib_lite.data.sources.load` hands ``*.csv``, ``-`` and ``nab:CATEGORY/FILE.csv`` specs to
this module. A CSV needs a header line; the time column is ``--time-column`` or the first column
named timestamp/time/date/datetime; the label column (0/1 per row, optional) is ``--label-column``
or the first column named label/labels/anomaly/is_anomaly/anomalous that is not a value column; the
value columns are ``--column`` (one or more) or all other columns (so a file's own ground truth
never becomes an input by accident). Rows are steps in file order; times must be
numbers or ISO 8601 and must increase line by line: a time that repeats or goes back is an error
naming its line, unless the spec asks ``?order=sort`` (rows sorted by time) or ``?order=file``
(the file's order, unchecked: how NAB's own series are read, since NAB scores rows in file order
and machine_temperature steps back an hour once). A line over :data:`MAX_LINE` characters is
refused while it is read. Fields are separated by commas, or by semicolons or tabs when the
first line holds none of the first but some of these (the separator of spreadsheets set to a
decimal comma, which such a file's numbers may then use: 3,5). Empty cells (or NaN/NA/null) are
gaps: rejected by default, or filled by linear interpolation with ``nan="interpolate"`` (in a
live stream, where the next value is not known yet, a gap takes the last value). Every error
names the file, the line and the column.
"""
from __future__ import annotations

import csv
import datetime as dt
import itertools
import json
import math
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from .batches import NAN_POLICIES, fill_gaps
from ..errors import AnomalyError, shown
from .datasource import DataSource, data_root

__all__ = ["MAX_LINE", "ORDERS", "SeriesReader", "SeriesSource", "bounded_lines", "delimiter", "load_csv", "load_nab",
           "dated_column", "header_names", "is_id_name", "nab_files", "parse_time"]

TIME_NAMES = ("timestamp", "time", "date", "datetime")
#: a column so named is read as 0/1 labels unless a value column (``--column``) or another
#: ``--label-column`` is named: a file's ground truth is not an input
LABEL_NAMES = ("label", "labels", "anomaly", "is_anomaly", "anomalous")
#: a column so named (or ending in ``_id``) names its row, as a database's key or pandas' written
#: index do: never an input unless ``--column`` names it (a row counter as a feature decides every
#: distance); with ``?rows=samples`` its text names each sample in the scores
ID_NAMES = ("id", "index", "key", "uuid", "unnamed: 0")
#: how rows relate to their times: "reject" (times must increase line by line: a time that
#: repeats or goes back is an error naming its line), "sort" (rows sorted by time, then they must
#: increase), "file" (the file's order, unchecked: NAB's own series, scored in file order)
ORDERS = ("reject", "sort", "file")
#: a CSV line longer than this (characters) is refused while it is read: memory stays bounded
MAX_LINE = 1 << 20
MISSING = frozenset({"", "nan", "na", "n/a", "null", "none"})


def is_id_name(name: str) -> bool:
    """Whether a column's name says it identifies rows (:data:`ID_NAMES`, or ``*_id``)."""
    low = name.strip().lower()
    return low in ID_NAMES or low.endswith("_id")


def header_names(header: Sequence[str]) -> list[str]:
    """A CSV header's column names as every reader takes them: stripped, without a UTF-8 BOM."""
    return [h.strip().lstrip("\ufeff") for h in header]


def dated_column(header: Sequence[str], row: Sequence[str], columns=None) -> str | None:
    """The time column of a CSV that names none (no timestamp, time, date or datetime; e.g.
    ``Zeit``, ``Datum``, ``created_at``): the first column whose first cell is a date/time (ISO 8601
    or dotted), not a number. A date is never a value, so this only reads what was an error."""
    names = header_names(header)
    if any(h.lower() in TIME_NAMES for h in names) or len(row) != len(names):
        return None
    for name, cell in zip(names, row):
        if not name or name in (columns or ()):
            continue
        try:
            float(cell)
            continue
        except ValueError:
            pass
        try:
            parse_time(cell)
            return name
        except ValueError:
            continue
    return None


def delimiter(first_line: str) -> str:
    """The field separator of a CSV whose first line is ``first_line``: a comma, unless the line
    holds none and holds semicolons or tabs (then the more frequent of these)."""
    if "," in first_line:
        return ","
    semi, tab = first_line.count(";"), first_line.count("\t")
    return ("\t" if tab > semi else ";") if semi or tab else ","


_DECIMAL_COMMA = re.compile(r"[-+]?\d*,\d+(?:[eE][-+]?\d+)?")  # 3,5 or -0,25 (not 1.234,5 nor 1,234,567)


# day.month.year, then hours:minutes[:seconds[.fraction]]: the dotted dates of European spreadsheets
# (day first wherever dots separate a date; slashes are not read, since 01/02 is a day first or last)
_DOTTED = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?)?")


def parse_time(text: str) -> float:
    """Seconds: a number as it is, else an ISO 8601 date/time or a dotted day.month.year date
    (``31.12.2026 23:15``); naive = UTC; ValueError if none."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    dotted = _DOTTED.fullmatch(text)
    if dotted:
        d, mo, y, h, mi, sec, frac = (dotted.group(i) for i in range(1, 8))
        t = dt.datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(sec or 0),
                        int((frac or "0").ljust(6, "0")))  # (ValueError for 31.02.2026)
    else:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.timestamp()


class ColumnNotFound(AnomalyError):
    """A named column is not in a CSV's header (a caller that chose the names says where they came
    from: ``workflows.load_source``, the columns a bundle was fitted on)."""


#: labels written as words, any case: pandas writes True/False, a spreadsheet yes/no, an inspection
#: line OK/NG (the normal words are image folders' normal class names); 1 anomalous, 0 normal
_LABEL_WORDS = {**dict.fromkeys(("true", "yes", "anomaly", "anomalous", "ng"), 1.0),
                **dict.fromkeys(("false", "no", "normal", "ok", "good"), 0.0)}


class SeriesReader:
    """Turns CSV rows of one layout into (timestamp text, time, values, label), checking each."""

    def __init__(self, header: Sequence[str], where: str, columns: Sequence[str] | None = None,
                 time_column: str | None = None, label_column: str | None = None, nan: str = "reject",
                 order: str = "reject", decimal_comma: bool = False, samples: bool = False):
        if nan not in NAN_POLICIES:
            raise AnomalyError(f"nan='{nan}': unknown; use one of {', '.join(NAN_POLICIES)}")
        if order not in ORDERS:
            raise AnomalyError(f"order='{shown(order, 40)}': unknown; use one of {', '.join(ORDERS)}")
        self.order = order
        self.last_time: tuple[float, str, int] | None = None  # (time, stamp, line) of the last row
        self.last_row: Sequence[str] | None = None  # its cells (naming the series of a long-format file)
        self.header = header_names(header)
        self.where, self.nan = where, nan
        self.decimal_comma = decimal_comma  # fields split by ';' or tabs: 3,5 is three and a half

        def index(name: str) -> int:
            if name not in self.header:
                raise ColumnNotFound(f"{where}: column '{shown(name, 60)}' not found; columns are: "
                                   f"{shown(', '.join(self.header))}")
            return self.header.index(name)

        if time_column is None:
            time_column = next((h for h in self.header if h.lower() in TIME_NAMES), None)
        self.time_column = time_column
        self.time_idx = None if time_column is None else index(time_column)
        self.label_named = label_column is None  # (then the label column, if any, is found by its name)
        if label_column is None:
            label_column = next((h for h in self.header if h.lower() in LABEL_NAMES and h not in (columns or ())
                                 and h != time_column), None)
        self.label_column = label_column
        self.label_idx = None if label_column is None else index(label_column)
        self.id_idx = next((i for i, h in enumerate(self.header) if is_id_name(h) and h not in (columns or ())
                            and i not in (self.time_idx, self.label_idx)), None)
        self.id_column = None if self.id_idx is None else self.header[self.id_idx]
        self.row_names: list[str] | None = [] if samples and self.id_idx is not None else None
        taken = {self.time_idx, self.label_idx, self.id_idx}
        self.chosen = bool(columns)  # value columns named by the caller (else every other column)
        # (a column with no name, as a trailing ';' on every line of a spreadsheet's export makes, is no input)
        columns = list(columns) if columns else [h for i, h in enumerate(self.header) if i not in taken and h]
        if not columns:
            named = (f" (column '{shown(self.id_column, 60)}' is read as row names, as an id; to read it as values, "
                     "name it in --column)" if self.id_column is not None else "")
            raise AnomalyError(f"{where}: no value columns; columns are: {shown(', '.join(self.header))}{named}")
        self.columns = columns
        self.value_idx = [index(c) for c in columns]
        self.last_values: tuple | None = None

    def _hint(self, row: Sequence[str], cell: str, i: int) -> str:
        """What to do about a cell (of column ``i``) that is not a number: a decimal comma, a date
        in a column not named as the time, or (value columns not chosen) a text column among them."""
        if _DECIMAL_COMMA.fullmatch(cell):  # (fields split by commas: a quoted "3,5")
            return " (a decimal comma: write numbers with a point, or separate fields with ';')"
        if self.time_idx is None:
            try:
                parse_time(cell)
                return f" (a date/time: name its column with --time-column '{shown(self.header[i], 60)}')"
            except ValueError:
                pass
        if self.chosen:
            return ""
        numeric = []
        for i, name in zip(self.value_idx, self.columns):
            try:
                float(row[i])
                numeric.append(name)
            except ValueError:
                pass
        return ("; choose the value columns with --column" + (f" (numbers on this line: {shown(', '.join(numeric), 120)})"
                                                              if numeric else ""))

    def parse(self, row: Sequence[str], line: int, stream: bool = False):
        """One row -> (timestamp text or None, time or None, values (a tuple of D floats, NaN for
        gaps), label); Python floats, not a small array per row (``benchmarks/csv_read.py``).

        With ``stream=True`` and ``nan="interpolate"`` a gap takes the last value seen."""
        at = f"{self.where}: line {line}"
        if len(row) != len(self.header):
            raise AnomalyError(f"{at}: {len(row)} fields, the header has {len(self.header)}")
        values = []
        for i, name in zip(self.value_idx, self.columns):
            cell = row[i].strip()
            if cell.lower() in MISSING:
                if self.nan == "reject":
                    raise AnomalyError(
                        f"{at}: column '{shown(name, 60)}' is empty (a gap); use --nan interpolate to fill gaps"
                    )
                values.append(math.nan)
                continue
            try:
                values.append(float(cell.replace(",", ".") if self.decimal_comma and _DECIMAL_COMMA.fullmatch(cell)
                                     else cell))
            except ValueError:
                raise AnomalyError(f"{at}: column '{shown(name, 60)}': '{shown(cell, 60)}' is not a number"
                                   + self._hint(row, cell, i)) from None
            if not math.isfinite(values[-1]):
                raise AnomalyError(f"{at}: column '{shown(name, 60)}': '{shown(cell, 60)}' is not a finite number")
        stamp = t = label = None
        if self.time_idx is not None:
            stamp = row[self.time_idx].strip()
            try:
                t = parse_time(stamp)
            except ValueError:
                raise AnomalyError(f"{at}: column '{shown(self.time_column, 60)}': '{shown(stamp, 60)}' is not a "
                                   "date/time (ISO 8601, or dotted as 31.12.2026 23:15) or a number") from None
            if not np.isfinite(t):
                raise AnomalyError(f"{at}: column '{shown(self.time_column, 60)}': '{shown(stamp, 60)}' is not a finite time")
            last = self.last_time
            if self.order == "reject" and last is not None and t <= last[0]:
                fix = ("add ?order=file to the data spec to read the rows in the file's order (as a local-time "
                       "log's hour when clocks go back; rows of several series one under another need one series "
                       "per file)" if t == last[0] else
                       "add ?order=sort to the data spec to sort rows by time")
                key = self._series_key(row)
                if key is not None:  # (neither order option would help: they would interleave the series)
                    fix = (f"the rows hold several series told apart by column '{shown(key, 60)}' (long format): "
                           "give one series per file, or each as a column (pandas: df.pivot(index="
                           f"'{shown(self.time_column, 60)}', columns='{shown(key, 60)}', values=...))")
                raise AnomalyError(
                    f"{at}: column '{shown(self.time_column, 60)}': '{shown(stamp, 60)}' "
                    f"{'repeats' if t == last[0] else 'goes back from'} line {last[2]}'s '{shown(last[1], 60)}'; "
                    f"times must increase ({fix})"
                )
        if self.label_idx is not None:
            cell = row[self.label_idx].strip()
            try:
                label = float(cell)
            except ValueError:
                label = _LABEL_WORDS.get(cell.lower())
            if label not in (0.0, 1.0):
                name = shown(self.label_column, 60)
                raise AnomalyError(f"{at}: label '{shown(cell, 60)}' in column '{name}' is not 0 or 1 (or true/false, yes/no, anomaly/normal, ng/ok)"
                                   + (f" (a column named '{name}' is read as labels; to read it as values, name it "
                                      "in --column)" if self.label_named else ""))
            label = int(label)
        gap = any(v != v for v in values)  # (NaN)
        if stream and gap:
            if self.last_values is None:
                raise AnomalyError(f"{at}: a gap before any value; nothing to fill it with")
            values, gap = [last if v != v else v for v, last in zip(values, self.last_values)], False
        values = tuple(values)
        if not gap:
            self.last_values = values
        if t is not None:
            self.last_time = (t, stamp, line)
            self.last_row = row
        if self.row_names is not None:
            self.row_names.append(row[self.id_idx].strip())
        return stamp, t, values, label

    def _series_key(self, row: Sequence[str]) -> str | None:
        """A column that is read neither as values, time nor label, whose cell differs from the
        previous row's where the time repeats or goes back: the name of each series in a file of
        several, one under another (``sensor,timestamp,value``). None when there is none."""
        read = {*self.value_idx, self.time_idx, self.label_idx}
        last = self.last_row
        if last is None:
            return None
        return next((h for i, h in enumerate(self.header) if i not in read and row[i].strip() != last[i].strip()), None)


class SeriesSource(DataSource):
    """A series in memory: values (T, D), optional timestamps, 0/1 labels and anomaly windows
    (inclusive step ranges, with a reference step each: NAB's labelled anomaly)."""

    kind = "series"
    targets = class_names = normal_names = None
    def __init__(self, spec, values, columns, stamps=None, times=None, time_column=None, labels=None,
                 windows=None, references=None, header=None, nab_name=None, label_column=None,
                 id_column=None, row_names=None, time_guessed=False):
        self.spec, self.values, self.columns = spec, np.asarray(values, dtype=np.float64), list(columns)
        self.label_column = label_column  # the CSV column the labels came from
        self.stamps, self.times, self.time_column = stamps, times, time_column
        self.labels, self.windows, self.references = labels, windows, references
        self.header, self.nab_name = header, nab_name
        self.id_column = id_column  # the column that names rows (is_id_name; never an input)
        self.row_names = row_names  # with ?rows=samples: the id column's text per row
        self.time_guessed = time_guessed  # the time column found by its dates (dated_column), not its name

    def __len__(self) -> int:
        return len(self.values)

    @property
    def dated(self) -> bool:
        """Whether the steps have dates (ISO 8601 stamps), not numbers in unknown units."""
        if self.times is None or not self.stamps:
            return False
        try:
            float(self.stamps[0])
        except ValueError:
            return True
        return False

    @property
    def step_seconds(self) -> float | None:
        """The median time between steps in seconds when the steps have dates, else None."""
        if not self.dated or len(self.times) < 2:
            return None
        step = float(np.median(np.diff(np.asarray(self.times, dtype=np.float64))))
        return step if step > 0 else None

    def batches(self, batch_size: int) -> Iterator[tuple]:
        for i in range(0, len(self.values), batch_size):
            y = None if self.labels is None else self.labels[i : i + batch_size]
            yield self.values[i : i + batch_size], y

    def slice(self, start: int, stop: int) -> SeriesSource:
        """Steps [start, stop); windows are cut to the range and re-indexed."""
        sl = slice(start, stop)
        windows = refs = None
        if self.windows is not None:
            keep = [i for i, (a, b) in enumerate(self.windows) if b >= start and a < stop]
            windows = [(max(self.windows[i][0], start) - start, min(self.windows[i][1], stop - 1) - start) for i in keep]
            refs = None if self.references is None else [self.references[i] - start for i in keep]
        return SeriesSource(
            self.spec, self.values[sl], self.columns,
            None if self.stamps is None else self.stamps[sl], None if self.times is None else self.times[sl],
            self.time_column, None if self.labels is None else self.labels[sl], windows, refs,
            self.header, self.nab_name, self.label_column, self.id_column,
            None if self.row_names is None else self.row_names[sl], self.time_guessed,
        )

    def subset(self, indices: np.ndarray) -> SeriesSource:
        idx = np.asarray(indices)
        if idx.size and not np.array_equal(idx, np.arange(idx[0], idx[0] + idx.size)):
            raise AnomalyError(f"{self.spec}: a series can only be cut into one contiguous time range")
        return self.slice(int(idx[0]) if idx.size else 0, int(idx[0]) + idx.size if idx.size else 0)

    def split(self, fraction: float, seed: int = 0) -> tuple[SeriesSource, SeriesSource]:
        """Split by time, never at random: (the first 1 - fraction, the last ``fraction``)."""
        n = len(self)
        k = round(n * fraction)
        if not 0 < fraction < 1 or k < 1 or k >= n:
            raise AnomalyError(f"{self.spec}: cannot hold out {fraction:g} of {n} time steps")
        return self.slice(0, n - k), self.slice(n - k, n)

    def anomaly_labels(self, normal_names=None) -> np.ndarray | None:
        return None if self.labels is None else np.asarray(self.labels, dtype=np.int64)

    def gap_hint(self) -> str | None:
        """What to say about rare gaps in the time steps: steps over 1.5 times the usual (median)
        one, when they are at most 1 % of the steps (more often, they are the series' own rhythm,
        as business days' weekends). Rows are read as consecutive steps, so a gap shifts the phase
        of every rhythm after it (a season's period is then misread). None when there is nothing
        to say."""
        if self.times is None or len(self.times) < 3 or self.nab_name:  # (NAB scores its rows as they are)
            return None
        d, step, big, spans = _gaps(self.times)
        if not 0 < len(big) <= 0.01 * len(d):
            return None
        at = int(big[np.argmax(d[big])])
        missing = int(spans.sum()) - len(big)
        span = _duration if self.dated else (lambda x: f"{x:g}")
        gaps, steps = f"{len(big)} gap" + "s" * (len(big) > 1), f"{missing} missing step" + "s" * (missing > 1)
        return (f"{self.spec}: the time steps have {gaps} ({steps} of {span(step)}; the longest: {span(d[at])} after "
                f"'{shown(self.stamps[at], 40)}'); rows are read as consecutive steps, "
                "so a rhythm's phase shifts at each gap: add ?grid=1 to the data spec (with --nan interpolate) to "
                "put the steps on their regular grid")

    def describe(self) -> dict:
        return {"spec": self.spec, "n": len(self), "columns": self.columns,
                "time_column": self.time_column, "header": self.header, "classes": None}


def _gaps(times) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """The time steps ``d`` between rows, their median, the rows ``i`` whose step to the next is
    over 1.5 times the median (gaps), and how many median steps each gap spans (rounded): what
    :meth:`SeriesSource.gap_hint` reports and ``?grid=1`` fills."""
    d = np.diff(np.asarray(times, dtype=np.float64))
    step = float(np.median(d)) if len(d) else 0.0
    big = np.flatnonzero(d > 1.5 * step) if step > 0 else np.zeros(0, dtype=np.int64)
    return d, step, big, np.round(d[big] / step) if step > 0 else np.zeros(0)


def _duration(seconds: float) -> str:
    """A time step in the largest unit it fills: '5 min', '1 h', '1.5 day'."""
    for unit, size in (("day", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def numbered_lines(fh, max_line: int = MAX_LINE) -> Iterator[tuple[int, str, bool]]:
    """``(line number, line, whole)`` for each line of a text file, read with at most
    ``max_line + 1`` characters in memory: a longer line comes as its first piece with
    ``whole=False`` (the caller refuses it, or reads on past it)."""
    number = 0
    while True:
        line = fh.readline(max_line + 1)
        if not line:
            return
        number += 1
        yield number, line, not (len(line) > max_line and not line.endswith(("\n", "\r")))


def bounded_lines(fh, where: str, max_line: int = MAX_LINE) -> Iterator[str]:
    """The lines of a text file, each read with at most ``max_line + 1`` characters in memory: a
    longer line is refused (AnomalyError with its number) while it is being read."""
    for number, line, whole in numbered_lines(fh, max_line):
        if not whole:
            raise AnomalyError(f"{where}: line {number}: longer than {max_line:,} characters; refused")
        yield line


def _read_rows(spec: str, text_lines, columns, time_column, label_column, nan, order="reject",
               grid: bool = False, samples: bool = False) -> SeriesSource:
    lines, head = iter(text_lines), []
    for line in lines:  # up to the first line that is not blank: it sets the separator
        head.append(line)
        if line.strip():
            break
    rows = csv.reader(itertools.chain(head, lines), delimiter=delimiter(head[-1]) if head else ",")
    try:
        return _parse_rows(spec, rows, columns, time_column, label_column, nan, order, grid, samples)
    except csv.Error as e:
        raise AnomalyError(f"{spec}: line {rows.line_num}: malformed CSV ({e})") from None


def _parse_rows(spec: str, rows, columns, time_column, label_column, nan, order="reject",
                grid: bool = False, samples: bool = False) -> SeriesSource:
    header = None
    for header in rows:
        if any(c.strip() for c in header):
            break
    if not header or not any(c.strip() for c in header):
        raise AnomalyError(f"{spec}: empty file; expected a CSV header line and rows")
    numbered = ((row, rows.line_num) for row in rows)  # (each row with its line, read as it comes)
    ahead = []  # the rows up to the first that is not blank: its cells may name the time column
    for row, n in numbered:
        ahead.append((row, n))
        if any(c.strip() for c in row):
            break
    guessed = None
    if time_column is None and ahead and any(c.strip() for c in ahead[-1][0]):
        time_column = guessed = dated_column(header, ahead[-1][0], columns)
    reader = SeriesReader(header, spec, columns, time_column, label_column, nan, order,
                          decimal_comma=getattr(getattr(rows, "dialect", None), "delimiter", ",") != ",",
                          samples=samples)
    parsed, blank, lines = [], [], []
    for row, n in itertools.chain(ahead, numbered):
        if any(c.strip() for c in row):
            parsed.append(reader.parse(row, n))
            lines.append(f"line {n}")
        else:
            blank.append(n)
    if blank:  # skipped, but never silently
        shown = ", ".join(map(str, blank[:5])) + (", ..." if len(blank) > 5 else "")
        print(f"anomalib_lite: {spec}: {len(blank)} blank line(s) skipped (line {shown})", file=sys.stderr)
    if not parsed:
        raise AnomalyError(f"{spec}: no rows after the header")
    if order == "sort" and reader.time_idx is not None:
        parsed, lines = _sorted_by_time(spec, reader.time_column, parsed, lines)
    if grid:
        parsed = _on_grid(spec, parsed, nan, reader.time_idx is not None)
    stamps, times, values, labels = zip(*parsed)
    x = fill_gaps(np.array(values, dtype=np.float64), nan, where=spec)
    timed = reader.time_idx is not None
    return SeriesSource(
        spec, x, reader.columns, list(stamps) if timed else None, np.array(times) if timed else None,
        reader.time_column, np.array(labels, dtype=np.int64) if reader.label_idx is not None else None,
        header=reader.header, label_column=reader.label_column, id_column=reader.id_column,
        row_names=reader.row_names, time_guessed=guessed is not None,
    )


def _on_grid(spec: str, parsed: list, nan: str, timed: bool) -> list:
    """``?grid=1``: rows on the regular grid of the median step: a step that spans k steps of the
    grid gets k - 1 rows of gaps (NaN values, label 0; times and stamps on the grid, in the
    stamps' own style), for ``nan="interpolate"`` to fill. Steps that are not a whole number of
    grid steps (jitter) stay as they are."""
    if not timed or len(parsed) < 3:
        raise AnomalyError(f"{spec}: grid=1 needs a time column and at least 3 rows")
    d, step, big, spans = _gaps([row[1] for row in parsed])
    if not step > 0:
        raise AnomalyError(f"{spec}: grid=1: the median time step is {step:g}; times must increase")
    fill = {int(i): int(k) for i, k in zip(big, spans) if abs(d[i] - k * step) <= 0.1 * step}  # whole grid steps
    out, first = [], parsed[0][0].strip()
    try:
        float(first)
        style = None  # times are numbers
    except ValueError:  # a date, with a time after "T" or " ", or alone; ISO or dotted
        style = "T" if "T" in first else " " if ":" in first else "date"
    dotted = None  # (the strftime format of dotted stamps)
    if _DOTTED.fullmatch(first):
        dotted = "%d.%m.%Y" + ("" if ":" not in first else " %H:%M" if first.count(":") == 1 else " %H:%M:%S")
    for i, row in enumerate(parsed):
        out.append(row)
        for j in range(1, fill.get(i, 1)):  # the steps missing after row i
            t = row[1] + j * step
            when = dt.datetime.fromtimestamp(t, dt.timezone.utc).replace(tzinfo=None)
            stamp = (f"{t:.10g}" if style is None else when.strftime(dotted) if dotted else
                     when.date().isoformat() if style == "date" else when.isoformat(sep=style))
            out.append((stamp, t, (math.nan,) * len(row[2]), None if row[3] is None else 0))
    added = len(out) - len(parsed)
    if added and nan != "interpolate":
        raise AnomalyError(f"{spec}: grid=1 adds {added} missing step(s) as gaps; use --nan interpolate to fill them")
    return out


def _sorted_by_time(spec: str, column: str, parsed: list, lines: list) -> tuple[list, list]:
    """Rows in time order (stable); a time that still repeats is an error naming both rows
    (``lines``: where each row came from, as "line 7" or "days/d2.csv's row 3")."""
    order = sorted(range(len(parsed)), key=lambda i: parsed[i][1])
    parsed, lines = [parsed[i] for i in order], [lines[i] for i in order]
    for i in range(1, len(parsed)):
        if parsed[i][1] == parsed[i - 1][1]:
            raise AnomalyError(f"{spec}: {lines[i]}: column '{column}': '{shown(parsed[i][0], 60)}' repeats "
                               f"{lines[i - 1]}'s time; each row needs its own time (?order=file reads the "
                               "rows in the file's order)")
    return parsed, lines


def load_csv(spec: str, path: str | Path, columns=None, time_column=None, label_column=None,
             nan: str = "reject", order: str = "reject", grid: bool = False, samples: bool = False) -> SeriesSource:
    """A CSV series from a file, or from stdin when ``path`` is ``-``; ``order``: see
    :data:`ORDERS`; ``grid``: missing steps become rows of gaps (:func:`_on_grid`); ``samples``:
    the rows are samples (``?rows=samples``), whose id column's text (:func:`is_id_name`) is kept
    as ``row_names``. Lines are read with bounded memory (:func:`bounded_lines`)."""
    if str(path) == "-":
        return _read_rows(spec, bounded_lines(sys.stdin, spec), columns, time_column, label_column, nan, order, grid,
                          samples)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return _read_rows(spec, bounded_lines(fh, spec), columns, time_column, label_column, nan, order, grid,
                              samples)
    except UnicodeDecodeError:
        raise AnomalyError(f"{spec}: not a text (UTF-8) CSV file") from None
    except csv.Error as e:
        raise AnomalyError(f"{spec}: malformed CSV ({e})") from None


def load_csvs(spec: str, files: list[Path], columns=None, time_column=None, label_column=None,
              nan: str = "reject", order: str = "reject", grid: bool = False, samples: bool = False) -> SeriesSource:
    """One series from several CSV files (a glob such as ``days/*.csv``: daily exports), read in
    name order: each file as :func:`load_csv` reads it (its errors name the file and line), the
    same columns in each, and times that go on increasing from one file to the next (``order=
    "file"``: unchecked; ``"sort"``: every row sorted by time). ``grid`` applies to the whole."""
    parts = [load_csv(str(f), f, columns, time_column, label_column, nan,
                      "file" if order == "sort" else order, samples=samples) for f in files]  # (sort: every row, below)
    first = parts[0]
    for f, p in zip(files[1:], parts[1:]):
        if (p.columns, p.time_column, p.label_column) != (first.columns, first.time_column, first.label_column):
            raise AnomalyError(f"{f}: columns {', '.join(p.columns)} (time: {p.time_column}, labels: {p.label_column}) "
                               f"differ from {files[0]}'s {', '.join(first.columns)} (time: {first.time_column}, labels: "
                               f"{first.label_column}); the files of one series need the same columns")
    timed = first.times is not None
    if timed and order == "reject":
        for (fa, a), (fb, b) in zip(zip(files, parts), zip(files[1:], parts[1:])):
            if b.times[0] <= a.times[-1]:
                raise AnomalyError(f"{fb}: its first time '{shown(b.stamps[0], 60)}' is not after {fa}'s last "
                                   f"'{shown(a.stamps[-1], 60)}'; the files are read in name order ({spec}?order=sort "
                                   "sorts every row by time)")
    rows = [(st, t, tuple(v), lab) for p in parts for st, t, v, lab in zip(
        p.stamps or [None] * len(p), p.times if timed else [None] * len(p), p.values.tolist(),
        p.labels.tolist() if p.labels is not None else [None] * len(p))]
    if order == "sort" and timed:
        where = [f"{f}'s row {k + 1}" for f, p in zip(files, parts) for k in range(len(p))]
        rows, _ = _sorted_by_time(spec, first.time_column, rows, where)
    if grid:
        rows = _on_grid(spec, rows, nan, timed)
    stamps, times, values, labels = zip(*rows)
    x = fill_gaps(np.array(values, dtype=np.float64), nan, where=spec)
    names = [name for p in parts for name in p.row_names] if samples and all(  # (samples: in the files' order)
        p.row_names is not None for p in parts) else None
    return SeriesSource(
        spec, x, first.columns, list(stamps) if timed else None, np.array(times) if timed else None,
        first.time_column, np.array(labels, dtype=np.int64) if first.labels is not None else None,
        header=first.header, label_column=first.label_column, id_column=first.id_column, row_names=names,
        time_guessed=first.time_guessed,
    )


def nab_files(data_dir=None) -> list[str]:
    """The NAB series present under ``<data root>/NAB``, as ``category/file.csv`` names."""
    root = data_root(data_dir) / "NAB"
    windows = _nab_json(root, "combined_windows.json", "nab:")
    return sorted(name for name in windows if (root / "data" / name).is_file())


def _nab_json(root: Path, name: str, spec: str) -> dict:
    path = root / "labels" / name
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise AnomalyError(f"{spec}: cannot read NAB labels {path} ({e}); set ANOMALY_DATA_DIR or --data-dir") from None


def load_nab(spec: str, name: str, data_dir=None, nan: str = "reject", order: str = "file") -> SeriesSource:
    """A NAB series (``realKnownCause/nyc_taxi.csv``) with its windows and labelled anomalies."""
    root = data_root(data_dir) / "NAB"
    path = root / "data" / name
    if not path.is_file():
        known = ", ".join(nab_files(data_dir)[:4]) if (root / "labels").is_dir() else ""
        raise AnomalyError(
            f"{spec}: {path} not found" + (f"; NAB series are e.g.: {known}" if known else
                                            "; set ANOMALY_DATA_DIR or --data-dir to the folder holding NAB/")
        )
    src = load_csv(spec, path, ["value"], "timestamp", None, nan, order)  # NAB scores rows in file order
    wins = _nab_json(root, "combined_windows.json", spec).get(name, [])
    points = _nab_json(root, "combined_labels.json", spec).get(name, [])
    times = src.times
    windows, refs = [], []
    for a, b in wins:
        lo = int(np.searchsorted(times, parse_time(a), "left"))
        hi = int(np.searchsorted(times, parse_time(b), "right")) - 1
        inside = [int(np.searchsorted(times, parse_time(p), "left")) for p in points]
        inside = [p for p in inside if lo <= p <= hi]
        windows.append((lo, hi))
        refs.append(inside[0] if inside else (lo + hi) // 2)
    labels = np.zeros(len(src), dtype=np.int64)
    for lo, hi in windows:
        labels[lo : hi + 1] = 1
    src.labels, src.windows, src.references, src.nab_name = labels, windows, refs, name
    return src
