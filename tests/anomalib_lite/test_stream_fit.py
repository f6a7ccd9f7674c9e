"""Fitting from streams: Reconstruction, SyntheticOOD and pretrain read lazy folders, torch
Datasets and DataLoaders batch by batch, give what the in-memory array gives, never hold the whole
set, and do not depend on the number of DataLoader workers."""
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch.utils.data import DataLoader, Dataset

import anomalib_lite as al
from anomalib_lite import AnomalyError, Reconstruction, SyntheticOOD
from anomalib_lite.data.batches import Samples, training_data
from anomalib_lite.training.pretrain import pretrain

N, SIZE = 40, 16
TOL = dict(rtol=1e-5, atol=1e-6)  # same batches and order; allow for reduction-order differences


@pytest.fixture(scope="module")
def images():
    """uint8 RGB textures (N, H, W, 3): smooth noise plus a bright square."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 60, (N, SIZE, SIZE, 3))
    x = (x + np.roll(x, 1, 1) + np.roll(x, 1, 2)) / 3
    for i in range(N):
        r, c = rng.integers(4, 8, 2)
        x[i, r : r + 5, c : c + 5] = 220
    return x.astype(np.uint8)


@pytest.fixture(scope="module")
def folder(images, tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    for i, im in enumerate(images):
        Image.fromarray(im).save(root / f"{i:03d}.png")  # lossless: the same values as the array
    return root


class Counting(Dataset):
    """A map-style Dataset of HWC uint8 arrays (as PIL/OpenCV give) that counts every read."""

    def __init__(self, images):
        self.images, self.reads = images, 0

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        self.reads += 1
        return self.images[i], 0


def _fitters():
    ae = dict(latent_dim=4, width=4, epochs=2, lr=3e-3, device="cpu")
    ood = dict(image_size=32, epochs=1, synth_ops=["cutpaste"], device="cpu")
    return {
        "reconstruction": lambda data, bs=16, **kw: Reconstruction(**ae, batch_size=bs, **kw).fit(data),
        "reconstruction-backbone": lambda data, bs=16, **kw: Reconstruction(
            backbone="resnet18", weights="random", image_size=32, **{**ae, "epochs": 1}, batch_size=bs, **kw).fit(data),
        "synthetic": lambda data, bs=16, **kw: SyntheticOOD(**ood, batch_size=bs, **kw).fit(data),
        "pretrain": lambda data, bs=16, **kw: pretrain(
            "resnet18", data, epochs=1, image_size=32, batch_size=bs, device="cpu", **kw),
    }


FITTERS = _fitters()


def _outcome(fitted, images):
    """What a fit produced: scores for detectors, the trunk's weights for pretraining."""
    if isinstance(fitted, al.pretrain.PretrainResult):
        return torch.cat([v.flatten().float() for v in fitted.extractor.trunk_state_dict().values()]).numpy()
    return fitted.decision_function(images)


@pytest.mark.parametrize("name", list(FITTERS))
def test_folder_and_dataset_give_what_the_array_gives(name, images, folder):
    fit = FITTERS[name]
    ref = _outcome(fit(images), images)
    from_folder = _outcome(fit(al.load_data(str(folder)), num_workers=0), images)
    from_dataset = _outcome(fit(Counting(images), num_workers=0), images)
    np.testing.assert_allclose(from_folder, ref, **TOL)
    np.testing.assert_allclose(from_dataset, ref, **TOL)


def test_results_do_not_depend_on_the_number_of_workers(images, folder):
    """Workers only decode (the statistics pass and training here); every draw is keyed by index."""
    fit = FITTERS["reconstruction-backbone"]
    serial = _outcome(fit(al.load_data(str(folder)), num_workers=0), images)
    parallel = _outcome(fit(al.load_data(str(folder)), num_workers=2), images)
    np.testing.assert_allclose(parallel, serial, **TOL)


@pytest.mark.parametrize("name", ["reconstruction-backbone", "synthetic", "pretrain"])
def test_nothing_holds_the_whole_set(name, images):
    """Between two forward passes of any network, at most about one batch is read: a fit that
    collected the data first (or a statistics pass over a stacked tensor) reads all 40 at once."""
    data = Counting(images)
    gaps, last = [], [0]

    def hook(module, args):
        gaps.append(data.reads - last[0])
        last[0] = data.reads

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        FITTERS[name](data, bs=8, num_workers=0)
    finally:
        handle.remove()
    assert data.reads >= len(data)  # it did read everything
    assert max(gaps) <= 8 + 2, max(gaps)  # batch_size 8 (+ the first sample, read twice to learn the shape)


