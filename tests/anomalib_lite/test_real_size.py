"""Real-size images (issue 10): image scores from patch evidence, memory that follows the data,
MVTec-style folders with masks, PRO, tiles, names on outputs."""
import math

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

import anomalib_lite as al
from anomalib_lite import AnomalyError, LatentDistance
from anomalib_lite.evaluation.assessment import assess, format_verdict, score_rows
from anomalib_lite.scoring.metrics import pro_auc
from anomalib_lite.components.streaming import Reservoir
from anomalib_lite.data.tiling import Tiling


def _texture(rng, n, size=48):
    """Smooth random texture, each image with its own brightness and contrast."""
    x = rng.normal(0, 1, (n, 1, size, size)).astype(np.float32)
    x = torch.nn.functional.avg_pool2d(torch.from_numpy(x), 5, 1, 2).numpy()
    gain, offset = rng.uniform(0.2, 0.6, (n, 1, 1, 1)), rng.uniform(0.35, 0.65, (n, 1, 1, 1))
    return (offset + gain * x).clip(0, 1).astype(np.float32)


def _with_spot(x, rng, side=4):
    """A small checkerboard at a random place (0.7 % of a 48 px image), a pattern normal images lack."""
    x, masks = x.copy(), np.zeros((len(x), *x.shape[-2:]), bool)
    board = (np.indices((side, side)).sum(0) % 2 == 0).astype(np.float32)
    for i in range(len(x)):
        r, c = rng.integers(2, x.shape[-1] - side - 2, 2)
        x[i, :, r : r + side, c : c + side] = board
        masks[i, r : r + side, c : c + side] = True
    return x, masks


@pytest.fixture(scope="module")
def spots():
    rng = np.random.default_rng(0)
    train, normal = _texture(rng, 60), _texture(rng, 30)
    defective, masks = _with_spot(_texture(rng, 30), rng)
    return train, normal, defective, masks


def _auroc(normal_scores, anomalous_scores):
    return roc_auc_score(np.r_[np.zeros(len(normal_scores)), np.ones(len(anomalous_scores))],
                         np.r_[normal_scores, anomalous_scores])


def test_small_defect_in_large_image_is_found_by_patch_scores_not_pooled(spots):
    train, normal, defective, _ = spots
    patch = LatentDistance(device="cpu").fit(train)  # raw-pixel patches
    assert _auroc(patch.decision_function(normal), patch.decision_function(defective)) > 0.95
    cnn = dict(backbone="resnet18", weights="random", layers=["layer1", "layer2"], device="cpu")
    patch = LatentDistance(**cnn).fit(train)
    assert _auroc(patch.decision_function(normal), patch.decision_function(defective)) > 0.95
    pooled = LatentDistance(image_score="pooled", **cnn).fit(train)
    assert _auroc(pooled.decision_function(normal), pooled.decision_function(defective)) < 0.8  # the spot is averaged away
    raw_pooled = LatentDistance(image_score="pooled", device="cpu").fit(train)
    assert _auroc(raw_pooled.decision_function(normal), raw_pooled.decision_function(defective)) < 0.8


@pytest.mark.parametrize("params", [{}, {"backbone": "resnet18", "weights": "random"}, {"method": "gaussian"},
                                    {"reweight": 3}])
def test_image_score_is_the_maximum_of_its_map(spots, params):
    train, _, defective, _ = spots
    det = LatentDistance(device="cpu", image_score="patch", **params).fit(train)
    scores, maps = det.decision_function(defective), det.score_map(defective)
    assert maps.shape == (30, 48, 48)
    assert np.allclose(scores, maps.reshape(30, -1).max(1), rtol=1e-5)


def test_reweighting_scales_scores_by_a_factor_below_one(spots):
    train, normal, defective, _ = spots
    plain = LatentDistance(device="cpu").fit(train)
    weighted = LatentDistance(device="cpu", reweight=5).fit(train)
    a, b = plain.decision_function(defective), weighted.decision_function(defective)
    assert ((b > 0) & (b < a)).all()
    assert _auroc(weighted.decision_function(normal), b) > 0.9


