"""The inspection set that `anomalib_lite.data.sample_data` writes: exact masks, fixed halves, MVTec layout."""
from __future__ import annotations

import numpy as np
import pytest

import anomalib_lite as al
from anomalib_lite.data import sample_data as sd


def test_halves_are_fixed_disjoint_and_cover_everything():
    dev, held = sd.HALVES["dev"], sd.HALVES["held-out"]
    assert set(dev["categories"]) | set(held["categories"]) == set(sd.CATEGORIES)
    assert not set(dev["categories"]) & set(held["categories"])
    assert set(dev["defects"]) | set(held["defects"]) == set(sd.DEFECTS)
    assert not set(dev["defects"]) & set(held["defects"])
    assert len(sd.CATEGORIES) >= 6 and len(sd.DEFECTS) >= 8


@pytest.mark.parametrize("defect", sd.DEFECTS)
def test_each_defect_changes_only_its_mask(defect):
    x = sd.photograph("gravel")[:96, :96].copy()
    rng = np.random.default_rng(3)
    y, mask, region = sd.paint_defect(x, defect, rng, sd.photograph("ihc")[:96, :96])
    change = np.abs(y - x).max(axis=2)
    assert mask.any() and mask.mean() < 0.25
    assert change[~mask].max() <= sd.MASK_LEVEL + 1e-6   # nothing outside the mask changed visibly
    assert (change[mask] > sd.MASK_LEVEL).mean() > 0.5     # the mask is mostly changed pixels
    assert not (mask & ~region).any()


def test_set_in_mvtec_layout_reads_back_with_masks(tmp_path):
    counts = sd.make_image_set(tmp_path, categories=["brick"], defects=["hole", "print"], size=64, n_train=4,
                               n_good=2, n_per_defect=2, seed=1)
    assert counts == {"brick": {"train": 4, "good": 2, "hole": 2, "print": 2}}
    test = al.load_data(str(tmp_path / "brick" / "test"))
    assert len(test) == 6 and test.has_masks
    masks = test.read_masks(range(len(test)))
    labels = np.asarray(test.anomaly_labels())
    assert all(np.asarray(m).any() for m, y in zip(masks, labels) if y == 1)
    assert not any(np.asarray(m).any() for m, y in zip(masks, labels) if y == 0)
    # the same seed writes the same files; a category's images do not depend on what else is written
    sd.make_image_set(tmp_path / "again", categories=["grass", "brick"], defects=["hole", "print"], size=64,
                      n_train=4, n_good=2, n_per_defect=2, seed=1)
    for rel in ["train/good/003.png", "test/hole/001.png", "ground_truth/print/000_mask.png"]:
        assert (tmp_path / "brick" / rel).read_bytes() == (tmp_path / "again" / "brick" / rel).read_bytes()


def test_unknown_names_are_one_clear_error(tmp_path):
    with pytest.raises(al.AnomalyError, match="unknown category 'wood'"):
        sd.make_image_set(tmp_path, categories=["wood"])
    with pytest.raises(al.AnomalyError, match="unknown defect 'dent'"):
        sd.make_image_set(tmp_path, categories=["brick"], defects=["dent"], n_train=1, n_good=1)
