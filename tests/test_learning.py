"""Learning that needs memory: delayed recall from a random stream, measured.

The stream has three inputs per step: a random value (+1 or -1, fresh every step), a
"store" flag every 25 steps and a "recall" flag ``d`` steps after each store. At a recall
step the target is the value seen ``d`` steps earlier (at the store step); elsewhere it
is 0. Between the two, ``d - 1`` random values pass through the network, so it must hold
one value across ``d`` noisy steps, and learn to do so from gradients that must travel
``d`` steps back: the case gated cells were made for.

Learning is online through the keyed batch kernel (one entity, every event learned), so
this is the same code path the estimators and the daemon use.
"""

from __future__ import annotations

import numpy as np
import pytest

from stream_rnn.cells.network import Network

PERIOD = 25


def recall_accuracy(cell: str, delay: int, hidden: int, lr: float, events: int,
                    seed: int = 0) -> np.ndarray:
    """Recall accuracy (sign of the output at recall steps) per tenth of the stream."""
    rng = np.random.default_rng(seed)
    net = Network(cell, input_size=3, hidden_size=hidden, target_size=1, loss="mse",
                  window=24, update_every=4, optimizer="adam", lr=lr, clip_norm=1.0,
                  seed=seed)
    keyed = net.keyed_arrays(1)
    value = rng.choice([-1.0, 1.0], size=events)
    t = np.arange(events)
    store = t % PERIOD == 0
    recall = np.zeros(events, dtype=bool)
    recall[delay:] = store[:-delay]
    U = np.stack([value, store, recall], axis=1).astype(np.float32)
    Y = np.zeros((events, 1), dtype=np.float32)
    Y[delay:, 0] = np.where(recall[delay:], value[:-delay], 0.0)
    outs, _, _ = net.run_batch(keyed, np.zeros(events, np.int64), np.zeros(events, bool),
                               U, Y, np.ones(events, bool))
    hit = np.sign(outs[:, 0]) == Y[:, 0]
    tenth = events // 10
    return np.array([hit[i : i + tenth][recall[i : i + tenth]].mean()
                     for i in range(0, 10 * tenth, tenth)])


# "Reaches" = some tenth of the stream at >= 95% recall accuracy. Online training with a
# constant learning rate keeps wobbling after it has solved the task (a tenth may dip to
# ~0.93 before recovering), so the claim is about reaching the accuracy, with the mean of
# the last half as a check that it was no fluke.


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_lstm_recalls_across_20_steps(seed):
    # Measured: reaches 0.99-1.00 within 60,000 events (seeds 0-1), 120,000 (seed 2);
    # seed 3 had not within 300,000.
    acc = recall_accuracy("lstm", delay=20, hidden=16, lr=0.002, events=300_000, seed=seed)
    assert acc.max() >= 0.95 and acc[5:].mean() >= 0.9, acc


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_gru_recalls_across_20_steps(seed):
    # Measured: reaches 0.97-1.00 within 150,000 events (seeds 0-3).
    acc = recall_accuracy("gru", delay=20, hidden=32, lr=0.005, events=500_000, seed=seed)
    assert acc.max() >= 0.95 and acc[5:].mean() >= 0.9, acc


@pytest.mark.slow
@pytest.mark.parametrize("lr", [0.002, 0.005])
def test_elman_does_not_recall_across_20_steps(lr):
    # Same task, same budget as the GRU and more units than the LSTM: chance level
    # everywhere in the stream.
    acc = recall_accuracy("elman", delay=20, hidden=32, lr=lr, events=500_000)
    assert acc.max() < 0.65, acc


def test_elman_learns_a_short_delay():
    # The Elman cell does learn the task when the gap is short (d = 5).
    acc = recall_accuracy("elman", delay=5, hidden=32, lr=0.002, events=200_000)
    assert acc.max() >= 0.95 and acc[5:].mean() >= 0.9, acc