def test_a_dataloader_is_read_as_given_every_epoch(images):
    data = Counting(images)
    loader = DataLoader(data, batch_size=10, shuffle=True, generator=torch.Generator().manual_seed(0))
    det = Reconstruction(latent_dim=4, width=4, epochs=3, lr=3e-3, device="cpu").fit(loader)
    h = det.history_
    assert det.n_seen_ == N and det.input_shape_ == (3, SIZE, SIZE)
    # the first batch (shape), every sample once per epoch, once more for decision_scores_ (PyOD's training scores)
    assert data.reads == 10 + 3 * N + N
    assert h.val_loss == h.train_loss  # no held-out share in a stream read as given
    assert h.train_loss[-1] < h.train_loss[0]
    assert np.isfinite(det.decision_function(images)).all()


def test_a_list_of_batches_is_read_every_epoch(images):
    det = Reconstruction(latent_dim=4, width=4, epochs=2, device="cpu").fit([images[:20], images[20:]])
    assert det.n_seen_ == N and len(det.history_.train_loss) == 2


def test_a_one_shot_iterator_is_one_clear_error(images):
    batches = (images[i : i + 10] for i in range(0, N, 10))
    with pytest.raises(AnomalyError, match="generator can be read only once"):
        Reconstruction(epochs=1, device="cpu").fit(batches)
    with pytest.raises(AnomalyError, match="read only once"):
        pretrain("resnet18", iter([images]), epochs=1, device="cpu")


def test_dataset_items_are_normalised_like_iter_batches_and_errors_name_the_sample(images):
    s = training_data(Counting(images))
    assert isinstance(s, Samples) and s.sample_shape == (3, SIZE, SIZE)
    x, y, index = s[[3, 7]]
    ref = next(al.iter_batches(images[[3, 7]])).x
    assert torch.equal(x, ref) and y.tolist() == [0, 0] and index.tolist() == [3, 7]

    class Pil(Dataset):  # torchvision-style items: (PIL image, class)
        def __len__(self):
            return 8

        def __getitem__(self, i):
            return Image.fromarray(images[i]), 1

    assert len(training_data(Pil())) == 8

    x, y, _ = training_data(Pil())[[3, 7]]
    assert torch.equal(x, ref) and y.tolist() == [1, 1]
    bad = np.random.default_rng(0).random((30, 1, 8, 8)).astype(np.float32)
    bad[17, 0, 2, 2] = np.nan
    with pytest.raises(AnomalyError, match="sample 17 contains NaN"):
        Reconstruction(epochs=1, batch_size=8, device="cpu").fit(torch.utils.data.TensorDataset(torch.from_numpy(bad)))


def test_cli_workers_option(folder, tmp_path):
    from cli import cli

    out = tmp_path / "ae.anomaly"
    r = CliRunner().invoke(cli, ["fit", "reconstruction", "--data", str(folder), "-o", str(out), "--epochs", "1",
                                 "--latent-dim", "4", "--width", "4", "--num-workers", "1", "--quiet"])
    assert r.exit_code == 0, r.output
    assert al.load(out).num_workers == 1
    r = CliRunner().invoke(cli, ["pretrain", "--backbone", "resnet18", "--data", str(folder), "-o",
                                 str(tmp_path / "w.safetensors"), "--epochs", "1", "--image-size", "32",
                                 "--num-workers", "-1", "--quiet"])
    assert r.exit_code == 2 and "num_workers=-1" in r.output


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="reads /proc (Linux)")
def test_worker_memory_stays_flat():
    """A DataLoader worker's heap once grew by a batch for every batch it sent (glibc's dynamic
    mmap threshold): 100 batches of 12.6 MB each would add 1.26 GB to it. The window starts after
    a warm-up, and the bound is wide, because a forked worker also copies some of its parent's
    pages as it touches them (tens of MB in a long test session), which is not a leak."""
    from anomalib_lite.data.sources import DataSource

    class Lazy(DataSource):  # not in memory as far as training knows: read by a worker
        spec, targets, class_names, normal_names = "lazy", None, None, None

        def __init__(self, x):
            self.x = x

        def __len__(self):
            return len(self.x)

        def batches(self, batch_size):
            for i in range(0, len(self.x), batch_size):
                yield self.x[i : i + batch_size], None

        def subset(self, indices):
            return Lazy(self.x[indices])

    def private_dirty_mb(pid):
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        return int(next(line for line in text.splitlines() if line.startswith("Private_Dirty")).split()[1]) / 1024

    samples = training_data(Lazy(np.zeros((16, 256, 256, 3), np.uint8)))
    reader = samples.reader(num_workers=1)
    sizes = []
    for k, _ in enumerate(reader.read([torch.arange(16)] * 140)):
        if k in (39, 139):
            tasks = Path("/proc/self/task").iterdir()
            kids = [int(c) for t in tasks for c in (t / "children").read_text().split()]
            sizes.append(sum(private_dirty_mb(pid) for pid in kids))  # the worker's (and any other child's)
    assert sizes[1] - sizes[0] < 300, sizes
