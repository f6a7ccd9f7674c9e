import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

import anomalib_lite as al
from anomalib_lite import AnomalyError, LatentDistance, load_data
from anomalib_lite.components.memory import faiss_available, greedy_coreset, knn_distances


def _auroc(normal_scores, outlier_scores):
    y = np.r_[np.zeros(len(normal_scores)), np.ones(len(outlier_scores))]
    return roc_auc_score(y, np.r_[normal_scores, outlier_scores])


@pytest.mark.parametrize("method", ["knn", "gaussian"])
def test_planted_outliers_rank_above_normals(blobs, method):
    normal, test_normal, outliers = blobs
    det = LatentDistance(method=method, device="cpu").fit(normal)
    assert _auroc(det.decision_function(test_normal), det.decision_function(outliers)) > 0.99


def test_features_of_very_different_spreads_are_warned_of_and_the_warning_is_right():
    """A temperature beside a pressure in pascals: the kNN distance is mostly the pressure's, so
    a temperature anomaly ranks poorly; the warning names both features, and standardising (its
    fix) finds it."""
    import warnings

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    normal = np.c_[rng.normal(20, 2, 400), rng.normal(101325, 300, 400)]
    test = np.c_[rng.normal(20, 2, 100), rng.normal(101325, 300, 100)]
    test[:20, 0] += 12  # 6 standard deviations too warm
    y = np.r_[np.ones(20), np.zeros(80)]
    with pytest.warns(UserWarning, match=r"spreads differ \d+-fold \(feature 1: std .*; feature 0: .*standardise"):
        raw = LatentDistance().fit(normal)
    assert roc_auc_score(y, raw.decision_function(test)) < 0.85
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scaled = make_pipeline(StandardScaler(), LatentDistance()).fit(normal)
        LatentDistance().fit(normal * [150.0, 1.0])  # spreads within 100-fold: quiet
    assert roc_auc_score(y, scaled.decision_function(test)) > 0.99


def test_knn_score_is_mean_distance_to_k_nearest():
    rng = np.random.default_rng(0)
    bank, q = rng.normal(size=(50, 3)).astype(np.float32), rng.normal(size=(7, 3)).astype(np.float32)
    det = LatentDistance(k=3, maps=False, device="cpu").fit(bank)
    d = np.sqrt(((q[:, None] - bank[None]) ** 2).sum(-1))
    expected = np.sort(d, 1)[:, :3].mean(1)
    assert np.allclose(det.decision_function(q), expected, atol=1e-4)


def test_leave_one_out_scores_on_training_data(blobs):
    normal, _, _ = blobs
    nearest = LatentDistance(k=1, device="cpu", maps=False).fit(normal)
    assert np.allclose(nearest.decision_function(normal[:50]), 0, atol=1e-3)  # each point finds itself
    det = LatentDistance(k=5, device="cpu", maps=False).fit(normal)
    loo = det.decision_function(normal[:50], leave_one_out=True)
    d = np.sqrt(((normal[:50, None] - normal[None]) ** 2).sum(-1))
    expected = np.sort(d, 1)[:, 1:6].mean(1)
    assert np.allclose(loo, expected, atol=1e-3)


def test_gaussian_equals_mahalanobis_with_shrunk_covariance(blobs):
    normal, test_normal, _ = blobs
    det = LatentDistance(method="gaussian", shrinkage=0.1, batch_size=64, device="cpu").fit(normal)
    mu, cov = normal.mean(0), np.cov(normal, rowvar=False)
    cov = 0.9 * cov + 0.1 * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0])
    d = test_normal - mu
    expected = np.sqrt(np.einsum("ij,jk,ik->i", d, np.linalg.inv(cov), d))
    assert np.allclose(det.decision_function(test_normal), expected, rtol=1e-4)


def test_memory_is_bounded_by_coreset_and_reservoir(blobs):
    normal, test_normal, outliers = blobs
    det = LatentDistance(memory_size=60, device="cpu", batch_size=50).fit(normal)
    assert det.memory_.shape == (60, 16)
    assert _auroc(det.decision_function(test_normal), det.decision_function(outliers)) > 0.99
    streamed = LatentDistance(memory_size=60, device="cpu")
    for i in range(0, 400, 32):
        streamed.partial_fit(normal[i : i + 32])
    assert streamed.memory_.shape == (60, 16) and streamed.n_seen_ == 400
    # a reservoir is a uniform sample: rows from late batches are kept too
    late = {tuple(r) for r in normal[300:]}
    assert any(tuple(r) in late for r in streamed.memory_.numpy())
    assert _auroc(streamed.decision_function(test_normal), streamed.decision_function(outliers)) > 0.99


