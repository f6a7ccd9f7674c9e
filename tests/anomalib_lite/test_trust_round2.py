"""Trust, round 2 (issue 20): verify the bytes you parse, fail closed, never overwrite anything the
run reads, bounded inputs. (The same model at any world size: test_distributed.py; hostile
headers and the fuzzer's new mutation classes: tests/test_fuzz_bundles.py.)"""
import builtins
import io as _io
import os
import subprocess
import sys
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import anomalib_lite as al
from anomalib_lite import AnomalyError, io
from anomalib_lite.bundles import signing
from cli import cli

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_real_size import _mvtec  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def run(*args, **env):
    return CliRunner().invoke(cli, [str(a) for a in args], env={k: str(v) for k, v in env.items()})


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    private, public = signing.generate_keys(tmp_path_factory.mktemp("keys") / "line.key")
    return private, public


@pytest.fixture(scope="module")
def two_models(tmp_path_factory, keys):
    """A signed vector bundle, and an unsigned one that flags nothing (threshold 1e6)."""
    folder = tmp_path_factory.mktemp("models")
    x = np.random.default_rng(0).random((60, 5)).astype(np.float32)
    det = al.LatentDistance(device="cpu").fit(x[:50]).calibrate(x[50:], fpr=0.2)
    det.save(folder / "signed.anomaly", sign=keys[0])
    det.threshold_ = 1e6
    det.save(folder / "unsigned.anomaly")
    return folder / "signed.anomaly", folder / "unsigned.anomaly"


# ---------------------------------------------------------------- 1. verify the bytes you parse

def test_a_path_that_flips_between_two_opens_never_gives_the_unsigned_model(tmp_path, keys, two_models, monkeypatch):
    """Every open of the link flips it to the other bundle (what an attacker racing the loader
    does at the worst moment): the bytes verified are the bytes parsed, so the load gives the
    signed model; the old loader (verify by one open, parse by another) returned the unsigned one."""
    signed, unsigned = two_models
    link = tmp_path / "m.anomaly"
    link.symlink_to(signed)
    real_os_open, real_open = os.open, builtins.open

    def flip():
        target = unsigned if os.readlink(link) == str(signed) else signed
        tmp = tmp_path / "next"
        tmp.symlink_to(target)
        os.replace(tmp, link)

    def os_open(path, *a, **k):
        fd = real_os_open(path, *a, **k)
        if os.fspath(path) == str(link):
            flip()
        return fd

    def open_(path, *a, **k):
        fh = real_open(path, *a, **k)
        if isinstance(path, (str, os.PathLike)) and os.fspath(path) == str(link):
            flip()
        return fh

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(_io, "open", open_)  # what pathlib opens files with
    for _ in range(4):  # starting from either target
        try:
            det = al.load(link, verify=keys[1])
        except AnomalyError as e:
            assert "not signed" in str(e)  # the link pointed at the unsigned bundle when opened
            continue
        assert det.threshold_ < 1e6


def test_a_symlink_flipped_by_a_thread_never_loads_the_unsigned_model(tmp_path, keys, two_models):
    signed, unsigned = two_models
    link = tmp_path / "m.anomaly"
    link.symlink_to(signed)
    stop = threading.Event()

    def flipper():
        i = 0
        while not stop.is_set():
            tmp = tmp_path / f"n{i % 2}"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(unsigned if i % 2 else signed)
            os.replace(tmp, link)
            i += 1
            stop.wait(0.0002)

    t = threading.Thread(target=flipper)
    t.start()
    loaded = refused = 0
    try:
        for _ in range(3000):
            if loaded >= 30 and refused >= 30:
                break
            try:
                det = al.load(link, verify=keys[1])
            except AnomalyError as e:
                assert "not signed" in str(e) or "bundle not found" in str(e)
                refused += 1
                continue
            assert det.threshold_ < 1e6, "the unsigned model was returned"
            loaded += 1
    finally:
        stop.set()
        t.join()
    assert loaded >= 10 and refused >= 10, (loaded, refused)  # both targets were met


