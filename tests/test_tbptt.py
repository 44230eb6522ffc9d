"""Truncated BPTT over keyed windows, against a NumPy driver of the documented rule.

The rule (kernels.py): every ``k1`` learned events of a key, the mean loss of those ``k1``
events is backpropagated through the key's window (at most ``k2`` steps) from the key's
snapshot state; afterwards the snapshot moves forward over the entries that would leave
the window before the next update, using the states that window's forward pass computed.
"""

from __future__ import annotations

import naive
import numpy as np
import pytest

from stream_rnn.cells.network import Network

CASES = [
    ("lstm", 1, "mse"),
    ("gru", 2, "gaussian"),
    ("elman", 1, "bce"),
]


def _stream(rng, n, lay):
    U = rng.normal(size=(n, lay.input_size))
    Y = rng.normal(size=(n, lay.target_size))
    if lay.loss == "bce":
        Y = (Y > 0).astype(float)
    return U, Y


def _sgd_net(cell, layers, loss, window, update_every, seed=0):
    # Plain SGD with lr 1 and no momentum: each update subtracts exactly the gradient.
    return Network(cell, input_size=3, hidden_size=4, num_layers=layers, target_size=2,
                   loss=loss, window=window, update_every=update_every, optimizer="sgd",
                   lr=0.05, momentum=0.0, dtype="float64", seed=seed)


@pytest.mark.parametrize("cell,layers,loss", CASES)
@pytest.mark.parametrize("extra_window", [0, 5])
def test_tbptt_whose_window_covers_the_sequence_is_full_bptt(cell, layers, loss, extra_window):
    T = 9
    net = _sgd_net(cell, layers, loss, window=T + extra_window, update_every=T)
    lay = net.layout
    U, Y = _stream(np.random.default_rng(1), T, lay)
    theta0 = net.theta.copy()
    keyed = net.keyed_arrays(1)
    out = np.zeros(lay.output_size)
    updated = [net.learn(keyed, 0, U[t], Y[t], out) for t in range(T)]
    assert updated == [False] * (T - 1) + [True]
    kernel_grad = (theta0 - net.theta) / 0.05
    _, full_grad = naive.loss_and_grad(lay, theta0, np.zeros((layers, lay.state_width)), U, Y)
    np.testing.assert_allclose(kernel_grad, full_grad, rtol=1e-8, atol=1e-11)


def _reference_tbptt(lay, theta, streams, k1, k2, lr):
    """NumPy driver: per key a snapshot, a window and a pending count; SGD updates.

    ``streams`` is a list of ``(key, u, y)`` in arrival order. Returns the outputs each
    event got (from the key's live state, before learning) and the final weights.
    """
    theta = theta.copy()
    zeros = np.zeros((lay.num_layers, lay.state_width))
    live, snap, win_u, win_y, pending = {}, {}, {}, {}, {}
    outputs = []
    for key, u, y in streams:
        state = live.get(key, zeros)
        outs, states = naive.forward(lay, theta, state, u[None, :])
        outputs.append(outs[0])
        live[key] = states[0]
        win_u.setdefault(key, []).append(u)
        win_y.setdefault(key, []).append(y)
        pending[key] = pending.get(key, 0) + 1
        if pending[key] < k1:
            continue
        pending[key] = 0
        Uw, Yw = np.array(win_u[key]), np.array(win_y[key])
        n = len(Uw)
        start = snap.get(key, zeros)
        _, grad = naive.loss_and_grad(lay, theta, start, Uw, Yw, first_loss=n - k1)
        drop = n + k1 - k2
        if drop > 0:
            _, states = naive.forward(lay, theta, start, Uw[:drop])
            snap[key] = states[-1]
            win_u[key], win_y[key] = win_u[key][drop:], win_y[key][drop:]
        theta -= lr * grad
    return np.array(outputs), theta


@pytest.mark.parametrize("cell,layers,loss", CASES)
@pytest.mark.parametrize("k1,k2", [(1, 1), (1, 5), (3, 7), (4, 4)])
def test_keyed_tbptt_follows_the_reference_driver(cell, layers, loss, k1, k2):
    net = _sgd_net(cell, layers, loss, window=k2, update_every=k1, seed=3)
    lay = net.layout
    rng = np.random.default_rng(7)
    n = 60
    U, Y = _stream(rng, n, lay)
    keys = rng.integers(0, 3, n)
    expected_out, expected_theta = _reference_tbptt(
        lay, net.theta, list(zip(keys, U, Y, strict=True)), k1, k2, lr=0.05)
    keyed = net.keyed_arrays(3)
    outs, losses, _ = net.run_batch(keyed, keys, np.zeros(n, bool), U, Y, np.ones(n, bool))
    np.testing.assert_allclose(outs, expected_out, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(net.theta, expected_theta, rtol=1e-9, atol=1e-12)
    # One update per k1 events of each key, reported on the event that triggered it.
    per_key = np.bincount(keys, minlength=3)
    assert np.isfinite(losses).sum() == sum(c // k1 for c in per_key)
    assert net.n_updates == sum(c // k1 for c in per_key)


def test_per_event_learn_and_batch_agree_bit_for_bit():
    rng = np.random.default_rng(2)
    n = 80
    a = Network("lstm", 3, 5, 2, 1, window=6, update_every=2, dropout=0.3, seed=9)
    b = Network("lstm", 3, 5, 2, 1, window=6, update_every=2, dropout=0.3, seed=9)
    U = rng.normal(size=(n, 3)).astype(np.float32)
    Y = rng.normal(size=(n, 1)).astype(np.float32)
    keys = rng.integers(0, 4, n)
    ka, kb = a.keyed_arrays(4), b.keyed_arrays(4)
    out = np.zeros(1, np.float32)
    per_event = []
    for i in range(n):
        a.learn(ka, int(keys[i]), U[i], Y[i], out)
        per_event.append(out.copy())
    outs, _, _ = b.run_batch(kb, keys, np.zeros(n, bool), U, Y, np.ones(n, bool))
    np.testing.assert_array_equal(outs, np.array(per_event))
    np.testing.assert_array_equal(a.theta, b.theta)
    for name in ka:
        np.testing.assert_array_equal(ka[name], kb[name], err_msg=name)


def test_batch_reset_clears_a_slot_at_that_event():
    rng = np.random.default_rng(0)
    U, Y = rng.normal(size=(6, 2)), rng.normal(size=(6, 1))
    resets = np.array([True, False, False, True, False, False])
    net = Network("gru", 2, 3, 1, 1, window=4, update_every=2, dtype="float64")
    keyed = net.keyed_arrays(1)
    outs, _, _ = net.run_batch(keyed, np.zeros(6, np.int64), resets, U, Y, np.ones(6, bool))
    # The same history event by event, with the slot forgotten before event 3.
    ref = Network("gru", 2, 3, 1, 1, window=4, update_every=2, dtype="float64")
    ref_keyed = ref.keyed_arrays(1)
    out = np.zeros(1)
    for i in range(6):
        if i == 3:
            ref.reset(ref_keyed, 0)
            np.testing.assert_array_equal(ref_keyed["state"][0], 0.0)
        ref.learn(ref_keyed, 0, U[i], Y[i], out)
        np.testing.assert_allclose(outs[i], out, rtol=1e-12)
    np.testing.assert_array_equal(net.theta, ref.theta)
