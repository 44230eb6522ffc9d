"""``RetrospectiveScorer``: rescore an event once later events of its key have arrived.

A live score only knows the past. For replays and for decisions that can wait (a
maintenance ticket, a chargeback review) the events after ``t`` tell a lot about ``t``: a
spike is surprising from both sides, while the start of a new level is surprising from the
past but expected from the future. This scorer keeps the last ``lag + 1`` readings of each
key, and when event ``t + lag`` arrives it runs a second network backwards over
``x[t+lag] .. x[t+1]`` to forecast ``x[t]``, combines that forecast with the forward one
made live, and emits the combined score for ``t``.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream_rnn.cells.network import Network
from stream_rnn.cells.scaling import location_scale
from stream_rnn.models.anomaly import RNNAnomalyDetector
from stream_rnn.models.base import GLOBAL_KEY

__all__ = ["RetrospectiveScorer", "Rescored"]


@dataclass(frozen=True)
class Rescored:
    """The final word on one event.

    ``live`` is the score it got on arrival (forward only); ``retrospective`` combines the
    forward forecast with the backward one from ``future`` later events of its key.
    """

    event_id: Any
    key: Hashable
    live: float
    retrospective: float
    future: int


class RetrospectiveScorer:
    """Forward-live, backward-delayed anomaly scores per key.

    Parameters
    ----------
    lag
        Later events of the same key to wait for before rescoring an event.
    cell, hidden_size, lr, seed, window, update_every
        Settings shared by the forward detector and the backward network.
    max_keys
        Keys holding buffers and state; the least recently seen is dropped beyond that.
    dtype
        ``'float32'`` or ``'float64'``.

    Examples
    --------
    >>> import math
    >>> from stream_rnn.models.bidirectional import RetrospectiveScorer
    >>> scorer = RetrospectiveScorer(lag=4, hidden_size=8, seed=0)
    >>> final = {}
    >>> for t in range(1500):
    ...     spike = 6.0 if t == 1300 else 0.0   # a one-off spike at t = 1300
    ...     x = {"v": math.sin(t / 8) + spike}
    ...     for r in scorer.update(x, event_id=t):
    ...         final[r.event_id] = r
    >>> final[1300].future
    4
    >>> normal = sorted(final[t].retrospective for t in range(1200, 1290))
    >>> print(f"spike {final[1300].retrospective:.0f}, typical {normal[45]:.2f}")
    spike ..., typical ...
    >>> final[1300].retrospective > 20 * normal[45]
    True
    """

    def __init__(
        self,
        lag: int = 8,
        cell: str = "lstm",
        hidden_size: int = 32,
        lr: float = 0.005,
        seed: int = 0,
        window: int = 16,
        update_every: int = 1,
        max_keys: int = 10_000,
        dtype: str = "float32",
    ) -> None:
        if lag < 1:
            raise ValueError(f"lag must be >= 1, got {lag!r}")
        self.lag = lag
        self.cell = cell
        self.hidden_size = hidden_size
        self.lr = lr
        self.seed = seed
        self.window = window
        self.update_every = update_every
        self.max_keys = max_keys
        self.dtype = dtype
        self.forward = RNNAnomalyDetector(
            cell=cell, hidden_size=hidden_size, window=window, update_every=update_every,
            lr=lr, seed=seed, max_keys=max_keys, dtype=dtype,
        )
        self._backward: Network | None = None
        self._pending: OrderedDict[Hashable, deque] = OrderedDict()

    def update(self, x: dict, key: Hashable | None = None, event_id: Any = None
               ) -> list[Rescored]:
        """Score ``x`` live, learn from it, and return the events it completes.

        Returns the rescored event ``lag`` steps back for this key, when there is one.
        """
        key = GLOBAL_KEY if key is None else key
        fwd = self.forward
        live = fwd.score_one(x, key=key)
        forecast = fwd.forecast_one(key=key)
        fwd.learn_one(x, key=key)
        names = fwd.feature_names
        raw = np.array([float(x.get(name, 0.0)) for name in names])
        mean = np.array([forecast.get(name, (np.nan, np.nan))[0] for name in names])
        std = np.array([forecast.get(name, (np.nan, np.nan))[1] for name in names])
        if self._backward is None:
            self._backward = Network(
                cell=self.cell, input_size=len(names), hidden_size=self.hidden_size,
                target_size=len(names), loss="gaussian", window=self.lag,
                update_every=self.lag, lr=self.lr, clip_norm=1.0, seed=self.seed + 1,
                dtype=self.dtype,
            )
        buffer = self._pending.get(key)
        if buffer is None:
            buffer = self._pending[key] = deque()
            if len(self._pending) > self.max_keys:
                self._pending.popitem(last=False)
        else:
            self._pending.move_to_end(key)
        buffer.append((event_id, raw, mean, std, live))
        if len(buffer) <= self.lag:
            return []
        done = self._rescore(key, buffer, learn=True)
        buffer.popleft()
        return [done]

    def flush(self) -> list[Rescored]:
        """Rescore every buffered event with the future it has (end of a replay)."""
        out = []
        for key, buffer in self._pending.items():
            while len(buffer) > 1:
                out.append(self._rescore(key, buffer, learn=False))
                buffer.popleft()
            if buffer:
                event_id, _, _, _, live = buffer.popleft()
                out.append(Rescored(event_id, key, live, live, 0))
        return out

    def _scaled(self, key: Hashable, rows: np.ndarray) -> tuple[np.ndarray, dict, int]:
        store = self.forward._store
        slot = store.get(key)
        arrays = store.arrays
        scaled = np.empty_like(rows)
        for k in range(rows.shape[1]):
            loc, sc = location_scale(arrays["scale_mean"], arrays["scale_var"],
                                     arrays["scale_count"], slot, k)
            scaled[:, k] = np.clip((rows[:, k] - loc) / sc, -10.0, 10.0)
        return scaled, arrays, slot

    def _rescore(self, key: Hashable, buffer: deque, learn: bool) -> Rescored:
        event_id, raw, f_mean, f_std, live = buffer[0]
        future = np.array([entry[1] for entry in list(buffer)[1:]])[::-1]
        rows = np.vstack([future, raw[None, :]])
        scaled, arrays, slot = self._scaled(key, rows)
        net = self._backward
        U = scaled[:-1]
        D = raw.shape[0]
        outs, _ = net.forward(net.initial_state(), U)
        b_mean_s = outs[-1, :D].astype(np.float64)
        b_std_s = np.exp(0.5 * np.clip(outs[-1, D:].astype(np.float64), -12.0, 12.0))
        if learn:
            Y = np.zeros((U.shape[0], D))
            Y[-1] = scaled[-1]
            _, grad = net.loss_and_grad(net.initial_state(), U, Y, first_loss=U.shape[0] - 1)
            net.apply_gradient(grad)
        # Back to the reading's units, then a product of the two Gaussian experts.
        locs = np.empty(D)
        scales = np.empty(D)
        for k in range(D):
            locs[k], scales[k] = location_scale(arrays["scale_mean"], arrays["scale_var"],
                                                arrays["scale_count"], slot, k)
        b_mean = b_mean_s * scales + locs
        b_std = b_std_s * scales
        if np.all(np.isfinite(f_mean)) and np.all(f_std > 0):
            prec = 1.0 / f_std**2 + 1.0 / b_std**2
            mean = (f_mean / f_std**2 + b_mean / b_std**2) / prec
            std = np.sqrt(1.0 / prec)
        else:
            mean, std = b_mean, b_std
        z = (raw - mean) / std
        score = float(np.mean(z**2))
        return Rescored(event_id, key, live, score if math.isfinite(score) else live,
                        len(buffer) - 1)