def test_signatures_have_one_spelling(tmp_path, keys, two_models):
    signed, _ = two_models
    data = signed.read_bytes()
    start, end = signing._signature_span(data, "x")
    upper = data[:start] + data[start:end].upper() + data[end:]
    assert upper != data
    (tmp_path / "upper.anomaly").write_bytes(upper)
    with pytest.raises(AnomalyError, match="not 128 lower-case hex digits"):
        al.load(tmp_path / "upper.anomaly", verify=keys[1])
    assert al.load(signed, verify=keys[1]).n_seen_ == 50


# ---------------------------------------------------------------- 2. an empty verify key fails closed

@pytest.mark.parametrize("blank", ["", " ", "\t"])
def test_an_empty_or_blank_verify_key_is_an_error(tmp_path, two_models, monkeypatch, blank):
    _, unsigned = two_models
    with pytest.raises(AnomalyError, match="verify: set but empty"):
        al.load(unsigned, verify=blank)
    with pytest.raises(AnomalyError, match="verify: set but empty"):
        al.read_header(unsigned, verify=blank)
    monkeypatch.setenv("ANOMALY_VERIFY_KEY", blank)
    with pytest.raises(AnomalyError, match=r"\$ANOMALY_VERIFY_KEY: set but empty"):
        al.load(unsigned)
    monkeypatch.delenv("ANOMALY_VERIFY_KEY")
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((3, 5), np.float32))
    for args, env in (([], {"ANOMALY_VERIFY_KEY": blank}), (["--verify", blank], {})):
        r = run("score", unsigned, "--data", x, "-o", tmp_path / "s.csv", *args, **env)
        assert r.exit_code == 2 and "set but empty" in r.output, r.output
        r = run("info", unsigned, *args, **env)
        assert r.exit_code == 2 and "set but empty" in r.output, r.output
    assert not (tmp_path / "s.csv").exists()


# ---------------------------------------------------------------- 3. outputs never replace inputs

@pytest.fixture(scope="module")
def images(tmp_path_factory, keys):
    """An MVTec-style category and a signed bundle fitted on its good images."""
    root = tmp_path_factory.mktemp("imgs")
    cat = _mvtec(root, np.random.default_rng(3), size=16, n_train=12, n_good=3, n_bad=2)
    det = al.LatentDistance(device="cpu").fit(al.load_data(str(cat / "train")))
    det.save(root / "m.anomaly", sign=keys[0])
    return cat, root / "m.anomaly"


def _intact(paths: dict) -> None:
    for p, data in paths.items():
        assert p.read_bytes() == data, f"{p} was changed"


def test_outputs_onto_anything_the_run_reads_are_refused_before_any_work(tmp_path, images, keys):
    cat, bundle = images
    test = cat / "test"
    image, mask = test / "good" / "000.png", cat / "ground_truth" / "spot" / "000_mask.png"
    hard = tmp_path / "hard.png"
    os.link(image, hard)
    sym = tmp_path / "sym.png"
    sym.symlink_to(image)
    before = {p: p.read_bytes() for p in (image, mask, keys[1], bundle)}
    cases = [
        ("score", "-o", image, test),                          # a file inside the data folder
        ("score", "-o", image, f"{test}/*/*.png"),             # a file a glob matches
        ("score", "-o", hard, test),                           # a hard link to an image
        ("score", "-o", sym, test),                            # a symlink to an image
        ("score", "--report", mask, test),                     # a mask the run reads
        ("score", "-o", keys[1], test),                        # the verify key
        ("score", "-o", bundle, test),                         # the bundle
        ("evaluate", "--json", image, test),
        ("evaluate", "--report", image, test),
        ("evaluate", "--json", keys[1], test),
    ]
    for command, option, out, data in cases:
        r = run(command, bundle, "--data", data, option, out, "--verify", keys[1])
        assert r.exit_code == 2, (command, option, out, r.output)
        assert "would overwrite the input" in r.output and "scored" not in r.output, r.output
    r = run("score", bundle, "--data", test, "-o", tmp_path / "k.pub", ANOMALY_VERIFY_KEY=keys[1])
    assert r.exit_code == 0, r.output  # a key file elsewhere is fine ...
    r = run("score", bundle, "--data", test, "-o", keys[1], ANOMALY_VERIFY_KEY=keys[1])
    assert r.exit_code == 2 and "would overwrite the input" in r.output  # ... the key in $ANOMALY_VERIFY_KEY is not
    r = run("score", bundle, "--data", test, "-o", test / "scores.csv", "--verify", keys[1])
    assert r.exit_code == 0, r.output  # a new file beside the data is not an input
    r = run("score", bundle, "--data", test, "-o", test / "scores.csv", "--verify", keys[1])
    assert r.exit_code == 0, r.output  # nor is the run's own earlier output
    _intact(before)


