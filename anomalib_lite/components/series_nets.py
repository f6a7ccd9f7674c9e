"""Causal networks for the series detectors, each runnable in two equivalent ways.

* ``net(x, state)`` in torch over a whole chunk ``(B, T, D)``, starting from a carried ``state``
  and returning the new one: training (state = zeros), and scoring a long chunk in one pass.
* ``net.stepper()``: the same network as small numpy mat-vec products on its trained weights, one
  time step at a time. Python and torch spend 10-50 us per call on tensors this small, so a step
  in numpy costs a fraction of one in torch.

Both start from and return the same state (a list of float64 arrays, one row per stream), so a
stream may switch between them at any step: the outputs agree to float32 rounding (torch runs in
float32, the stepper in float64; README: "Streams and tolerance").

Encoders (``kind``):

* ``"tcn"``: residual blocks of two dilated causal convolutions (kernel 3). The dilations
  (1, 2, 4, ..., the last one cut short) make the receptive field the first size >= ``window``;
  the state is each convolution's last ``2 * dilation`` inputs (WaveNet-style fast generation:
  exact, since the receptive field is finite).
* ``"lstm"`` / ``"gru"``: recurrent layers whose state (h, c) carries over the whole stream.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["CausalEncoder", "StreamNet", "tcn_dilations"]


def tcn_dilations(window: int) -> list[int]:
    """Dilations 1, 2, 4, ... of the residual blocks (each reaches ``4 * d`` further back), the
    last one cut short so that the receptive field ``1 + 4 * sum(d)`` is the first >= window."""
    dilations, reach, d = [], 1, 1
    while reach < window:
        step = min(d, -(-(window - reach) // 4))
        dilations.append(step)
        reach += 4 * step
        d *= 2
    return dilations or [1]


class _Block(nn.Module):
    """Two dilated causal convolutions (kernel 3) with a residual connection."""

    def __init__(self, c_in: int, c_out: int, dilation: int, dropout: float):
        super().__init__()
        self.d = dilation
        self.conv1 = nn.Conv1d(c_in, c_out, 3, dilation=dilation)
        self.conv2 = nn.Conv1d(c_out, c_out, 3, dilation=dilation)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x: torch.Tensor, s1: torch.Tensor, s2: torch.Tensor):
        """x (B, C, T) and the convolutions' last inputs (B, C, 2d) -> output and new states."""
        a = torch.cat([s1, x], dim=2)
        h = self.drop(torch.relu(self.conv1(a)))
        b = torch.cat([s2, h], dim=2)
        out = self.drop(torch.relu(self.conv2(b)))
        res = x if self.skip is None else self.skip(x)
        k = 2 * self.d
        return torch.relu(out + res), a[:, :, a.shape[2] - k :], b[:, :, b.shape[2] - k :]


class CausalEncoder(nn.Module):
    """(B, T, D) -> (B, T, hidden): the state of a causal network after each step."""

    def __init__(self, kind: str, d_in: int, hidden: int, num_layers: int, dropout: float, window: int):
        super().__init__()
        self.kind, self.d_in, self.hidden = kind, d_in, hidden
        if kind in ("lstm", "gru"):
            rnn = nn.LSTM if kind == "lstm" else nn.GRU
            self.num_layers = num_layers
            self.rnn = rnn(d_in, hidden, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0)
        elif kind == "tcn":
            self.dilations = tcn_dilations(window)
            self.blocks = nn.ModuleList(
                _Block(d_in if i == 0 else hidden, hidden, d, dropout) for i, d in enumerate(self.dilations)
            )
        else:
            raise ValueError(f"unknown encoder kind {kind!r}")

    @property
    def receptive_field(self) -> int | None:
        """Steps a TCN output depends on (None for recurrent encoders: the whole past)."""
        return 1 + 4 * sum(self.dilations) if self.kind == "tcn" else None

    def zero_state(self, batch: int = 1) -> list[np.ndarray]:
        """The state at the start of a stream: zeros (the TCN's zero padding)."""
        if self.kind == "lstm":
            return [np.zeros((batch, self.hidden)) for _ in range(2 * self.num_layers)]
        if self.kind == "gru":
            return [np.zeros((batch, self.hidden)) for _ in range(self.num_layers)]
        out = []
        for i, d in enumerate(self.dilations):
            c_in = self.d_in if i == 0 else self.hidden
            out += [np.zeros((batch, 2 * d, c_in)), np.zeros((batch, 2 * d, self.hidden))]
        return out

    def forward(self, x: torch.Tensor, state: list | None = None):
        """Encode ``x`` (B, T, D) from ``state`` (None: a new stream; else arrays or tensors in
        ``zero_state``'s layout); returns (out, new state as tensors in that layout)."""
        b = x.shape[0]
        if state is None:
            st = [torch.zeros(s.shape, dtype=x.dtype, device=x.device) for s in self.zero_state(b)]
        else:
            st = [torch.as_tensor(s, dtype=x.dtype, device=x.device) for s in state]
        if self.kind == "lstm":
            n = self.num_layers
            h0 = torch.stack([s for s in st[:n]])
            c0 = torch.stack([s for s in st[n:]])
            out, (h, c) = self.rnn(x, (h0, c0))
            new = list(h.unbind(0)) + list(c.unbind(0))
        elif self.kind == "gru":
            out, h = self.rnn(x, torch.stack(st))
            new = list(h.unbind(0))
        else:
            h, new = x.transpose(1, 2), []
            for i, block in enumerate(self.blocks):
                s1, s2 = st[2 * i].transpose(1, 2), st[2 * i + 1].transpose(1, 2)
                h, n1, n2 = block(h, s1, s2)
                new += [n1.transpose(1, 2), n2.transpose(1, 2)]
            out = h.transpose(1, 2)
        return out, new

    def stepper(self) -> _Stepper:
        """The same network, one step at a time in numpy (float64, eval mode: no dropout)."""
        return _Stepper(self)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


