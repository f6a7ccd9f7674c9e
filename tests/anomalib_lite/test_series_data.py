"""Series inputs: the normaliser's series path, CSV and NAB sources, gaps, cuts in time."""
import numpy as np
import pytest
import torch

import anomalib_lite as al
from anomalib_lite import AnomalyError, iter_series
from anomalib_lite.data.batches import fill_gaps


def test_shapes_chunks_and_time_steps():
    (b,) = list(iter_series(np.arange(5.0)))
    assert b.x.shape == (5, 1) and b.x.dtype == torch.float64 and b.y is None
    got = list(iter_series([np.zeros((3, 2)), torch.ones(2, 2), ([7.0, 8.0], None)][:2]))
    assert [len(g) for g in got] == [3, 2] and torch.cat([g.index for g in got]).tolist() == [0, 1, 2, 3, 4]
    # a scalar is one step; uint8 is not scaled like an image
    (b,) = list(iter_series(np.array(200, dtype=np.uint8)))
    assert b.x.tolist() == [[200.0]]
    x, y = np.arange(6.0), np.array([0, 0, 1, 1, 0, 0])
    got = list(iter_series((x, y), batch_size=4))
    assert torch.cat([g.y for g in got]).tolist() == y.tolist()


@pytest.mark.parametrize(
    "data, message",
    [
        (np.zeros((4, 2, 3)), "not a series; expected (T,) or (T, D); embed image frames first"),
        (np.array([1.0, 2.0, np.nan, 4.0]), "time step 2 is NaN; fill gaps"),
        ([np.zeros((3, 2)), np.array([[1.0, np.inf]])], "time step 3 (channel 1) is inf"),
        ([np.zeros((3, 2)), np.zeros((2, 3))], "time step 3 has 3 channels, earlier steps 2"),
        ((np.zeros(4), np.array([0, 1, 2, 0])), "label 2 at time step 2 is not 0 or 1"),
        ((np.zeros(4), np.array([0, 0.5, 0, 0])), "label 0.5 at time step 1 is not 0 or 1"),
        (np.zeros(0), "no time steps"),
    ],
)
def test_bad_series_name_the_step(data, message):
    with pytest.raises(AnomalyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        list(iter_series(data, batch_size=3))


def test_fill_gaps_interpolates_or_rejects():
    x = np.array([[np.nan, 1.0], [2.0, np.nan], [np.nan, 3.0], [6.0, 5.0], [np.nan, 5.0]])
    filled = fill_gaps(x, "interpolate")
    assert filled[:, 0].tolist() == [2.0, 2.0, 4.0, 6.0, 6.0]  # ends take the nearest value
    assert filled[:, 1].tolist() == [1.0, 2.0, 3.0, 5.0, 5.0]
    with pytest.raises(AnomalyError, match=r"time step 0 \(channel 0\) is NaN"):
        fill_gaps(x, "reject")
    with pytest.raises(AnomalyError, match="channel 0 has no values"):
        fill_gaps(np.full((3, 1), np.nan), "interpolate")


def _csv(tmp_path, text, name="s.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_columns_time_labels_and_cuts(tmp_path):
    rows = "".join(f"2024-01-01T00:{i:02d}:00,{i},{2 * i},{int(i in (5, 6))}\n" for i in range(10))
    path = _csv(tmp_path, "timestamp,a,b,anomaly\n" + rows)
    src = al.load_data(path, label_column="anomaly")
    assert src.values.shape == (10, 2) and src.columns == ["a", "b"] and src.time_column == "timestamp"
    assert src.anomaly_labels().tolist() == [0] * 5 + [1, 1] + [0] * 3
    assert src.stamps[3] == "2024-01-01T00:03:00"
    one = al.load_data(path, columns=["b"])
    assert one.values[:, 0].tolist() == [2.0 * i for i in range(10)]
    head, tail = src.split(0.3)  # by time, never shuffled
    assert head.values[:, 0].tolist() == list(range(7)) and tail.values[:, 0].tolist() == [7, 8, 9]
    cut = al.load_data(f"{path}?start=2&stop=0.5", columns=["a"])
    assert cut.values[:, 0].tolist() == [2, 3, 4]
    assert len(al.load_data(f"{path}?limit=4")) == 4
    with pytest.raises(AnomalyError, match="contiguous"):
        src.subset(np.array([0, 2]))


def test_csv_column_named_as_labels_is_not_an_input(tmp_path):
    """A file's own ground truth (a column named label/anomaly/...) is read as labels, never as a
    value channel, unless the caller names it as a value column."""
    rows = "".join(f"2024-01-01T00:{i:02d}:00,{i},{int(i in (5, 6))}\n" for i in range(10))
    path = _csv(tmp_path, "timestamp,load,Label\n" + rows)
    src = al.load_data(path)
    assert src.columns == ["load"] and src.label_column == "Label"
    assert src.anomaly_labels().tolist() == [0] * 5 + [1, 1] + [0] * 3
    assert src.slice(4, 8).label_column == "Label"
    both = al.load_data(path, columns=["load", "Label"])  # named: a value
    assert both.values.shape == (10, 2) and both.anomaly_labels() is None
    scores = _csv(tmp_path, "value,anomaly\n1,0.5\n2,0.25\n", name="scored.csv")
    # labels as words, as pandas (True/False) and spreadsheets (yes/no) write them
    words = _csv(tmp_path, "value,anomaly\n1,False\n2,true\n3,no\n4,YES\n5,1.0\n6,NG\n7,ok\n8,Anomaly\n9,normal\n",
                 name="words.csv")
    assert al.load_data(words).anomaly_labels().tolist() == [0, 1, 0, 1, 1, 1, 0, 1, 0]
    with pytest.raises(AnomalyError, match=r"line 2: label '0.5' in column 'anomaly' is not 0 or 1 \(or true/false, yes/no, anomaly/normal, ng/ok\) \(a column named "
                                           r"'anomaly' is read as labels; to read it as values, name it in --column\)"):
        al.load_data(scores)
    assert al.load_data(scores, columns=["value", "anomaly"]).values.shape == (2, 2)


def test_csv_column_named_as_an_id_is_not_an_input(tmp_path):
    """A column that names rows (a database key, pandas' written index) is never a value channel
    unless named in --column; as a table's rows (?rows=samples) its text names each sample."""
    rows = "".join(f"{100 + i},2024-01-01T00:{i:02d}:00,{i},{2 * i}\n" for i in range(10))
    path = _csv(tmp_path, "sensor_id,timestamp,load,temp\n" + rows)
    src = al.load_data(path)
    assert src.columns == ["load", "temp"] and src.id_column == "sensor_id" and src.row_names is None
    assert al.load_data(path, columns=["sensor_id", "load"]).values[0].tolist() == [100.0, 0.0]  # named: a value
    table = al.load_data(f"{path}?rows=samples&limit=4")
    assert table.x.shape == (4, 2) and table.names == ["100", "101", "102", "103"]
    # a series whose one value column has an id's name: the error says how it was read, and the fix
    index = _csv(tmp_path, "timestamp,index\n2024-01-01,101.5\n2024-01-02,102.0\n", name="index.csv")
    with pytest.raises(AnomalyError, match=r"no value columns; .*column 'index' is read as row names.*--column"):
        al.load_data(index)
    assert al.load_data(index, columns=["index"]).values.ravel().tolist() == [101.5, 102.0]
    # pandas' to_csv writes its index as a first column with no name ('') or 'Unnamed: 0' once re-read
    for head in (",a,b", "Unnamed: 0,a,b", "ID,a,b"):
        p = _csv(tmp_path, head + "\n0,1.5,2\n1,2.5,3\n", name="t.csv")
        assert al.load_data(p).columns == ["a", "b"], head


def test_rare_gaps_in_dated_steps_are_said_before_a_fit(tmp_path):
    """Rows are read as consecutive steps, so a gap shifts every rhythm after it (an hourly
    series with 6 hours missing had its season read as 1170 steps): ``fit`` says so, with how to
    fill it. Gaps that are the series' own rhythm (business days) and NAB's series say nothing."""
    import datetime as dt

    from anomalib_lite.app import workflows
    from anomalib_lite.data.sources import fit_hint

    t0 = dt.datetime(2026, 1, 1)
    hours = [h for h in range(300) if not 100 <= h < 106]
    path = _csv(tmp_path, "time,v\n" + "".join(f"{t0 + dt.timedelta(hours=h):%Y-%m-%d %H:%M:%S},{h % 24}\n"
                                                for h in hours))
    hint = fit_hint(str(path), al.load_data(path))
    assert ("the time steps have 1 gap (6 missing steps of 1 h; the longest: 7 h after '2026-01-05 03:00:00'); "
            "rows are read as consecutive steps") in hint and "add ?grid=1 to the data spec (with --nan interpolate)" in hint
    # what the hint says: the steps on their grid, the missing ones gaps that interpolation fills
    on = al.load_data(f"{path}?grid=1", nan="interpolate")
    assert len(on) == 300 and np.all(np.diff(on.times) == 3600) and on.stamps[100] == "2026-01-05 04:00:00"
    assert np.allclose(on.values[99:107, 0], np.linspace(3, 10, 8)) and fit_hint(f"{path}?grid=1", on) is None
    days = _csv(tmp_path, "date,v\n2026-01-01,1\n2026-01-02,2\n2026-01-05,5\n2026-01-06,6\n", "d.csv")
    assert al.load_data(f"{days}?grid=1", nan="interpolate").stamps == [f"2026-01-0{d}" for d in range(1, 7)]
    with pytest.raises(AnomalyError, match=r"grid=1 adds 6 missing step\(s\) as gaps; use --nan interpolate"):
        al.load_data(f"{path}?grid=1")
    for spec, why in ((f"{path}?grid=2", "use grid=1"), ("nab:realKnownCause/nyc_taxi.csv?grid=1", "CSV series"),
                      (f"{tmp_path}?grid=1", "applies to time series only")):
        with pytest.raises(AnomalyError, match=why):
            al.load_data(spec)
    days = [d for d in range(300) if d % 7 < 5]  # business days: weekends are the rhythm, not gaps
    weekdays = _csv(tmp_path, "date,v\n" + "".join(f"{t0 + dt.timedelta(days=d):%Y-%m-%d},{d}\n" for d in days), "b.csv")
    whole = _csv(tmp_path, "time,v\n" + "".join(f"{t0 + dt.timedelta(hours=h):%Y-%m-%d %H:%M:%S},1\n"
                                                 for h in range(300)), "w.csv")
    assert fit_hint(str(weekdays), al.load_data(weekdays)) is None and fit_hint(str(whole), al.load_data(whole)) is None

    class Stop(Exception):
        pass

    det = al.Continuation(device="cpu")
    det.fit = lambda *a, **k: (_ for _ in ()).throw(Stop())  # the warning comes before any fitting
    with pytest.warns(UserWarning, match="the time steps have 1 gap"), pytest.raises(Stop):
        workflows.fit_and_save(det, str(path), tmp_path / "m.anomaly")
    assert not (tmp_path / "m.anomaly").exists()


@pytest.mark.parametrize(
    "text, kwargs, message",
    [
        ("t,v\n1,2\n", {"columns": ["value"]}, "column 'value' not found; columns are: t, v"),
        ("timestamp,value\n1,2\n2,abc\n", {}, "line 3: column 'value': 'abc' is not a number; choose the value "
                                               "columns with --column"),
        ("timestamp,host,load\n1,a,2\n", {}, "line 2: column 'host': 'a' is not a number; choose the value columns "
                                             "with --column (numbers on this line: load)"),
        ('timestamp,load\n1,"0,5"\n', {}, "line 2: column 'load': '0,5' is not a number (a decimal comma: write "
                                          "numbers with a point, or separate fields with ';')"),
        ("timestamp;load\n1;1.234,5\n", {}, "line 2: column 'load': '1.234,5' is not a number"),
        ("Zeit;Last\n1;1\n01.01.2026 00:00;2\n", {}, "line 3: column 'Zeit': '01.01.2026 00:00' is not a number (a "
                                                     "date/time: name its column with --time-column 'Zeit')"),
        ("timestamp;load\n31.02.2026;1\n", {}, "column 'timestamp': '31.02.2026' is not a date/time (ISO 8601, or "
                                             "dotted as 31.12.2026 23:15)"),
        ("timestamp,value\nyesterday,2\n", {}, "line 2: column 'timestamp': 'yesterday' is not a date/time"),
        ("timestamp,value\n1,2\n2,\n3,4\n", {}, "line 3: column 'value' is empty (a gap); use --nan interpolate"),
        ("timestamp,value,y\n1,2,0\n2,3,2\n", {"label_column": "y"}, "line 3: label '2' in column 'y' is not 0 or 1"),
        ("timestamp,value\n1,2,3\n", {}, "line 2: 3 fields, the header has 2"),
        ("timestamp,value\n", {}, "no rows after the header"),
        ("", {}, "empty file"),
    ],
)
def test_csv_errors_name_file_line_and_column(tmp_path, text, kwargs, message):
    path = _csv(tmp_path, text)
    with pytest.raises(AnomalyError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        al.load_data(path, **kwargs)
    assert str(path) in str(e.value)


def test_csv_fields_separated_by_semicolons_or_tabs(tmp_path):
    """A spreadsheet's export with semicolons (or tabs) reads as the same series as with commas;
    a comma in the header keeps the comma."""
    rows = [("2024-01-01T00:00:00", "1.5", "a"), ("2024-01-01T00:05:00", "2.5", "b")]
    for sep in (",", ";", "\t"):
        path = tmp_path / f"sep{ord(sep)}.csv"
        path.write_text("\n".join(sep.join(r) for r in [("timestamp", "load", "host"), *rows]) + "\n")
        src = al.load_data(path, columns=["load"])
        assert src.columns == ["load"] and src.values[:, 0].tolist() == [1.5, 2.5] and src.times[1] - src.times[0] == 300
    path = _csv(tmp_path, "timestamp,note\n1,a;b\n")
    with pytest.raises(AnomalyError, match="'a;b' is not a number"):
        al.load_data(path)


def test_a_european_spreadsheet_export_reads_as_the_iso_file(tmp_path):
    """Semicolons, decimal commas and dotted day-first dates (what a spreadsheet set to German or
    French writes) give the values and times of the ISO file with points; ?grid=1 fills a missing
    step with a stamp in the file's own style."""
    iso = _csv(tmp_path, "timestamp,load\n2026-12-31T22:00:00,1.5\n2026-12-31T23:00:00,-0.25\n"
                         "2027-01-01T00:00:00,2\n2027-01-01T02:00:00,3e-1\n" + "".join(
                             f"2027-01-01T{h:02d}:00:00,1\n" for h in range(3, 8)), "iso.csv")
    eu = _csv(tmp_path, "Zeit;Last\n31.12.2026 22:00;1,5\n31.12.2026 23:00;-0,25\n1.1.2027 00:00;2\n"
                        "01.01.2027 02:00;3e-1\n" + "".join(f"01.01.2027 {h:02d}:00;1\n" for h in range(3, 8)), "eu.csv")
    a, b = al.load_data(iso), al.load_data(eu, time_column="Zeit")
    guessed = al.load_data(eu)  # no column named as the time: the first one whose first cell is a date
    assert guessed.time_column == "Zeit" and guessed.time_guessed and guessed.columns == ["Last"]
    assert guessed.times.tolist() == b.times.tolist() and not b.time_guessed
    assert b.values[:, 0].tolist() == a.values[:, 0].tolist() == [1.5, -0.25, 2.0, 0.3, 1, 1, 1, 1, 1]
    assert np.array_equal(a.times, b.times)
    excel = tmp_path / "excel.csv"  # a byte-order mark, CRLF, and a ';' ending every line (an unnamed empty column)
    excel.write_bytes(b"\xef\xbb\xbf" + "".join(line + ";\r\n" for line in eu.read_text().splitlines()).encode())
    c = al.load_data(excel, time_column="Zeit")
    assert c.columns == ["Last"] and c.values[:, 0].tolist() == b.values[:, 0].tolist()
    grid = al.load_data(f"{eu}?grid=1", time_column="Zeit", nan="interpolate")
    assert len(grid) == 10 and grid.stamps[3] == "01.01.2027 01:00" and grid.values[3, 0] == pytest.approx(1.15)


def test_csv_gaps_can_be_interpolated(tmp_path):
    path = _csv(tmp_path, "timestamp,value\n1,2\n2,\n3,NaN\n4,8\n")
    assert al.load_data(path, nan="interpolate").values[:, 0].tolist() == [2.0, 4.0, 6.0, 8.0]


def test_nab_series_come_with_their_windows():
    src = al.load_data("nab:realKnownCause/nyc_taxi.csv")
    assert len(src) == 10320 and len(src.windows) == 5 and src.nab_name == "realKnownCause/nyc_taxi.csv"
    labels = src.anomaly_labels()
    for (a, b), ref in zip(src.windows, src.references):
        assert labels[a : b + 1].all() and a <= ref <= b
    assert labels.sum() == sum(b - a + 1 for a, b in src.windows)
    assert src.stamps[src.references[0]] == "2014-11-01 19:00:00"  # NAB's label (NYC marathon)
    early = al.load_data("nab:realKnownCause/nyc_taxi.csv?stop=0.15")
    assert len(early) == 1548 and early.windows == []
    with pytest.raises(AnomalyError, match="not found; NAB series are e.g."):
        al.load_data("nab:realKnownCause/missing.csv")
    with pytest.raises(AnomalyError, match="start= and stop= apply to time series only"):
        al.load_data("mnist:test?stop=5")


def test_a_glob_of_csv_files_is_one_series_in_name_order(tmp_path):
    """Daily exports (days/*.csv) read as one series: each file as a file is read (its errors name
    it), the same columns in each, times going on from file to file; ?order=sort and ?grid=1 apply
    to the whole."""
    rows = [f"2026-01-01 {i // 60:02d}:{i % 60:02d},{i}" for i in range(0, 90)]
    days = tmp_path / "days"
    days.mkdir()
    for name, part in (("a.csv", rows[:30]), ("b.csv", rows[30:60]), ("c.csv", rows[62:90])):  # 2 steps missing
        (days / name).write_text("timestamp,value\n" + "\n".join(part) + "\n")
    src = al.load_data(str(days / "*.csv"))
    whole = [float(i) for i in range(90) if i not in (60, 61)]
    assert src.values[:, 0].tolist() == whole and src.stamps[30] == "2026-01-01 00:30" and len(src.times) == 88
    grid = al.load_data(str(days / "*.csv") + "?grid=1", nan="interpolate")  # the gap between two files filled
    assert grid.values[:, 0].tolist() == [float(i) for i in range(90)]
    with pytest.raises(AnomalyError, match=r"no image files .*it holds 3 CSV file\(s\).*days/\*\.csv"):
        al.load_data(str(days))
    (days / "0.csv").write_text("timestamp,value\n" + rows[40] + "\n")  # sorts first, later in time
    with pytest.raises(AnomalyError, match=r"a.csv: its first time '2026-01-01 00:00' is not after .*0.csv's last "
                                           r"'2026-01-01 00:40'.*\?order=sort"):
        al.load_data(str(days / "*.csv"))
    with pytest.raises(AnomalyError, match=r"\?order=sort: .*b.csv's row 11: .* repeats .*0.csv's row 1's time"):
        al.load_data(str(days / "*.csv") + "?order=sort")
    assert len(al.load_data(str(days / "*.csv") + "?order=file")) == 89
    (days / "0.csv").write_text("timestamp,load\n" + rows[0] + "\n")
    with pytest.raises(AnomalyError, match=r"a.csv: columns value \(time: timestamp, labels: None\) differ from .*0.csv's load"):
        al.load_data(str(days / "*.csv"))
    (days / "0.csv").write_text("timestamp,value\n2026-01-01 00:00,x\n")
    with pytest.raises(AnomalyError, match=r"days/0.csv: line 2: column 'value': 'x' is not a number"):
        al.load_data(str(days / "*.csv"))
    with pytest.raises(AnomalyError, match="no files match"):
        al.load_data(str(tmp_path / "none" / "*.csv"))
    (days / "0.csv").unlink()
    (days / "b.csv").write_text("timestamp,value\n" + "\n".join(rows[59:29:-1]) + "\n")  # newest first
    assert al.load_data(str(days / "*.csv") + "?order=sort").values[:, 0].tolist() == whole  # sorted within files too


def test_blank_lines_before_the_first_row_are_still_said(tmp_path, capfd):
    """Finding the time column by its dates reads ahead to the first row; the blank lines it
    passes are reported as every other blank line is."""
    src = al.load_data(_csv(tmp_path, "Zeit;v\n\n01.01.2026 00:00;1\n\n01.01.2026 00:15;2\n"))
    assert src.time_column == "Zeit" and src.values.ravel().tolist() == [1.0, 2.0]
    assert "2 blank line(s) skipped (line 2, 4)" in capfd.readouterr().err