def test_fit_outputs_never_replace_keys_configs_or_data(tmp_path, images, keys):
    cat, _ = images
    config = tmp_path / "aug.yaml"
    config.write_text("steps:\n  - hflip: {p: 0.5}\n")
    before = {p: p.read_bytes() for p in (config, keys[0])}
    r = run("fit", "latent", "--data", cat / "train", "--sign", keys[0], "-o", keys[0])
    assert r.exit_code == 2 and "would overwrite the input" in r.output, r.output
    r = run("fit", "reconstruction", "--data", cat / "train", "--augment", config, "-o", config, "--epochs", 1)
    assert r.exit_code == 2 and "would overwrite the input" in r.output, r.output
    r = run("fit", "latent", "--data", cat / "train", "-o", cat / "train" / "good" / "000.png")
    assert r.exit_code == 2 and "would overwrite the input" in r.output, r.output
    _intact(before)


def test_check_outputs_expands_folders_and_compares_files_not_names(tmp_path):
    data = tmp_path / "data" / "good"
    data.mkdir(parents=True)
    (data / "a.png").write_bytes(b"x")
    os.link(data / "a.png", tmp_path / "b.png")
    with pytest.raises(AnomalyError, match="the scores would overwrite the input"):
        io.check_outputs({"scores": data / "a.png"}, [tmp_path / "data"])
    with pytest.raises(AnomalyError, match="the scores would overwrite the input"):
        io.check_outputs({"scores": tmp_path / "b.png"}, [data / "a.png"])
    with pytest.raises(AnomalyError, match="given as both"):
        io.check_outputs({"scores": tmp_path / "b.png", "report": data / "a.png"}, [])
    with pytest.raises(AnomalyError, match="holds or overlaps"):
        io.check_outputs({}, [data / "a.png"], folders=[tmp_path / "data"])
    io.check_outputs({"scores": tmp_path / "new.csv"}, [tmp_path / "data"], folders=[tmp_path / "maps"])


# ---------------------------------------------------------------- 6. bounded inputs

def _forged_npy(path: Path, shape) -> None:
    """A .npy of 5x8x8 float32 whose header claims ``shape``."""
    np.save(path, np.zeros((5, 8, 8), np.float32))
    data = path.read_bytes()
    n = int.from_bytes(data[8:10], "little")
    header = data[10 : 10 + n].replace(b"(5, 8, 8)", str(tuple(shape)).encode())
    header = header.rstrip(b"\n ").ljust(n - 1) + b"\n"
    assert len(header) == n
    path.write_bytes(data[:10] + header + data[10 + n :])


def test_array_files_are_checked_before_allocating(tmp_path):
    _forged_npy(tmp_path / "big.npy", (100_000_000, 8, 8))
    tracemalloc.start()
    with pytest.raises(AnomalyError, match=r"big.npy: its header claims a float32 array of shape \(100000000, 8, 8\)"):
        al.load_data(str(tmp_path / "big.npy"))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 10 << 20
    _forged_npy(tmp_path / "small.npy", (2, 8, 8))  # fewer values than the file holds: also forged
    with pytest.raises(AnomalyError, match="file holds 1,280 bytes of data"):
        al.load_data(str(tmp_path / "small.npy"))
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(AnomalyError, match=r"obj.npz: array 'x': holds Python objects"):
        al.load_data(str(tmp_path / "obj.npz"))
    np.savez(tmp_path / "objy.npz", x=np.zeros((2, 4), np.float32), y=np.array(["a", None], dtype=object))
    with pytest.raises(AnomalyError, match=r"array 'y': holds Python objects"):
        al.load_data(str(tmp_path / "objy.npz"))
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(AnomalyError, match="junk.npz: cannot read array file"):
        al.load_data(str(tmp_path / "junk.npz"))
    np.savez(tmp_path / "ok.npz", x=np.ones((4, 3), np.float32), y=np.array([0, 1, 0, 1]))
    assert al.load_data(str(tmp_path / "ok.npz")).anomaly_labels(["0"]).tolist() == [0, 1, 0, 1]