def test_greedy_coreset_covers_every_cluster():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 20, (8, 5))
    sizes = [500, 300, 100, 30, 10, 5, 3, 2]  # rare clusters a random sample would miss
    x = np.concatenate([c + rng.normal(0, 0.1, (n, 5)) for c, n in zip(centres, sizes)])
    chosen = x[greedy_coreset(torch.tensor(x, dtype=torch.float32), 8).numpy()]
    nearest_centre = np.argmin(((chosen[:, None] - centres[None]) ** 2).sum(-1), 1)
    assert sorted(nearest_centre) == list(range(8))


def test_partial_fit_after_fit_keeps_learning(blobs):
    normal, _, outliers = blobs
    det = LatentDistance(k=1, device="cpu", maps=False).fit(normal)
    assert det.decision_function(outliers).min() > 3
    det.partial_fit(outliers)  # the "outliers" become normal: each now finds itself
    assert det.decision_function(outliers).max() < 1e-2 and det.n_seen_ == 420


@pytest.mark.parametrize("method", ["knn", "gaussian"])
def test_score_map_points_at_the_defect(shapes_images, method):
    normal, defective = shapes_images(120, False), shapes_images(20, True)
    det = LatentDistance(method=method, patch_size=3, device="cpu").fit(normal)
    maps = det.score_map(defective)
    assert maps.shape == (20, 16, 16)
    truth = np.abs(defective - shapes_images(20, False)).sum(1) > 0  # not exact: spot only
    spot = np.zeros((16, 16), bool)
    spot[0:5, 12:15] = True
    inside = maps[:, spot].mean()
    outside = maps[:, ~spot].mean()
    assert inside > 3 * outside, (inside, outside, truth.mean())
    assert _auroc(det.decision_function(shapes_images(40, False)), det.decision_function(defective)) > 0.95


def test_faiss_search_agrees_with_torch(blobs):
    if not faiss_available():
        pytest.fail("faiss-cpu is part of the dev extra; install with pip install -e '.[dev]'")
    normal, test_normal, outliers = blobs
    q = np.concatenate([test_normal, outliers])
    a = LatentDistance(search="torch", device="cpu").fit(normal).decision_function(q)
    b = LatentDistance(search="faiss", device="cpu").fit(normal).decision_function(q)
    assert np.allclose(a, b, atol=1e-3)
    d = knn_distances(torch.tensor(normal), torch.tensor(normal), 3, exclude_self=True, backend="faiss")
    assert (d[:, 0] > 0).all()


def test_raw_pixel_knn_on_real_mnist_digit(mnist_dir):
    train = load_data("mnist:train?classes=1&limit=2000")
    test = load_data("mnist:test?limit=2000")
    det = LatentDistance(image_score="pooled", maps=False, device="cpu").fit(train)
    auc = roc_auc_score(test.anomaly_labels(["1"]), det.decision_function(test))
    assert auc > 0.99  # digit 1 is the easy case: 99.8 with all data


def test_backbone_features_rank_outliers(shapes_images):
    normal, defective = shapes_images(60, False), shapes_images(20, True)
    det = LatentDistance(backbone="resnet18", weights="random", image_size=32, device="cpu").fit(normal)
    assert det.score_map(defective).shape == (20, 16, 16)
    assert _auroc(det.decision_function(shapes_images(40, False)), det.decision_function(defective)) > 0.9


@pytest.mark.parametrize(
    "params, message",
    [
        ({"method": "lof"}, "method='lof': unknown"),
        ({"k": 0}, "k=0: must be an integer in \\[1, 10000\\]"),
        ({"memory_size": 3, "k": 5}, "memory_size=3 must be at least k=5"),
        ({"backbone": "resnet19", "weights": "random"}, "resnet19"),
        ({"backbone": "resnet18", "weights": "random", "layers": ["layer9"]}, "layer9"),
        ({"device": "tpu"}, "tpu"),
    ],
)
def test_bad_parameters_fail_at_fit(blobs, params, message):
    with pytest.raises(AnomalyError, match=message):
        LatentDistance(**params).fit(np.zeros((10, 1, 8, 8), np.float32))


def test_misuse_errors(blobs):
    normal, _, _ = blobs
    with pytest.raises(AnomalyError, match="not fitted"):
        LatentDistance().decision_function(normal)
    det = LatentDistance(device="cpu").fit(normal)
    with pytest.raises(AnomalyError, match="not calibrated"):
        det.predict(normal)
    with pytest.raises(AnomalyError, match="X has 8 features, but LatentDistance is expecting 16 features"):
        det.decision_function(normal[:, :8])
    with pytest.raises(AnomalyError, match="needs images"):
        det.score_map(normal)


def test_calibrate_then_predict_flags_outliers(blobs):
    normal, test_normal, outliers = blobs
    det = LatentDistance(device="cpu").fit(normal[:300]).calibrate(normal[300:], fpr=0.05)
    assert det.predict(outliers).all()
    assert det.predict(test_normal).mean() < 0.15
    p = det.p_values(det.decision_function(outliers))
    assert (p <= 1 / 101 + 1e-12).all()


