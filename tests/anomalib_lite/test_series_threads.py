"""The thread policy of the series detectors: one torch thread for their small networks on the
CPU by default, ``threads=N`` to override, logged in verbose mode, the caller's count restored."""
import numpy as np
import pytest
import torch

import anomalib_lite.detectors.continuation as continuation
import anomalib_lite.detectors.supervised_rnn as supervised_rnn
from anomalib_lite import Continuation, SupervisedRNN
from anomalib_lite.threads import SMALL_MODEL, choose_threads, torch_threads


def _data(kind):
    x = np.sin(np.arange(600) / 3.0) + 0.05 * np.random.default_rng(0).normal(size=600)
    if kind == "rnn":
        y = np.zeros(600, dtype=int)
        y[[200, 400]] = 1
        return (x, y)
    return x


@pytest.mark.parametrize("cls, module, kind", [(Continuation, continuation, "cont"), (SupervisedRNN, supervised_rnn, "rnn")])
def test_policy_is_applied_restored_and_overridable(two_threads, monkeypatch, capsys, cls, module, kind):
    seen = []
    real_fit = module.fit_model

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(module, "fit_model", spy)
    det = cls(window=16, horizon=3, hidden=8, epochs=1, device="cpu", verbose=True).fit(_data(kind))
    assert seen == [1] and torch.get_num_threads() == 2  # trained with one thread, the caller's 2 restored
    assert f"anomalib_lite: {cls.__name__}: 1 torch thread (a small network on the CPU" in capsys.readouterr().err
    scoring = []
    det.model_.register_forward_hook(lambda *_: scoring.append(torch.get_num_threads()))
    det.reset().decision_function(np.zeros(200))  # chunks of batch_size steps: torch passes, under the policy too
    assert scoring and set(scoring) == {1} and torch.get_num_threads() == 2
    seen.clear()
    torch.set_num_threads(1)
    det.set_params(threads=2, verbose=False).fit(_data(kind))
    assert seen == [2] and torch.get_num_threads() == 1
    assert capsys.readouterr().err == ""  # not verbose: nothing logged


def test_the_rule():
    assert choose_threads(None, 50_000)[0] == 1
    assert choose_threads(None, SMALL_MODEL)[0] == torch.get_num_threads()  # large models keep torch's setting
    assert choose_threads(3, 50_000) == (3, "threads given")
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads=0: must be an integer >= 1"):
        choose_threads(0, 10)