def test_an_over_long_csv_line_is_refused_while_read_with_bounded_memory(tmp_path):
    path = tmp_path / "s.csv"
    with open(path, "w") as fh:
        fh.write("timestamp,value\n1,0.5\n2," + "1" * (16 << 20) + "\n3,0.7\n")
    tracemalloc.start()
    with pytest.raises(AnomalyError, match="s.csv: line 3: longer than 1,048,576 characters; refused"):
        al.load_data(str(path))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 6 << 20  # a 16 MB line, never held whole (2 MB here)
    code = ("import sys; from anomalib_lite.data.sources import load\n"
            "try:\n    load('-')\nexcept Exception as e:\n    print(type(e).__name__, e)")
    with open(path, "rb") as fh:
        out = subprocess.run([sys.executable, "-c", code], stdin=fh, capture_output=True, text=True, cwd=REPO,
                             timeout=120)
    assert "AnomalyError -: line 3: longer than 1,048,576 characters" in out.stdout, out.stdout + out.stderr


# ---------------------------------------------------------------- 7. temp files and kill -9

def test_a_temp_file_left_by_kill_9_is_removed_by_the_next_output_into_the_folder(tmp_path):
    code = (f"import os\nfrom anomalib_lite.io import atomic_output\n"
            f"with atomic_output({str(tmp_path / 'x.csv')!r}) as tmp:\n"
            f"    tmp.write_text('half of it')\n    os.kill(os.getpid(), 9)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=120)
    assert proc.returncode == -9
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".x.csv.al-tmp-")  # named after its dead owner
    mine = tmp_path / f".y.csv.{io.TAG}-{io._host()}-{os.getpid()}-{io._start_time(os.getpid())}-live"
    mine.write_text("a write in progress")  # a live process's temp file is left alone
    r = run("keygen", "-o", tmp_path / "k.key")  # the next run writing into the folder
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["k.key", "k.key.pub", mine.name])


def test_saving_a_bundle_leaves_no_second_temporary_file(tmp_path, monkeypatch):
    """safetensors' save_file writes its own '.tmpXXXXXX' beside the target (left by a kill -9):
    bundles are built in memory and written through atomic_output alone."""
    import safetensors.torch

    def refuse(*a, **k):
        raise AssertionError("save_file writes a temporary file of its own")

    monkeypatch.setattr(safetensors.torch, "save_file", refuse)
    x = np.random.default_rng(0).random((20, 3)).astype(np.float32)
    al.LatentDistance(device="cpu").fit(x).save(tmp_path / "m.anomaly")
    assert [p.name for p in tmp_path.iterdir()] == ["m.anomaly"]


# ---------------------------------------------------------------- 8. timestamps

def _csv(path: Path, stamps) -> str:
    path.write_text("timestamp,value\n" + "".join(f"{t},{i * 0.1:.1f}\n" for i, t in enumerate(stamps)))
    return str(path)


def test_times_that_repeat_or_go_back_are_refused_with_their_line(tmp_path):
    back = _csv(tmp_path / "back.csv", ["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 00:30", "2024-01-01 02:00"])
    with pytest.raises(AnomalyError, match=r"back.csv: line 4: column 'timestamp': '2024-01-01 00:30' goes back "
                                           r"from line 3's '2024-01-01 01:00'.*\?order=sort"):
        al.load_data(back)
    same = _csv(tmp_path / "same.csv", [1, 2, 2, 3])
    with pytest.raises(AnomalyError, match=r"same.csv: line 4: column 'timestamp': '2' repeats line 3's .*"
                                           r"add \?order=file .* when clocks go back"):
        al.load_data(same)
    src = al.load_data(back + "?order=sort")
    assert src.stamps[1:3] == ["2024-01-01 00:30", "2024-01-01 01:00"] and src.values[1, 0] == pytest.approx(0.2)
    with pytest.raises(AnomalyError, match=r"same.csv\?order=sort: line 4: .* repeats line 3's time.*\?order=file"):
        al.load_data(same + "?order=sort")
    assert len(al.load_data(same + "?order=file")) == 4
    with pytest.raises(AnomalyError, match="order= applies to time series"):
        al.load_data(str(tmp_path) + "?order=sort")


