"""Run by tests/anomalib_lite/test_distributed.py in each process of a torchrun job (or of a
hand-made group): ``python _dist_worker.py MODE OUT_DIR``. Writes rank 0's results to OUT_DIR."""
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from anomalib_lite import distributed


def digits(n_train: int, n_test: int):
    """MNIST 7s to fit on and the first test digits (all classes) to score."""
    from anomalib_lite.data.sources import load

    train = load(f"mnist:train?classes=7&limit={n_train}")
    test = load(f"mnist:test?limit={n_test}")
    return train.subset(np.arange(len(train))), test


def latent(out: Path) -> None:
    """Python API inside a process group: pooled full bank, patch full bank (coreset_ratio=1)
    and the default patch coreset on digits, and the default on a texture (whose held images
    join the banks); rank 0 keeps each one's scores and a bundle."""
    from anomalib_lite import LatentDistance
    from anomalib_lite.data.sample_data import weave

    train, test = digits(120, 120)
    runs = {
        "pooled": dict(image_score="pooled", maps=False),
        "patch_full": dict(coreset_ratio=1.0, memory_size=30_000),
        "patch_coreset": dict(coreset_ratio=0.1),
    }
    for name, params in runs.items():
        det = LatentDistance(device="cpu", **params).fit(train)
        scores = det.decision_function(test)
        det.save(out / f"{name}.anomaly")
        if distributed.is_main():
            np.save(out / f"{name}.npy", scores)
    det = LatentDistance(device="cpu").fit(weave(40, size=32, seed=0))
    scores = det.decision_function(weave(12, size=32, seed=5))
    det.save(out / "texture.anomaly")
    if distributed.is_main():
        np.save(out / "texture.npy", scores)


def tiny_net(seed: int = 0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))


def tiny_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(203, 8, generator=g)
    y = (x[:, :2].sum(1, keepdim=True) > 0).float()
    return x, y


def train_tiny():
    """The training loop on a tiny model: 203 samples (batches that do not split evenly)."""
    from anomalib_lite.training.loop import TrainConfig, fit_model

    x, y = tiny_data()
    net = tiny_net()
    loss = lambda model, step: torch.nn.functional.binary_cross_entropy_with_logits(model(step.x), step.y)
    cfg = TrainConfig(epochs=6, batch_size=32, lr=1e-2, patience=None, amp=False, num_workers=0)
    history = fit_model(net, loss, x, y, cfg, "cpu")
    return net, history


def ddp(out: Path) -> None:
    net, history = train_tiny()
    if distributed.is_main():
        torch.save({"state": net.state_dict(), "train_loss": history.train_loss, "val_loss": history.val_loss},
                   out / "ddp.pt")


def hang(out: Path) -> None:
    """Rank 1 never joins: rank 0's collective must give up after the timeout, in one line."""
    if distributed.rank() == 1:
        time.sleep(12)  # well past rank 0's timeout (the test sets 3 s)
        return
    start = time.perf_counter()
    try:
        distributed.all_sum([1.0])
    except distributed.DistributedError as e:
        (out / "hang.txt").write_text(f"{time.perf_counter() - start:.1f}\n{e}")
        os._exit(1)  # do not wait for the sleeping peer at exit


if __name__ == "__main__":
    mode, out = sys.argv[1], Path(sys.argv[2])
    distributed.init_from_env()
    done = False
    try:
        if mode == "api":
            latent(out)
            ddp(out)
            done = True
        else:
            hang(out)
    finally:
        # as the CLI does: ranks that succeeded leave together (one tearing its gloo connections
        # down while rank 0 still writes aborted it now and then: "terminate called without an
        # active exception", CI at 1d27e4d); a hung or failed run does not wait
        distributed.shutdown(synchronise=done)