def test_bank_is_a_share_of_the_patches_seen_and_never_more(spots):
    train = spots[0][:6]
    det = LatentDistance(device="cpu", coreset_ratio=0.1).fit(train)
    seen = det.patches_seen_
    assert seen == 6 * det.map_grid_[0] * det.map_grid_[1]
    assert len(det.patch_memory_) == math.ceil(0.1 * seen) <= seen
    capped = LatentDistance(device="cpu", coreset_ratio=0.5, memory_size=40).fit(train)
    assert len(capped.patch_memory_) == 40
    whole = LatentDistance(device="cpu", coreset_ratio=1.0).fit(train[:2])
    assert len(whole.patch_memory_) == whole.patches_seen_  # nothing invented, nothing dropped
    assert "patch bank" in det.summary() and f"{seen:,}" in det.summary()


def test_reservoir_allocates_only_what_it_was_shown():
    res = Reservoir(10**9, seed=0)  # a capacity that could never be reserved
    res.add(torch.ones(5, 3))
    res.add(torch.zeros(4, 3))
    assert res.values().shape == (9, 3) and res.values().untyped_storage().nbytes() == 9 * 3 * 4
    small = Reservoir(4, seed=0)
    small.add(torch.arange(10.0)[:, None])
    assert small.values().shape == (4, 1) and small.n_seen == 10


def test_half_precision_bank_changes_no_figure(spots):
    train, normal, defective, _ = spots
    half = LatentDistance(device="cpu", image_score="patch").fit(train)
    full = LatentDistance(device="cpu", image_score="patch", bank_dtype="float32").fit(train)
    assert half.patch_memory_.dtype == torch.float16 and full.patch_memory_.dtype == torch.float32
    a, b = half.decision_function(np.concatenate([normal, defective])), full.decision_function(np.concatenate([normal, defective]))
    assert np.allclose(a, b, rtol=2e-3)
    assert _auroc(half.decision_function(normal), half.decision_function(defective)) == _auroc(full.decision_function(normal), full.decision_function(defective))


def test_pro_of_perfect_random_and_partial_maps():
    masks = np.zeros((20, 40, 40), bool)
    masks[:10, 5:15, 5:15] = True
    masks[:10, 30:33, 30:33] = True  # a small second region counts as much as the large one
    assert pro_auc(masks, masks.astype(float)) == pytest.approx(1.0)
    rnd = np.random.default_rng(0).random(masks.shape)
    assert pro_auc(masks, rnd) == pytest.approx(0.15, abs=0.02)  # PRO(fpr) ~ fpr: 0.3^2 / 2 / 0.3
    half = np.where(masks, 1.0, 0.0)
    half[:, 30:33, 30:33] = 0.0  # the small region is missed: it scores like normal pixels, so its
    # overlap is about the false positive rate: PRO = (1 + 0.15) / 2, though it is 8 % of defect pixels
    assert pro_auc(masks, half + 1e-3 * rnd) == pytest.approx(0.575, abs=0.02)


def _mvtec(root, rng, size=48, n_train=24, n_good=8, n_bad=6):
    """A tiny MVTec AD layout: CAT/train/good, CAT/test/{good,spot}, CAT/ground_truth/spot/*_mask.png."""
    cat = root / "tex"
    for sub in ("train/good", "test/good", "test/spot", "ground_truth/spot"):
        (cat / sub).mkdir(parents=True)
    save = lambda a, p: Image.fromarray((a[0] * 255).round().astype(np.uint8)).save(p)
    for i, a in enumerate(_texture(rng, n_train, size)):
        save(a, cat / "train" / "good" / f"{i:03d}.png")
    for i, a in enumerate(_texture(rng, n_good, size)):
        save(a, cat / "test" / "good" / f"{i:03d}.png")
    bad, masks = _with_spot(_texture(rng, n_bad, size), rng)
    for i, (a, m) in enumerate(zip(bad, masks)):
        save(a, cat / "test" / "spot" / f"{i:03d}.png")
        Image.fromarray((m * 255).astype(np.uint8)).save(cat / "ground_truth" / "spot" / f"{i:03d}_mask.png")
    return cat