@pytest.mark.parametrize("name, method", [("padim", "gaussian"), ("patchcore", "knn")])
def test_presets_are_parameters_of_the_one_class(shapes_images, name, method):
    """PaDiM and PatchCore are recipes of LatentDistance (random weights here: no network)."""
    overrides = {"weights": "random", "image_size": 32, "device": "cpu"}
    if name == "patchcore":
        overrides["backbone"] = "resnet18"  # wide_resnet50_2 is slow on a test's CPU
    det = LatentDistance.preset(name, **overrides)
    assert det.method == method and det.image_score == "patch" and det.weights == "random"
    det.fit(shapes_images(60, False))
    assert "Gaussian per position" in det.summary() if method == "gaussian" else "patch bank" in det.summary()
    assert _auroc(det.decision_function(shapes_images(40, False)), det.decision_function(shapes_images(20, True))) > 0.9
    with pytest.raises(AnomalyError, match="preset 'spade': unknown; presets are: patchcore, padim"):
        LatentDistance.preset("spade")


def test_scaling_feature_weighs_features_in_their_own_units_alike(tmp_path):
    rng = np.random.default_rng(0)
    units = np.array([1.0, 1000.0, 0.01])
    x, t = rng.normal(size=(400, 3)) * units, rng.normal(size=(80, 3)) * units
    y = (np.arange(80) < 40).astype(int)
    t[:40, 2] += 0.05  # five standard deviations of the narrowest feature
    with pytest.warns(UserWarning, match="spreads differ"):
        plain = LatentDistance(device="cpu").fit(x)
    det = LatentDistance(device="cpu", scaling="feature").fit(x)
    assert det.score(t, y) > 0.95 > 0.7 > plain.score(t, y)
    np.testing.assert_allclose(det.bank_.feature_mean, x.mean(0), rtol=1e-4, atol=1e-3)
    det.save(tmp_path / "m.anomaly")
    np.testing.assert_array_equal(al.load(tmp_path / "m.anomaly").decision_function(t), det.decision_function(t))
    # a constant feature keeps its unit instead of dividing by zero
    const = np.c_[x, np.full(len(x), 3.0)]
    assert np.isfinite(LatentDistance(device="cpu", scaling="feature").fit(const).decision_function(const[:5])).all()


def test_scaling_feature_refuses_what_it_cannot_measure():
    x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    with pytest.raises(AnomalyError, match="start with fit"):
        LatentDistance(device="cpu", scaling="feature").partial_fit(x)
    with pytest.raises(AnomalyError, match="one-shot iterator"):
        LatentDistance(device="cpu", scaling="feature").fit(iter([x]))
    with pytest.raises(AnomalyError, match=r"applies to vectors \(N, D\), got samples shaped \(1, 8, 8\)"):
        LatentDistance(device="cpu", scaling="feature").fit(np.zeros((6, 1, 8, 8), np.float32))
    with pytest.raises(AnomalyError, match="applies to vectors"):
        LatentDistance(device="cpu", scaling="feature", backbone="resnet18").fit(x)
    det = LatentDistance(device="cpu", scaling="feature").fit(x)
    before = det.decision_function(x[:5] + 10)
    det.partial_fit(x[:5] + 10)  # after fit: learned on the fitted scale
    assert det.decision_function(x[:5] + 10).max() < 0.25 * before.min()


def test_a_vector_bundle_written_before_scaling_existed_scores_as_before():
    """tests/data/latent_vectors_before_scaling.anomaly was written by the code before ``scaling``
    (commit 22053f0): it loads with the values as they are."""
    from pathlib import Path

    data = Path(__file__).resolve().parents[1] / "data"
    assert "scaling" not in al.read_header(data / "latent_vectors_before_scaling.anomaly")["params"]
    det = al.load(data / "latent_vectors_before_scaling.anomaly")
    expected = np.load(data / "latent_vectors_before_scaling_expected.npz")
    assert det.scaling == "none"
    np.testing.assert_allclose(det.decision_function(expected["x"]), expected["scores"], rtol=1e-5, atol=1e-6)


def test_a_standardised_vector_bundle_exports_its_scale_to_onnx(tmp_path):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    from anomalib_lite.runtime.export import export_onnx

    rng = np.random.default_rng(0)
    x = (rng.normal(size=(120, 4)) * [1, 100, 1, 0.1]).astype(np.float32)
    det = LatentDistance(device="cpu", scaling="feature").fit(x)
    export_onnx(det, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    (score,) = session.run(["score"], {session.get_inputs()[0].name: x[:20] * 1.5})
    np.testing.assert_allclose(score.ravel(), det.decision_function(x[:20] * 1.5), rtol=1e-4, atol=1e-4)
