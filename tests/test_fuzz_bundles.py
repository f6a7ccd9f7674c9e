"""Hostile bundles (issues 11, 20): a few hundred seeded mutations of signed bundles of every
detector, re-checksummed and re-signed so that they reach validation, each either refused with one
bounded line or loaded, shown by `info`, scored and evaluated sanely (benchmarks/fuzz_bundles.py
runs the full count); hostile data files; and regressions for what the fuzzers found."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import anomalib_lite as al
from anomalib_lite import AnomalyError
from anomalib_lite.bundles import signing

_spec = importlib.util.spec_from_file_location(
    "fuzz_bundles", Path(__file__).resolve().parents[1] / "benchmarks" / "fuzz_bundles.py")
fb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fb)

PER_DETECTOR = 30  # 8 seed bundles: 240 mutations


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    with torch.random.fork_rng():
        return fb.make_seeds(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture(scope="module")
def keys(seeds):
    folder = next(iter(seeds.values()))[0].parent
    return signing.load_private_key(folder / "test.key"), signing.load_public_key(folder / "test.key.pub")


def test_mutated_bundles_are_refused_in_one_line_or_score_sanely(seeds):
    results = fb.fuzz_in_process(seeds, {name: PER_DETECTOR for name in fb.NAMES}, master=11, timeout=20)
    failures = [f"{name}:{i} {what}: {outcome}: {detail.strip()[-300:]}"
                for name, res in results.items() for outcome, cases in res.items()
                if outcome not in ("refused", "sane") for i, what, detail in cases]
    assert not failures, "\n".join(failures[:5])
    counts = {o: sum(len(r.get(o, [])) for r in results.values()) for o in ("refused", "sane")}
    assert counts["refused"] + counts["sane"] == PER_DETECTOR * len(fb.NAMES)
    assert counts["refused"] > 100 and counts["sane"] > 10  # both routes are exercised
    refused = [d for r in results.values() for _, _, d in r.get("refused", [])]
    assert sum("checksum mismatch" in d for d in refused) < len(refused) / 4  # most reach validation
    whats = [w for r in results.values() for cases in r.values() for _, w, _ in cases]
    assert {w.split()[0] for w in whats} >= {*fb.MUST_REFUSE, "text", "data", "seed"}  # issue 20's classes ran


def test_hostile_data_files_are_refused_in_one_line_or_read_sanely(tmp_path):
    results = fb.fuzz_inputs_in_process(tmp_path, 90, master=11, timeout=60)
    failures = [f"inputs:{i} {what}: {outcome}: {detail.strip()[-300:]}"
                for outcome, cases in results.items() if outcome not in ("refused", "sane") for i, what, detail in cases]
    assert not failures, "\n".join(failures[:5])
    assert len(results.get("refused", [])) > 40 and len(results.get("sane", [])) > 5


def _forged(seeds, keys, name, change):
    """A seed bundle changed by ``change(header, tensors)``, checksummed and signed again."""
    header, tensors = fb.read_tensors(seeds[name][0].read_bytes())
    change(header, tensors)
    return fb.build(header, tensors, keys[0], raw=fb.RAW)


def _load(tmp_path, data, keys):
    path = tmp_path / "m.anomaly"
    path.write_bytes(data)
    return al.load(path, verify=keys[1])


@pytest.mark.parametrize("token, message", [(fb.BIG, "number too long or nesting too deep"),
                                            (fb.DEEP, "number too long or nesting too deep")])
def test_unreadable_numbers_and_nesting_in_the_header(tmp_path, seeds, keys, token, message):
    data = _forged(seeds, keys, "LatentDistance-vector", lambda h, t: h["params"].update(k=token))
    with pytest.raises(AnomalyError, match=message):
        _load(tmp_path, data, keys)


@pytest.mark.parametrize("name, tensor, value, message", [
    ("LatentDistance-patch", "bank.patch_memory", float("nan"), "NaN or infinite"),
    ("LatentDistance-resnet", "extractor.stages.stem.0.weight", float("inf"), "NaN or infinite"),
    ("Reconstruction", "model.encoder.1.running_var", -1.0, "negative variances"),
    ("LatentDistance-gaussian", "bank.patch_scatter", -1.0, "negative variances"),
    ("LatentDistance-gaussian", "bank.patch_channels", 2**62, "increasing channel numbers"),
    ("Continuation", "scaler_std", 0.0, "positive values"),
    ("SupervisedRNN", "scaler_std", -1.0, "positive values"),
    ("Continuation", "calibration_scores", float("nan"), "NaN or infinite"),
])
def test_learned_values_out_of_range_are_refused(tmp_path, seeds, keys, name, tensor, value, message):
    def change(h, t):
        x = t[tensor].clone()
        if tensor.endswith("scatter"):
            x[..., 0, 0] = value
        else:
            x.reshape(-1)[0] = value
        t[tensor] = x

    with pytest.raises(AnomalyError, match=message) as e:
        _load(tmp_path, _forged(seeds, keys, name, change), keys)
    assert "\n" not in str(e.value) and f"'{tensor}'" in str(e.value)


def test_unsorted_calibration_scores_are_refused(tmp_path, seeds, keys):
    data = _forged(seeds, keys, "Reconstruction",
                   lambda h, t: t.update(calibration_scores=t["calibration_scores"].flip(0)))
    with pytest.raises(AnomalyError, match="calibration_scores': not sorted"):
        _load(tmp_path, data, keys)


def test_weights_that_overflow_give_one_error_when_scoring(tmp_path, seeds, keys):
    header, tensors = fb.read_tensors(seeds["LatentDistance-resnet"][0].read_bytes())
    name = "extractor.stages.stem.0.weight"
    tensors[name] = torch.full_like(tensors[name], 3e38)  # finite, but every activation overflows
    det = _load(tmp_path, fb.build(header, tensors, keys[0]), keys)
    with pytest.raises(AnomalyError, match="scores: 4 of 4 are NaN or infinite: .*learned values are out of range"):
        det.decision_function(fb.score_data("images"))
    with pytest.raises(AnomalyError, match="maps: .* are NaN or infinite"):
        det.score_map(fb.score_data("images"))


def test_the_seed_bundles_themselves_load_and_score(tmp_path, seeds, keys):
    for name, (path, kind) in seeds.items():
        outcome, detail = fb.run_case(path.read_bytes(), kind, tmp_path, keys[1])
        assert (outcome, detail) == ("sane", "scored"), name
    header = json.loads(fb.split(seeds["Continuation"][0].read_bytes())[0]["__metadata__"]["anomalib_lite"])
    assert header["detector"] == "Continuation" and np.isfinite(header["fitted"]["threshold_"])


@pytest.mark.parametrize("name, change, message", [
    ("LatentDistance-gaussian", lambda h, t: h["params"].update(image_score="pooled"),
     "fitted.moments_n_=0: these scores need a Gaussian of at least 2 samples"),
    ("LatentDistance-gaussian", lambda h, t: h["fitted"].update(patch_moments_n_=1),
     "fitted.patch_moments_n_=1: a Gaussian needs at least 2 samples"),
    ("LatentDistance-vector", lambda h, t: h["params"].update(k=4000, memory_size=5000),
     "fitted.bank_rows_=50: these scores need a bank of at least k=4000 rows"),
    ("Reconstruction", lambda h, t: h["fitted"].update(model_input_shape_=[1, 16]),
     r"fitted.model_input_shape_=\[1, 16\]: must be a shape of 3 to 3 sides"),
])
def test_fitted_values_that_scoring_cannot_use_are_refused(tmp_path, seeds, keys, name, change, message):
    """Found by the fuzzer: each loaded, then failed with a traceback when scoring."""
    with pytest.raises(AnomalyError, match=message):
        _load(tmp_path, _forged(seeds, keys, name, change), keys)


def test_imagenet_weights_are_only_used_with_their_hash(tmp_path, seeds, keys):
    """A bundle naming ImageNet weights without a hash would take whatever the cache holds."""
    def change(h, t):
        h["fitted"]["backbone_"].update(weights_source="imagenet", weights_sha256=None)

    with pytest.raises(AnomalyError, match="backbone_.weights_sha256: missing; ImageNet weights are only used"):
        _load(tmp_path, _forged(seeds, keys, "LatentDistance-resnet", change), keys)


def test_a_singular_covariance_is_one_error_when_scoring(tmp_path, seeds, keys):
    """Found by the fuzzer: shrinkage=0 (a legal value) on per-position Gaussians of fewer
    samples than features made linalg.inv raise its own error (fitting so, too)."""
    forged = _forged(seeds, keys, "LatentDistance-gaussian", lambda h, t: h["params"].update(shrinkage=0))
    det = _load(tmp_path, forged, keys)
    with pytest.raises(AnomalyError, match="LatentDistance: the covariance of 32 samples is singular; use shrinkage"):
        det.decision_function(fb.score_data("images"))


def test_a_patch_grid_other_than_the_fitted_one_is_one_error(tmp_path, seeds, keys):
    """Found by the fuzzer: another patch_size changes the grid of positions, and per-position
    Gaussians of 16x16 positions met 17x17 patches in a tensor operation."""
    det = _load(tmp_path, _forged(seeds, keys, "LatentDistance-gaussian", lambda h, t: h["params"].update(patch_size=4)),
                keys)
    with pytest.raises(AnomalyError, match=r"fitted.map_grid_=\[16, 16\]: these images give a 17x17 patch grid"):
        det.decision_function(fb.score_data("images"))


def test_a_network_input_shape_other_than_the_images_give_is_one_error(tmp_path, seeds, keys):
    """Found by the fuzzer: model_input_shape_ [1, 16, 15] builds the same tensors as [1, 16, 16]
    (the encoder rounds up), and the network then met images it was not built for."""
    forged = _forged(seeds, keys, "Reconstruction", lambda h, t: h["fitted"].update(model_input_shape_=[1, 16, 15]))
    det = _load(tmp_path, forged, keys)
    with pytest.raises(AnomalyError, match=r"model_input_shape_=\[1, 16, 15\]: the network gets \[1, 16, 16\]"):
        det.decision_function(fb.score_data("images"))


# ---------------------------------------------------------------- issue 20: strict, bounded headers

@pytest.mark.parametrize("name, change, message", [
    ("LatentDistance-vector", lambda h, t: h.update(data={"spec": "x", "n": 3, "classes": 7}),
     r"data.classes=7: must be a list"),
    ("LatentDistance-resnet", lambda h, t: h["fitted"]["backbone_"].update(seed=2**70),
     r"fitted.backbone_.seed=1180591620717411303424: must be an integer in \[0, 9223372036854775807\]"),
    ("Reconstruction", lambda h, t: h["params"].update(seed=2**64), r"params.seed=18446744073709551616: must be"),
    ("LatentDistance-vector", lambda h, t: h["params"].pop("k"), r"params \(LatentDistance\): field 'k' is missing"),
    ("Continuation", lambda h, t: h["fitted"].pop("season_"), r"fitted: field 'season_' is missing"),
    ("SupervisedRNN", lambda h, t: h.pop("world_size"), r"header: field 'world_size' is missing"),
    ("LatentDistance-resnet", lambda h, t: h["fitted"]["backbone_"].pop("seed"), r"backbone_: field 'seed' is missing"),
    ("Reconstruction", lambda h, t: h["fitted"]["history_"].pop("seconds"), r"history_: field 'seconds' is missing"),
    ("LatentDistance-vector", lambda h, t: h["versions"].update(numpy2="2"), r"versions: unknown field 'numpy2'"),
    ("LatentDistance-vector", lambda h, t: h.update(extra=1), r"header: unknown field 'extra'"),
    ("SyntheticOOD", lambda h, t: h["fitted"].update(evil=1), r"fitted: unknown field 'evil'"),
])
def test_hostile_header_fields_are_refused_in_one_line(tmp_path, seeds, keys, name, change, message):
    with pytest.raises(AnomalyError, match=message) as e:
        _load(tmp_path, _forged(seeds, keys, name, change), keys)
    assert "\n" not in str(e.value)


def test_the_checksum_has_one_spelling(tmp_path, seeds, keys):
    header, tensors = fb.read_tensors(seeds["LatentDistance-vector"][0].read_bytes())
    header["checksum"] = header["checksum"].upper()
    with pytest.raises(AnomalyError, match="checksum=.*: must be 64 lower-case hex digits"):
        _load(tmp_path, fb.build(header, tensors, keys[0], checksum=False), keys)


@pytest.mark.parametrize("version", [0, -1, 1, 3, True, False, "2", 2.0, None])
def test_format_version_is_an_integer_the_loader_knows(tmp_path, seeds, keys, version):
    data = _forged(seeds, keys, "LatentDistance-vector", lambda h, t: h.update(format_version=version))
    with pytest.raises(AnomalyError, match="is not one this anomalib_lite reads"):
        _load(tmp_path, data, keys)


def test_duplicate_keys_are_refused(tmp_path, seeds, keys):
    """A tensor named twice in the safetensors header, a metadata key twice, a header field twice:
    two JSON readers may take different ones, so none is accepted."""
    for index in range(60):
        data, what = fb.mutate_issue20(*fb.read_tensors(seeds["LatentDistance-patch"][0].read_bytes()),
                                       seeds["LatentDistance-patch"][0].read_bytes(), fb.case_rng(7, "inputs", index),
                                       keys[0])
        if what.startswith("duplicate"):
            with pytest.raises(AnomalyError, match="twice \\(file tampered with\\)|bad signature|checksum"):
                _load(tmp_path, data, keys)
    seed = seeds["LatentDistance-vector"][0].read_bytes()
    pre, body = fb.split(seed)
    name = next(k for k in pre if k != "__metadata__")
    text = json.dumps(pre, separators=(",", ":"))
    text = text[:-1] + "," + json.dumps(name) + ":" + json.dumps(pre[name]) + "}"  # the same entry twice
    head = text.encode() + b" " * (-len(text) % 8)
    data = fb.sign(len(head).to_bytes(8, "little") + head + body, keys[0])
    with pytest.raises(AnomalyError, match=f"the safetensors header names '{name}' twice"):
        _load(tmp_path, data, keys)


def test_attacker_text_is_cut_and_escaped_in_messages_and_in_info(tmp_path, seeds, keys):
    from anomalib_lite.app.workflows import describe_header

    forged = _forged(seeds, keys, "LatentDistance-vector",
                     lambda h, t: h.update(detector="LatentDistance\nanomaly: signed by the line key" + "x" * 100_000))
    path = tmp_path / "m.anomaly"
    path.write_bytes(forged)
    with pytest.raises(AnomalyError) as e:
        al.load(path, verify=keys[1])
    assert "\n" not in str(e.value) and len(str(e.value)) < 700
    forged = _forged(seeds, keys, "LatentDistance-vector",
                     lambda h, t: h.update(summary="ok\nanomaly: \x1b[2Jsigned", created="x" * 64))
    path.write_bytes(forged)
    text = describe_header(al.read_header(path, verify=keys[1]))
    assert "summary: ok\\nanomaly: \\x1b[2Jsigned" in text
    assert all(line.isprintable() and len(line) <= 410 for line in text.splitlines())
    forged = _forged(seeds, keys, "LatentDistance-vector", lambda h, t: h["versions"].update(torch="y" * 60))
    path.write_bytes(forged)
    assert al.load(path, verify=keys[1]).n_seen_ == 50  # legal text loads