def test_several_series_one_under_another_are_named_not_sent_to_order_options(tmp_path):
    """A long-format file (sensor,timestamp,value): ?order=file or ?order=sort would interleave
    its series into one, so the error names the column that tells them apart instead."""
    rows = [f"{s},2026-01-01 00:{i:02d},{i}" for i in range(5) for s in ("pump1", "pump2")]
    both = tmp_path / "both.csv"
    both.write_text("sensor,timestamp,value\n" + "\n".join(rows) + "\n")
    with pytest.raises(AnomalyError, match=r"line 3: .* repeats line 2's .*several series told apart by column "
                                           r"'sensor' \(long format\).*df.pivot\(index='timestamp', columns='sensor'"):
        al.load_data(str(both), columns=["value"])
    by_sensor = tmp_path / "by_sensor.csv"
    by_sensor.write_text("sensor,timestamp,value\n" + "\n".join(sorted(rows)) + "\n")
    with pytest.raises(AnomalyError, match=r"line 7: .* goes back from line 6's .*column 'sensor' \(long format\)"):
        al.load_data(str(by_sensor), columns=["value"])
    one = tmp_path / "one.csv"  # one series whose time repeats (clocks going back): the order option, as before
    one.write_text("sensor,timestamp,value\n" + "\n".join(f"pump1,{t},{i}" for i, t in enumerate([1, 2, 2, 3])) + "\n")
    with pytest.raises(AnomalyError, match=r"repeats line 3's .*add \?order=file"):
        al.load_data(str(one), columns=["value"])


def test_a_stream_skips_a_line_whose_time_goes_back(tmp_path):
    x = np.sin(np.arange(200) / 5.0)
    det = al.Continuation(window=8, horizon=2, hidden=4, num_layers=1, epochs=1, season=0, device="cpu").fit(x)
    lines, errors = [], []
    text = "timestamp,value\n1,0.1\n2,0.2\n2,0.3\n1,0.4\n3,0.5\n"
    scored, bad = al.series_io.stream_lines(det, _io.StringIO(text), "live", out=lines.append, err=errors.append)
    assert (scored, bad) == (3, 2)
    assert "live: line 4: column 'timestamp': '2' repeats line 3's '2'" in errors[0]
    assert "line 5: column 'timestamp': '1' goes back from line 3's '2'" in errors[1]


# ---------------------------------------------------------------- 9. the same bank however the data comes

def test_keyed_candidates_do_not_depend_on_batches_order_or_shards():
    import torch

    from anomalib_lite.components.streaming import KeyedSample, _smallest

    x = torch.randn(3000, 4, generator=torch.Generator().manual_seed(0))
    ids = np.stack([np.arange(3000) // 10, np.arange(3000) % 10], 1)  # (sample, patch)
    whole = KeyedSample(200, seed=4)
    whole.add(x, ids)
    order = np.random.default_rng(1).permutation(3000)
    batched = KeyedSample(200, seed=4)
    for part in np.array_split(order, 37):
        batched.add(x[part], ids[part])
    assert torch.equal(whole.values(), batched.values()) and batched.n_seen == 3000
    shards = [KeyedSample(200, seed=4) for _ in range(3)]
    for r, s in enumerate(shards):  # what three torchrun ranks hold; KeyedSample.merged joins them so
        s.add(x[r::3], ids[r::3])
    keys, kept = np.concatenate([s.keys for s in shards]), np.concatenate([s.ids for s in shards])
    rows = torch.cat([s.rows for s in shards])[_smallest(keys, kept, 200)]
    assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, whole.values().tolist()))
    assert abs(whole.ids[:, 0].mean() - 150) < 20  # a uniform sample of the samples


def test_latent_distance_fits_the_same_coreset_whatever_the_batch_size():
    x = np.random.default_rng(0).random((40, 1, 12, 12)).astype(np.float32)
    banks = []
    for batch_size in (7, 40):
        det = al.LatentDistance(memory_size=300, device="cpu", batch_size=batch_size).fit(x)
        banks.append(det.bank_.get("patch_memory"))
    assert len(banks[0]) == 300 and bool((banks[0] == banks[1]).all())
    det = al.LatentDistance(memory_size=20, pool_factor=1, device="cpu").partial_fit(x[:, 0, 0]).partial_fit(x[:, 0, 1])
    assert det.bank_.get("memory").shape == (20, 12)  # partial_fit from scratch keeps a reservoir