class _Stepper:
    """One-step numpy evaluation of a :class:`CausalEncoder` (see the module docstring)."""

    def __init__(self, enc: CausalEncoder):
        self.kind = enc.kind
        if enc.kind in ("lstm", "gru"):
            self.layers = []
            for k in range(enc.num_layers):
                w_ih, w_hh = _np(getattr(enc.rnn, f"weight_ih_l{k}")), _np(getattr(enc.rnn, f"weight_hh_l{k}"))
                b_ih, b_hh = _np(getattr(enc.rnn, f"bias_ih_l{k}")), _np(getattr(enc.rnn, f"bias_hh_l{k}"))
                if enc.kind == "lstm":
                    self.layers.append((np.ascontiguousarray(np.concatenate([w_ih, w_hh], 1)), b_ih + b_hh))
                else:
                    self.layers.append((w_ih, b_ih, w_hh, b_hh))
            self.hidden = enc.hidden
        else:
            self.blocks = []
            for blk in enc.blocks:  # weights (C_out, C_in, 3) -> (C_out, 3 C_in): taps t-2d, t-d, t
                w1 = np.ascontiguousarray(_np(blk.conv1.weight).transpose(0, 2, 1).reshape(blk.conv1.out_channels, -1))
                w2 = np.ascontiguousarray(_np(blk.conv2.weight).transpose(0, 2, 1).reshape(blk.conv2.out_channels, -1))
                skip = None if blk.skip is None else (_np(blk.skip.weight)[:, :, 0], _np(blk.skip.bias))
                self.blocks.append((blk.d, w1, _np(blk.conv1.bias), w2, _np(blk.conv2.bias), skip))

    def step(self, x: np.ndarray, state: list) -> np.ndarray:
        """Advance ``state`` (one stream: rows of shape (1, ...), updated in place) by input ``x``
        (D,); returns the encoder's output (hidden,)."""
        if self.kind == "lstm":
            n, hsz, h = len(self.layers), self.hidden, x
            for k, (w, b) in enumerate(self.layers):
                g = w @ np.concatenate([h, state[k][0]]) + b
                s = 1.0 / (1.0 + np.exp(-g))
                c = s[hsz : 2 * hsz] * state[n + k][0] + s[:hsz] * np.tanh(g[2 * hsz : 3 * hsz])
                h = s[3 * hsz :] * np.tanh(c)
                state[k][0], state[n + k][0] = h, c
            return h
        if self.kind == "gru":
            hsz, h = self.hidden, x
            for k, (w_ih, b_ih, w_hh, b_hh) in enumerate(self.layers):
                prev = state[k][0]
                gi, gh = w_ih @ h + b_ih, w_hh @ prev + b_hh
                rz = 1.0 / (1.0 + np.exp(-(gi[: 2 * hsz] + gh[: 2 * hsz])))
                nn_ = np.tanh(gi[2 * hsz :] + rz[:hsz] * gh[2 * hsz :])
                h = nn_ + rz[hsz:] * (prev - nn_)
                state[k][0] = h
            return h
        h = x
        for i, (d, w1, b1, w2, b2, skip) in enumerate(self.blocks):
            s1, s2 = state[2 * i][0], state[2 * i + 1][0]  # (2d, C): oldest first
            m = w1 @ np.concatenate([s1[0], s1[d], h]) + b1
            np.maximum(m, 0.0, out=m)
            o = w2 @ np.concatenate([s2[0], s2[d], m]) + b2
            np.maximum(o, 0.0, out=o)
            s1[:-1] = s1[1:]
            s1[-1] = h
            s2[:-1] = s2[1:]
            s2[-1] = m
            o += h if skip is None else skip[0] @ h + skip[1]
            h = np.maximum(o, 0.0, out=o)
        return h


class StreamNet(nn.Module):
    """A causal encoder and a linear head: (B, T, D) -> (B, T, out) outputs, one per step."""

    def __init__(self, kind: str, d_in: int, hidden: int, num_layers: int, dropout: float, window: int, out: int):
        super().__init__()
        self.encoder = CausalEncoder(kind, d_in, hidden, num_layers, dropout, window)
        self.head = nn.Linear(hidden, out)

    def forward(self, x: torch.Tensor, state: list | None = None):
        h, new = self.encoder(x, state)
        return self.head(h), new

    def stepper(self) -> _HeadStepper:
        return _HeadStepper(self)


class _HeadStepper:
    """:class:`StreamNet` one step at a time in numpy."""

    def __init__(self, net: StreamNet):
        self.encoder = net.encoder.stepper()
        self.w, self.b = _np(net.head.weight), _np(net.head.bias)

    def step(self, x: np.ndarray, state: list) -> np.ndarray:
        return self.w @ self.encoder.step(x, state) + self.b
