"""FAISS banks (issue 14): indexes chosen by size or by name, serialised into bundles by FAISS
itself (no pickle), read back validated and never retrained."""
import json
import pickle
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import save_file

import anomalib_lite as al
from anomalib_lite import AnomalyError, LatentDistance
from anomalib_lite.components import memory
from anomalib_lite.bundles.bundle import _checksum
from anomalib_lite.components.memory import KnnIndex, choose_faiss_index, faiss_available

needs_faiss = pytest.mark.skipif(
    not faiss_available(), reason="faiss is not installed: pip install -e '.[faiss]' (CI installs it via [dev])"
)
APPROXIMATE = ["ivfflat", "ivfpq", "hnsw"]


def clustered(n: int, d: int = 32, clusters: int = 40, seed: int = 0) -> np.ndarray:
    """Rows around a few dozen centres, like patch features (IVF's lists follow the clusters)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d)) * 4
    return (centres[rng.integers(clusters, size=n)] + rng.normal(size=(n, d))).astype(np.float32)


def test_search_values_are_validated_and_a_missing_faiss_is_one_line(monkeypatch):
    with pytest.raises(AnomalyError, match=r"^search='faiss:ivf': unknown; use one of torch, faiss, faiss:flat"):
        LatentDistance(search="faiss:ivf", device="cpu").fit(clustered(50))
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now fails as if not installed
    with pytest.raises(AnomalyError, match=r"faiss is not installed \(pip install 'anomalib_lite\[faiss\]'"):
        LatentDistance(search="faiss", device="cpu").fit(clustered(50))


def test_auto_choice_follows_bank_size():
    assert [choose_faiss_index(n) for n in (10**4, 10**5, 10**6, 10**7)] == ["flat", "flat", "ivfflat", "ivfpq"]
    assert choose_faiss_index(500, "hnsw") == "flat"  # too small to train: exact
    assert choose_faiss_index(5000, "hnsw") == "hnsw"


@needs_faiss
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_exact_flat_index_equals_torch_search(dtype):
    bank = torch.from_numpy(clustered(3000)).to(dtype)
    queries = torch.from_numpy(clustered(200, seed=1))
    exact_d, exact_i = KnnIndex(bank).search(queries, 5, return_index=True)
    flat = KnnIndex(bank, "faiss", "flat")
    d, i = flat.search(queries, 5, return_index=True)
    assert flat.index_type == "flat" and not flat.trained
    torch.testing.assert_close(d, exact_d, rtol=1e-5, atol=1e-5)
    assert (i[:, 0] == exact_i[:, 0]).float().mean() > 0.99  # ties aside, the same rows
    loo = flat.search(bank[:50].float(), 3, exclude_self=True)
    torch.testing.assert_close(loo, KnnIndex(bank).search(bank[:50].float(), 3, exclude_self=True), rtol=1e-5, atol=1e-5)
    assert (loo[:, 0] > 0).all()


@needs_faiss
@pytest.mark.parametrize("kind", APPROXIMATE)
def test_approximate_indexes_find_planted_neighbours(kind):
    bank = torch.from_numpy(clustered(4000))
    gen = torch.Generator().manual_seed(2)
    planted = torch.randperm(4000, generator=gen)[:300]
    queries = bank[planted] + 0.05 * torch.randn(300, bank.shape[1], generator=gen)  # near copies
    index = KnnIndex(bank, "faiss", kind)
    assert index.index_type == kind and index.trained
    d, i = index.search(queries, 1, return_index=True)
    assert (i[:, 0] == planted).float().mean() >= 0.98
    # a found neighbour's distance is exact (re-ranked against the bank), so recall@1 of the
    # nearest-neighbour distance is the share within float tolerance of exact search
    exact = KnnIndex(bank).search(queries, 1)
    assert ((d - exact).abs() <= 1e-4).float().mean() >= 0.98
    assert (d >= exact - 1e-4).all()  # an approximate index can only miss, never undercut


@needs_faiss
@pytest.mark.parametrize("search, images", [("faiss:ivfpq", False), ("faiss:hnsw", True)])
def test_faiss_bundle_round_trips_without_pickle_or_retraining(tmp_path, monkeypatch, shapes_images, search, images):
    if images:
        normal, test = shapes_images(40, False), shapes_images(10, True)
        det = LatentDistance(search=search, patch_size=3, coreset="random", memory_size=1500, coreset_ratio=1.0,
                             image_score="patch", device="cpu").fit(normal)
        bank = "patch_memory"
    else:
        x = clustered(2500)
        normal, test = x[:2000], np.concatenate([x[2000:], x[2000:2100] + 6])
        det = LatentDistance(search=search, memory_size=2000, device="cpu").fit(normal)
        bank = "memory"
    kind = search.split(":")[1]
    assert det.faiss_index_[bank]["type"] == kind and det.faiss_index_[bank]["bytes"] > 0
    before = det.decision_function(test)
    det.save(tmp_path / "m.anomaly")
    name = "bank." + bank.replace("memory", "index")
    with safe_open(str(tmp_path / "m.anomaly"), "pt") as f:
        stored = f.get_tensor(name)
    assert stored.dtype == torch.uint8 and stored.ndim == 1 and len(stored) == det.faiss_index_[bank]["bytes"]

    def refuse(*a, **k):
        raise AssertionError("loading must neither unpickle nor retrain")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(memory, "build_faiss_index", refuse)
    back = al.load(tmp_path / "m.anomaly")
    assert back.faiss_index_ == det.faiss_index_ and f"faiss {kind} index" in back.summary()
    np.testing.assert_array_equal(back.decision_function(test), before)
    if images:
        np.testing.assert_array_equal(back.score_map(test), det.score_map(test))
    else:  # planted outliers still rank above the normals
        assert before[-100:].min() > np.sort(before[:500])[-25]


def _rewrite(path, out, change):
    """Copy a bundle with ``change(tensors, header)`` applied and a matching checksum (what a
    careless or hostile writer could produce: the checksum guards only against accidents)."""
    with safe_open(str(path), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        header = json.loads(f.metadata()["anomalib_lite"])
    change(tensors, header)
    header["checksum"] = _checksum(header, tensors)
    save_file(tensors, str(out), metadata={"anomalib_lite": json.dumps(header)})
    return out


@needs_faiss
def test_corrupt_index_bytes_are_refused_with_one_line(tmp_path):
    det = LatentDistance(search="faiss:ivfflat", memory_size=2000, device="cpu").fit(clustered(2000))
    good = tmp_path / "m.anomaly"
    det.save(good)
    n = det.faiss_index_["memory"]["bytes"]

    def garble(t, h):  # the list sizes and ids in the header part: FAISS cannot read it as it is
        t["bank.index"] = t["bank.index"].clone()
        t["bank.index"][8:40] = 0xFF

    def foreign(t, h):  # a valid FAISS index of another type
        t["bank.index"] = memory.index_to_bytes(memory.build_faiss_index(torch.from_numpy(clustered(2000)), "hnsw"))
        h["fitted"]["faiss_index_"]["memory"]["bytes"] = len(t["bank.index"])

    def shuffled_ids(t, h):  # readable, but its lists point past the bank
        ix = memory.index_from_bytes(t["bank.index"], "ivfflat", 2000, 32)
        lists = ix.invlists
        i = next(i for i in range(lists.nlist) if lists.list_size(i))
        ids = memory._faiss().rev_swig_ptr(lists.get_ids(i), lists.list_size(i))
        ids[0] = 10**6
        t["bank.index"] = memory.index_to_bytes(ix)

    def oversized(t, h):
        h["fitted"]["faiss_index_"]["memory"]["bytes"] = 1 << 40

    cases = {
        garble: "tensor 'bank.index': faiss index: FAISS could not read the serialised ivfflat index",
        foreign: "tensor 'bank.index': faiss index: not a FAISS ivfflat index",
        shuffled_ids: "tensor 'bank.index': faiss index: the serialised index's row ids are not the bank's 2000 rows",
        oversized: f"fitted.faiss_index_.memory: {1 << 40} bytes for a ivfflat index of 2000 x 32",
    }
    for change, message in cases.items():
        bad = _rewrite(good, tmp_path / f"{change.__name__}.anomaly", change)
        with pytest.raises(AnomalyError) as err:
            al.load(bad)
        text = str(err.value)
        assert "\n" not in text and message in text and bad.name in text, text
    truncated = _rewrite(good, tmp_path / "truncated.anomaly", lambda t, h: (
        t.__setitem__("bank.index", t["bank.index"][: n // 2].clone()),
        h["fitted"]["faiss_index_"]["memory"].__setitem__("bytes", n // 2)))
    from cli import cli

    np.save(tmp_path / "x.npy", clustered(20))
    r = CliRunner().invoke(cli, ["score", str(truncated), "--data", str(tmp_path / "x.npy"), "-o", str(tmp_path / "s.csv")])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and "bank.index" in r.output, r.output
    assert not (tmp_path / "s.csv").exists()


@needs_faiss
def test_changing_search_after_fit_still_saves_a_loadable_bundle(tmp_path):
    x = clustered(1500)
    det = LatentDistance(search="faiss:ivfflat", memory_size=1500, device="cpu").fit(x)
    det.set_params(search="torch")  # exact search from now on; the trained index stays in the state
    exact = det.decision_function(x[:50] + 1)
    det.save(tmp_path / "m.anomaly")
    back = al.load(tmp_path / "m.anomaly")
    np.testing.assert_array_equal(back.decision_function(x[:50] + 1), exact)
    back.set_params(search="faiss:ivfflat")  # the saved index is used again, not retrained
    assert back._method.index(False).index_type == "ivfflat"