def test_mvtec_layout_reads_masks_and_gives_pixel_figures(tmp_path):
    cat = _mvtec(tmp_path, np.random.default_rng(1))
    with pytest.raises(AnomalyError, match="MVTec-style category.*train.*test"):
        al.load_data(str(cat))
    test = al.load_data(str(cat / "test"))
    assert test.has_masks and test.names[0] == "good/000.png" and test.names[-1] == "spot/005.png"
    masks = test.read_masks(np.arange(len(test)))
    assert masks.shape == (14, 48, 48) and not masks[:8].any() and masks[8:].sum(axis=(1, 2)).min() == 16
    det = LatentDistance(device="cpu").fit(al.load_data(str(cat / "train")))
    f = assess(det, test).figures
    assert f["roc_auc"] > 0.95 and f["pixel_roc_auc"] > 0.95 and f["pro"] > 0.8
    assert set(f["per_class"]) == {"spot"} and f["per_class"]["spot"]["n"] == 6
    page = al.report(det, test, tmp_path / "r.html", top=3).read_text()
    assert "with the true defect outlined" in page and "spot/0" in page and 'id="per-class"' in page
    ev = assess(det, test)
    paths = al.visual.write_heatmaps(tmp_path / "maps", ev, top=2)
    assert [p.relative_to(tmp_path / "maps").as_posix()[:5] for p in paths] == ["spot/", "spot/"]
    with Image.open(paths[0]) as im:  # image, and image under its map with the mask outlined in green
        a = np.asarray(im.convert("RGB"))
        assert (a == al.visual.CONTOUR).all(-1).any() and im.width > 2 * 160
    (cat / "ground_truth" / "spot" / "002_mask.png").unlink()
    with pytest.raises(AnomalyError, match="002.png: no ground-truth mask"):
        al.load_data(str(cat / "test"))


def test_file_glob_and_unlabelled_folder_specs(tmp_path):
    cat = _mvtec(tmp_path, np.random.default_rng(2), n_train=10, n_good=3, n_bad=2)
    one = al.load_data(str(cat / "test" / "spot" / "001.png"))
    assert len(one) == 1 and one.names == ["001.png"] and one.targets is None
    many = al.load_data(str(cat / "test" / "*" / "00[01].png"))
    assert many.names == ["good/000.png", "good/001.png", "spot/000.png", "spot/001.png"] and many.targets is None
    flat = al.load_data(str(cat / "train" / "good"))  # images directly inside: no labels
    assert len(flat) == 10 and flat.targets is None and flat.anomaly_labels() is None
    with pytest.raises(AnomalyError, match="no image files match"):
        al.load_data(str(cat / "*.jpg"))


def test_scores_table_has_paths_and_one_image_gets_one_line(tmp_path):
    cat = _mvtec(tmp_path, np.random.default_rng(3), n_train=20, n_good=4, n_bad=3)
    train = al.load_data(str(cat / "train"))
    fit, held = train.split(0.25)
    det = LatentDistance(device="cpu").fit(fit).calibrate(held, fpr=0.2)
    head, rows = score_rows(assess(det, al.load_data(str(cat / "test"))))
    assert head == ["index", "path", "score", "p_value", "is_anomaly", "label"]
    assert [r[1] for r in rows][:2] == ["good/000.png", "good/001.png"] and rows[-1][1] == "spot/002.png"
    line = format_verdict(assess(det, al.load_data(str(cat / "test" / "spot" / "000.png"))))
    assert line.startswith("000.png: score ") and "p-value" in line and ("ANOMALY" in line or "normal" in line)


