import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from anomalib_lite import AnomalyError, iter_batches


def test_uint8_images_become_float_in_unit_range_and_gain_a_channel():
    x = np.full((5, 28, 28), 255, dtype=np.uint8)
    (b,) = list(iter_batches(x, batch_size=8))
    assert b.x.dtype == torch.float32 and b.x.shape == (5, 1, 28, 28)
    assert float(b.x.max()) == 1.0


def test_float_images_of_0_to_255_are_warned_of_and_uint8_and_vectors_are_not():
    """cv2 / PIL arrays cast to float hold 0 to 255; the detectors read float images in [0, 1],
    so a backbone or an autoencoder would see them 255 times too bright, silently."""
    import warnings

    import anomalib_lite as al

    u8 = (np.random.default_rng(0).random((20, 16, 16, 3)) * 255).astype(np.uint8)
    with pytest.warns(UserWarning, match="float images with values above 10.*divide by 255, or pass uint8"):
        al.LatentDistance().fit(u8.astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        al.LatentDistance().fit(u8)  # uint8: read as 0 to 255
        al.LatentDistance().fit(u8.astype(np.float32) / 255)
        al.LatentDistance().fit(np.random.default_rng(0).normal(0, 100, (20, 8)))  # vectors: any scale


def test_channels_last_images_are_moved_to_channels_first():
    x = np.zeros((4, 32, 32, 3), dtype=np.float32)
    x[..., 2] = 1.0
    (b,) = list(iter_batches(x))
    assert b.x.shape == (4, 3, 32, 32)
    assert float(b.x[:, 2].mean()) == 1.0 and float(b.x[:, :2].abs().sum()) == 0.0


def test_batches_cover_every_sample_once_with_global_indices():
    x = torch.arange(10, dtype=torch.float32).reshape(10, 1)
    got = list(iter_batches(x, batch_size=4))
    assert [len(b) for b in got] == [4, 4, 2]
    assert torch.cat([b.index for b in got]).tolist() == list(range(10))
    assert torch.cat([b.x for b in got])[:, 0].tolist() == list(range(10))


def test_dataloader_and_labelled_iterables_are_accepted():
    x = torch.rand(12, 1, 8, 8)
    y = torch.arange(12) % 2
    loader = DataLoader(TensorDataset(x, y), batch_size=5)
    got = list(iter_batches(loader))
    assert torch.equal(torch.cat([b.y for b in got]), y)
    got = list(iter_batches([(x[:6], y[:6]), (x[6:], y[6:])]))
    assert torch.equal(torch.cat([b.x for b in got]), x)
    got = list(iter_batches((x.numpy(), y.numpy()), batch_size=7))
    assert [len(b) for b in got] == [7, 5] and got[1].y.tolist() == y[7:].tolist()
    got = list(iter_batches(TensorDataset(x), batch_size=12))
    assert torch.equal(got[0].x, x)
    (got,) = list(iter_batches({"image": x, "label": y}))  # a dict is one batch, as a DataLoader's items
    assert torch.equal(got.x, x) and torch.equal(got.y, y)


@pytest.mark.parametrize(
    "data, message",
    [
        (np.zeros((0, 4)), "no samples"),
        (np.zeros((2, 2, 2, 2, 2)), "rank 5"),
        (np.zeros(7), "rank 1"),
        (np.array(["a", "b"]), "not numeric"),
        ("mnist", "cannot read a str"),
        (np.float64(3.0), "a single number; expected samples"),
        (torch.tensor(3.0), "a single number; expected samples"),
        ({"a": np.zeros((2, 3))}, "a dict batch needs its samples under 'x', 'image', 'images' or 'input'; its keys are a"),
    ],
)
def test_bad_arrays_give_one_clear_error(data, message):
    with pytest.raises(AnomalyError, match=message):
        list(iter_batches(data))


def test_nan_is_reported_with_its_global_sample_index():
    x = np.zeros((10, 3), dtype=np.float32)
    x[7, 1] = np.nan
    with pytest.raises(AnomalyError, match="sample 7 contains NaN"):
        list(iter_batches(x, batch_size=3))
    x[7, 1] = np.inf
    with pytest.raises(AnomalyError, match="sample 7 contains inf"):
        list(iter_batches(x, batch_size=3))


def test_batches_of_different_sample_shapes_are_rejected():
    with pytest.raises(AnomalyError, match="sample 2 has shape"):
        list(iter_batches([np.zeros((2, 1, 8, 8)), np.zeros((2, 1, 9, 9))]))


def test_a_list_of_single_images_is_refused_with_the_fix_not_read_as_batches():
    """A list is read as batches; a list of single images (as a loop over files, a Dataset or PIL
    gives) would make each image a batch of rows (a (3, 32, 32) image: 3 grey images). One error."""
    from PIL import Image

    from anomalib_lite import LatentDistance

    hwc = (np.random.default_rng(0).random((5, 32, 32, 3)) * 255).astype(np.uint8)
    chw = [torch.as_tensor(a).permute(2, 0, 1).float() / 255 for a in hwc]
    cases = [(list(hwc), "HWC (32, 32, 3)", "np.stack(images)"), (chw, "CHW (3, 32, 32)", "torch.stack(images)"),
             ([(c, 0) for c in chw], "CHW", "torch.stack"),
             ([Image.fromarray(a) for a in hwc], "PIL", "np.stack([np.asarray(im) for im in images])")]
    for data, shape, fix in cases:
        with pytest.raises(AnomalyError, match=r"a list of 5 single images \(" + shape.replace("(", r"\(").replace(")", r"\)")):
            LatentDistance(device="cpu").fit(data)
        with pytest.raises(AnomalyError, match=fix.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
            list(iter_batches(data))
    # what the error says to do reads them as 5 images; batches are still batches
    assert [b.x.shape for b in iter_batches(np.stack(list(hwc)))] == [(5, 3, 32, 32)]
    assert [b.x.shape for b in iter_batches(torch.stack(chw))] == [(5, 3, 32, 32)]
    assert [tuple(b.x.shape) for b in iter_batches([torch.stack(chw[:3]), torch.stack(chw[3:])])] == [(3, 3, 32, 32), (2, 3, 32, 32)]
    assert [tuple(b.x.shape) for b in iter_batches([np.zeros((4, 8, 8)), np.zeros((4, 8, 8))])] == [(4, 1, 8, 8)] * 2


def test_a_dataset_of_pil_images_or_dicts_reads_as_its_tensors(tmp_path):
    """torchvision's ImageFolder without a transform gives PIL images (torch's collate stops at
    them with a TypeError); read item by item, they score as the ToTensor version does."""
    import torchvision
    from PIL import Image

    from anomalib_lite import LatentDistance

    rng = np.random.default_rng(0)
    (tmp_path / "good").mkdir()
    for i in range(12):
        Image.fromarray((rng.random((16, 16, 3)) * 255).astype(np.uint8)).save(tmp_path / "good" / f"{i}.png")
    pil = torchvision.datasets.ImageFolder(str(tmp_path))
    tensors = torchvision.datasets.ImageFolder(str(tmp_path), transform=torchvision.transforms.ToTensor())
    a = LatentDistance(device="cpu").fit(pil).decision_function(tensors)
    b = LatentDistance(device="cpu").fit(tensors).decision_function(pil)
    np.testing.assert_allclose(a, b, rtol=1e-5)

    class Dicts(torch.utils.data.Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return {"image": torch.full((1, 8, 8), float(i)), "label": i % 2}

    got = list(iter_batches(Dicts(), batch_size=4))
    assert [len(b) for b in got] == [4, 1] and got[0].y.tolist() == [0, 1, 0, 1] and float(got[1].x.max()) == 4.0
