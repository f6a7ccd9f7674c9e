"""evaluate(): figures from scikit-learn on labelled data, pixel ROC-AUC on planted anomalies with
exact masks, series window figures; and the synth= data spec that plants them."""
import numpy as np
import pytest
from sklearn import metrics as skm

import anomalib_lite as al
from anomalib_lite.evaluation.assessment import assess, format_figures


@pytest.fixture(scope="module")
def digit7(mnist_dir):
    det = al.LatentDistance(k=5, image_score="pooled", device="cpu").fit(al.load_data("mnist:train?classes=7&limit=1200"))
    return det.calibrate(al.load_data("mnist:train?classes=7&limit=300"), fpr=0.05)


def test_figures_equal_scikit_learn_at_the_threshold(digit7):
    source = al.load_data("mnist:test?limit=600")
    figures = al.evaluate(digit7, source)
    scores, y = digit7.decision_function(source), (source.targets != 7).astype(int)
    pred = scores > digit7.threshold_
    assert figures["roc_auc"] == pytest.approx(skm.roc_auc_score(y, scores))
    assert figures["average_precision"] == pytest.approx(skm.average_precision_score(y, scores))
    assert figures["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert figures["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert figures["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert figures["fpr"] == pytest.approx(pred[y == 0].mean())
    assert figures["roc_auc"] > 0.9 and figures["n"] == 600 and "pixel_roc_auc" not in figures
    table = format_figures(figures)
    assert f"{100 * figures['roc_auc']:.2f} %" in table and "false positive rate" in table


def test_synth_spec_plants_anomalies_with_exact_masks(mnist_dir):
    clean = al.load_data("mnist:test?classes=7&limit=200")
    planted = al.load_data("mnist:test?classes=7&limit=200&synth=stroke_blob&severity=1&share=0.5")
    y = planted.anomaly_labels()
    assert y.sum() == 100 and planted.class_names[-1] == "synthetic"
    changed = (planted.x != clean.x).any(axis=tuple(range(1, clean.x.ndim)))
    assert np.array_equal(changed, y.astype(bool))
    assert np.array_equal(planted.masks, planted.x != clean.x)  # the mask is exactly what changed
    again = al.load_data("mnist:test?classes=7&limit=200&synth=stroke_blob&severity=1&share=0.5")
    assert np.array_equal(again.x, planted.x)  # seeded


def test_pixel_roc_auc_where_masks_are_known(digit7):
    ev = assess(digit7, "mnist:test?classes=7&limit=120&synth=stroke_blob&severity=1")
    masks = ev.masks(range(120))
    assert masks is not None and ev.figures["n_anomalous"] == 60
    maps = digit7.score_map(ev.source)
    expect = skm.roc_auc_score(masks.reshape(-1), maps.reshape(-1))
    assert ev.figures["pixel_roc_auc"] == pytest.approx(expect)
    assert ev.figures["pixel_roc_auc"] > 0.8 and 0 < ev.figures["pro"] <= 1


@pytest.mark.parametrize("spec, message", [
    ("mnist:test?synth=sparkle", "synth op 'sparkle' unknown; ops are: cutpaste"),
    ("mnist:test?synth=scar&share=2", "share '2' is not a number in [0, 1]"),
    ("mnist:test?severity=0.3", "severity= applies with synth= only"),
])
def test_bad_synth_specs(mnist_dir, spec, message):
    with pytest.raises(al.AnomalyError, match=message.replace("[", r"\[").replace("]", r"\]")):
        al.load_data(spec)


def test_without_labels_the_figures_say_what_is_missing(digit7):
    x = al.load_data("mnist:test?limit=50").x  # a bare array: no classes
    figures = al.evaluate(digit7, al.sources.ArraySource("bare", x))
    assert "roc_auc" not in figures and "ROC-AUC" in figures["note"] and figures["flagged"] >= 0


def test_series_window_figures(tmp_path):
    t = np.arange(1500)
    v = np.sin(2 * np.pi * t / 50)
    v[1200:1210] += 4.0
    lab = np.zeros(1500, dtype=int)
    lab[1195:1215] = 1
    path = tmp_path / "s.csv"
    path.write_text("value,label\n" + "".join(f"{a:.5f},{b}\n" for a, b in zip(v, lab, strict=True)))
    det = al.Continuation(window=32, horizon=1, hidden=16, epochs=8, device="cpu", threshold_rule="moving", season=0,
                          threshold_k=4.0, threshold_window=500)
    det.fit(al.load_data(f"{path}?stop=1000", columns=["value"]))
    source = al.load_data(path, columns=["value"], label_column="label")
    figures = al.evaluate(det, source)
    assert figures["kind"] == "series" and figures["roc_auc"] > 0.9 and figures["flagged"] >= 1