def test_one_tile_equals_the_whole_image_and_tiles_cover_larger_images(spots):
    train, normal, defective, _ = spots
    det = LatentDistance(device="cpu").fit(train)

    class Tiled(al.sources.ArraySource):
        pass

    whole = al.sources.ArraySource("x", defective)
    tiled = Tiled("x", defective)
    tiled.tiling = Tiling(48)
    assert np.array_equal(det.score_map(tiled), det.score_map(whole))
    assert np.array_equal(det.decision_function(tiled), det.decision_function(whole))
    # a detector fitted on 48 px tiles scores 96 px images tile by tile, stitching the maps
    big = np.concatenate([np.concatenate([normal[:10], defective[:10]], 3),
                          np.concatenate([normal[10:20], normal[20:30]], 3)], 2)  # (10, 1, 96, 96)
    src = al.sources.ArraySource("big", big)
    src.tiling = Tiling(48, overlap=0.5)
    maps, scores = det.score_map(src), det.decision_function(src)
    assert maps.shape == (10, 96, 96)
    tile_scores = det.decision_function(al.sources.ArraySource("t", Tiling(48, 0.5).split(torch.from_numpy(big)).numpy()))
    assert np.allclose(scores, tile_scores.reshape(10, -1).max(1))
    # the defects sit in the top-right quarter: that is where the stitched maps peak
    peak = maps.reshape(10, -1).argmax(1)
    assert ((peak // 96 < 48) & (peak % 96 >= 48)).mean() >= 0.9


def test_tile_spec_and_fitted_tiling_is_reused(tmp_path):
    rng = np.random.default_rng(4)
    root = tmp_path / "big"
    (root / "good").mkdir(parents=True)
    for i, a in enumerate(_texture(rng, 8, 96)):
        Image.fromarray((a[0] * 255).round().astype(np.uint8)).save(root / "good" / f"{i}.png")
    src = al.load_data(f"{root}?tile=48&overlap=0")
    det = LatentDistance(device="cpu").fit(src)
    assert det.input_shape_ == (1, 48, 48) and det.n_seen_ == 8 * 4 and det.tiling_ == Tiling(48, 0.0)
    plain = al.load_data(str(root))  # no ?tile=: the bundle's tiling applies
    assert det.score_map(plain).shape == (8, 96, 96)
    det.save(tmp_path / "m.anomaly")
    back = al.load(tmp_path / "m.anomaly")
    assert back.tiling_ == det.tiling_ and np.array_equal(back.decision_function(plain), det.decision_function(plain))
    for spec, message in ((f"{root}?tile=4", "at least 8"), (f"{root}?tile=200", "smaller than the 200 px tile"),
                          (f"{root}?overlap=0.5", "overlap= applies with tile= only")):
        with pytest.raises(AnomalyError, match=message):
            det2 = LatentDistance(device="cpu")
            det2.fit(al.load_data(spec))


def test_trained_detectors_learn_from_tiles():
    rng = np.random.default_rng(6)
    x = _texture(rng, 12, 64)
    src = al.sources.ArraySource("arr", x)
    src.tiling = Tiling(32, overlap=0.0)
    det = al.Reconstruction(epochs=1, batch_size=8, device="cpu").fit(src)
    assert det.input_shape_ == (1, 32, 32) and det.n_seen_ == 12 * 4 and det.tiling_ == Tiling(32, 0.0)
    whole = al.sources.ArraySource("whole", x[:3])  # scored with the tiling it was fitted with
    assert det.decision_function(whole).shape == (3,) and det.score_map(whole).shape == (3, 64, 64)


def test_a_fit_on_large_image_files_at_full_size_says_how_to_fit_faster(tmp_path):
    from anomalib_lite.app import workflows
    from anomalib_lite.data.sources import fit_hint

    big, small = tmp_path / "big", tmp_path / "small"
    for folder, (w, h) in ((big, (600, 500)), (small, (128, 128))):
        folder.mkdir()
        for i in range(4):
            Image.fromarray(np.full((h, w), 40 * i, np.uint8)).save(folder / f"{i}.png")
    hint = fit_hint(str(big), al.load_data(str(big)))
    assert "images of 600x500 px are fitted at full size, 5 times the pixels of 256x256" in hint
    assert "?size=256" in hint and "?tile=512" in hint
    # a size or tiles chosen, small images: nothing to say
    for spec in (f"{big}?size=300", f"{big}?tile=256", str(small)):
        assert fit_hint(spec, al.load_data(spec)) is None

    class Stop(Exception):
        pass

    det = LatentDistance(device="cpu")
    det.fit = lambda *a, **k: (_ for _ in ()).throw(Stop())  # the warning must come before any fitting
    with pytest.warns(UserWarning, match=r"600x500 px are fitted at full size"), pytest.raises(Stop):
        workflows.fit_and_save(det, str(big), tmp_path / "m.anomaly", fpr=0.3)
    assert not (tmp_path / "m.anomaly").exists()
