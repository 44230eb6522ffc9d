"""Correctness of the compiled recurrent cells against the plain NumPy oracle in ``naive.py``.

The oracle is first checked against finite differences of itself and against scalar
hand computations, so a kernel/oracle agreement means agreement with the equations in
``layout.py``, not just two implementations sharing a mistake.
"""

from __future__ import annotations

import itertools
import math

import naive
import numpy as np
import pytest

from stream_rnn.cells.layout import Layout

N_IN, H, D, T = 3, 5, 2, 8

CELLS = [
    ("elman", "tanh"),
    ("elman", "relu"),
    ("elman", "sigmoid"),
    ("lstm", "tanh"),
    ("gru", "tanh"),
]
LOSSES = ["mse", "gaussian", "bce"]
CASES = [
    pytest.param(cell, act, layers, loss, id=f"{cell}-{act}-L{layers}-{loss}")
    for (cell, act), layers, loss in itertools.product(CELLS, (1, 2), LOSSES)
]
# Kernel-vs-finite-difference runs every cell and depth once, rotating through the losses.
FD_KERNEL_CASES = [
    pytest.param(cell, act, layers, LOSSES[k % 3], id=f"{cell}-{act}-L{layers}-{LOSSES[k % 3]}")
    for k, ((cell, act), layers) in enumerate(itertools.product(CELLS, (1, 2)))
]

# float32 keeps ~7 digits; 8 steps of BPTT lose one or two of them.
TOL = {"float64": (1e-10, 1e-12), "float32": (1e-4, 1e-5)}


# --------------------------------------------------------------------------- helpers


def make_layout(cell: str, layers: int, loss: str) -> Layout:
    return Layout(cell, input_size=N_IN, hidden_size=H, num_layers=layers, target_size=D, loss=loss)


def make_data(layout: Layout, act: str, steps: int = T, seed: int = 0):
    """Random weights, a non-zero start state, inputs and targets suited to the loss."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(0.0, 0.5, layout.n_params)
    state0 = rng.normal(0.0, 0.5, (layout.num_layers, layout.state_width))
    if act == "relu":
        state0 = np.abs(state0)  # a ReLU layer can only ever hold non-negative h
    U = rng.normal(size=(steps, layout.input_size))
    if layout.loss == "bce":
        Y = rng.integers(0, 2, size=(steps, layout.target_size)).astype(np.float64)
    else:
        Y = rng.normal(size=(steps, layout.target_size))
    return theta, state0, U, Y


def make_net(layout: Layout, act: str = "tanh", dtype: str = "float64", **kw):
    from stream_rnn.cells.network import Network

    args = dict(
        cell=layout.cell,
        input_size=layout.input_size,
        hidden_size=layout.hidden_size,
        num_layers=layout.num_layers,
        target_size=layout.target_size,
        loss=layout.loss,
        activation=act,
        window=T,
        update_every=T,
        optimizer="sgd",
        lr=0.1,
        momentum=0.0,
        clip_norm=None,
        weight_decay=0.0,
        dropout=0.0,
        seed=0,
        dtype=dtype,
    )
    args.update(kw)
    return Network(**args)


def net_with_theta(layout: Layout, act: str, theta: np.ndarray, dtype: str = "float64", **kw):
    """A network holding ``theta`` rounded to its dtype, and that rounded theta in float64
    (what the oracle must be fed so both sides start from identical weights)."""
    net = make_net(layout, act, dtype, **kw)
    net.theta[:] = theta.astype(dtype)
    return net, net.theta.astype(np.float64)


def central_differences(loss_fn, theta: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    fd = np.empty_like(theta)
    for k in range(theta.size):
        plus, minus = theta.copy(), theta.copy()
        plus[k] += eps
        minus[k] -= eps
        fd[k] = (loss_fn(plus) - loss_fn(minus)) / (2.0 * eps)
    return fd


def assert_close(actual, expected, dtype: str, what: str) -> None:
    rtol, atol_rel = TOL[dtype]
    expected = np.asarray(expected, dtype=np.float64)
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    np.testing.assert_allclose(
        np.asarray(actual, dtype=np.float64),
        expected,
        rtol=rtol,
        atol=atol_rel * scale,
        err_msg=what,
    )


def assert_blocks_close(layout: Layout, actual, expected, dtype: str) -> None:
    """Compare gradients block by block so a failure names the block that is wrong."""
    for layer, (w, u, b, end) in enumerate(layout.layer_offsets):
        for name, lo, hi in (("W", w, u), ("U", u, b), ("b", b, end)):
            assert_close(actual[lo:hi], expected[lo:hi], dtype, f"grad {name}_{layer}")
    v, c, end = layout.head_offsets
    assert_close(actual[v:c], expected[v:c], dtype, "grad V")
    assert_close(actual[c:end], expected[c:end], dtype, "grad c")


# --------------------------------------------------------------------------- the oracle itself


def test_layout_blocks_are_contiguous_and_cover_theta():
    lay = make_layout("lstm", 2, "gaussian")
    pos = 0
    for layer, (w, u, b, end) in enumerate(lay.layer_offsets):
        in_l = N_IN if layer == 0 else H
        assert (w, u, b, end) == (
            pos,
            pos + 4 * H * in_l,
            pos + 4 * H * (in_l + H),
            pos + 4 * H * (in_l + H + 1),
        )
        pos = end
    assert lay.head_offsets == (pos, pos + 2 * D * H, pos + 2 * D * H + 2 * D)
    assert lay.n_params == lay.head_offsets[2]


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_oracle_matches_scalar_hand_computation(cell):
    # H = 1 and two inputs: every gate is one row of W, so a swapped gate order or a
    # row-major W would change the numbers computed here with plain floats.
    lay = Layout(cell, input_size=2, hidden_size=1, num_layers=1, target_size=1, loss="mse")
    G = lay.gates
    rng = np.random.default_rng(3)
    theta = rng.normal(0.0, 0.7, lay.n_params)
    W = theta[: 2 * G].reshape(2, G).T  # input-major storage
    Ur = theta[2 * G : 3 * G]
    b = theta[3 * G : 4 * G]
    v, c0 = theta[4 * G], theta[4 * G + 1]
    x = [0.3, -1.1]
    h, cc = 0.4, -0.6

    def lin(row, with_u=True, with_b=True):
        return (
            W[row, 0] * x[0]
            + W[row, 1] * x[1]
            + (Ur[row] * h if with_u else 0.0)
            + (b[row] if with_b else 0.0)
        )

    if cell == "elman":
        h_new = math.tanh(lin(0))
        state = [h_new]
    elif cell == "lstm":
        i, f, g, o = _sig(lin(0)), _sig(lin(1)), math.tanh(lin(2)), _sig(lin(3))
        c_new = f * cc + i * g
        h_new = o * math.tanh(c_new)
        state = [h_new, c_new]
    else:
        r, z = _sig(lin(0)), _sig(lin(1))
        n = math.tanh(lin(2, with_u=False) + r * (Ur[2] * h))
        h_new = (1.0 - z) * n + z * h
        state = [h_new]
    state0 = np.array([[h, cc]]) if cell == "lstm" else np.array([[h]])
    outs, states = naive.forward(lay, theta, state0, np.array([x]))
    np.testing.assert_allclose(states[0, 0], state, rtol=1e-14)
    np.testing.assert_allclose(outs[0, 0], v * h_new + c0, rtol=1e-14)


def test_oracle_losses_match_textbook_formulas():
    rng = np.random.default_rng(4)
    out = rng.normal(0.0, 2.0, (6, 2 * D))
    y = rng.normal(size=(6, D))
    gauss = naive.step_losses(make_layout("elman", 1, "gaussian"), out, y)[0]
    mean, var = out[:, :D], np.exp(out[:, D:])
    neg_log_pdf = 0.5 * np.log(2 * np.pi * var) + (y - mean) ** 2 / (2 * var)
    np.testing.assert_allclose(gauss, neg_log_pdf.sum(axis=1), rtol=1e-13)

    logits, yb = out[:, :D], rng.uniform(size=(6, D))  # soft labels are allowed by the formula
    bce = naive.step_losses(make_layout("elman", 1, "bce"), logits, yb)[0]
    p = 1.0 / (1.0 + np.exp(-logits))
    textbook = -(yb * np.log(p) + (1 - yb) * np.log(1 - p))
    np.testing.assert_allclose(bce, textbook.sum(axis=1), rtol=1e-12)

    mse = naive.step_losses(make_layout("elman", 1, "mse"), logits, y)[0]
    np.testing.assert_allclose(mse, 0.5 * ((logits - y) ** 2).sum(axis=1), rtol=1e-14)


@pytest.mark.parametrize("first_loss", [0, 3])
@pytest.mark.parametrize(("cell", "act", "layers", "loss"), CASES)
def test_oracle_grad_matches_finite_differences(cell, act, layers, loss, first_loss):
    lay = make_layout(cell, layers, loss)
    theta, s0, U, Y = make_data(lay, act)
    loss_value, grad = naive.loss_and_grad(lay, theta, s0, U, Y, first_loss, act)
    assert loss_value == pytest.approx(
        naive.sequence_loss(lay, theta, s0, U, Y, first_loss, act), rel=1e-14
    )
    fd = central_differences(
        lambda th: naive.sequence_loss(lay, th, s0, U, Y, first_loss, act), theta
    )
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7)
    assert np.max(np.abs(grad)) > 1e-3  # a vanishing gradient would make the check vacuous


def test_oracle_first_loss_ignores_warmup_targets():
    lay = make_layout("gru", 1, "mse")
    theta, s0, U, Y = make_data(lay, "tanh")
    Y2 = Y.copy()
    Y2[:3] += 100.0
    a = naive.loss_and_grad(lay, theta, s0, U, Y, 3)
    b = naive.loss_and_grad(lay, theta, s0, U, Y2, 3)
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])


# --------------------------------------------------------------------------- kernels vs oracle


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("cell", "act", "layers", "loss"), CASES)
def test_kernel_forward_matches_oracle(cell, act, layers, loss, dtype):
    lay = make_layout(cell, layers, loss)
    theta, s0, U, _ = make_data(lay, act)
    net, theta64 = net_with_theta(lay, act, theta, dtype)
    s0k, Uk = s0.astype(dtype), U.astype(dtype)
    outs, states = net.forward(s0k.copy(), Uk.copy())
    assert outs.shape == (T, lay.output_size)
    assert states.shape == (T, layers, lay.state_width)
    ref_outs, ref_states = naive.forward(lay, theta64, s0k, Uk, act)
    assert_close(outs, ref_outs, dtype, "forward outs")
    assert_close(states, ref_states, dtype, "forward states")

    # Stepping one input at a time is the streaming path and must agree with forward.
    state = s0k.copy()
    for t in range(T):
        state, out = net.step(state, Uk[t].copy())
        assert state.shape == (layers, lay.state_width)
        assert_close(out, ref_outs[t], dtype, f"step {t} out")
        assert_close(state, ref_states[t], dtype, f"step {t} state")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("cell", "act", "layers", "loss"), CASES)
def test_kernel_grad_matches_oracle(cell, act, layers, loss, dtype):
    lay = make_layout(cell, layers, loss)
    theta, s0, U, Y = make_data(lay, act)
    net, theta64 = net_with_theta(lay, act, theta, dtype)
    s0k, Uk, Yk = s0.astype(dtype), U.astype(dtype), Y.astype(dtype)
    for first_loss in (0, 3):
        args = (s0k.copy(), Uk.copy(), Yk.copy())
        loss_value, grad = net.loss_and_grad(*args, first_loss=first_loss)
        assert grad.shape == (lay.n_params,)
        ref_loss, ref_grad = naive.loss_and_grad(lay, theta64, s0k, Uk, Yk, first_loss, act)
        assert_close(loss_value, ref_loss, dtype, f"loss (first_loss={first_loss})")
        assert_blocks_close(lay, grad, ref_grad, dtype)
        # Inputs are per-entity buffers owned by the caller; the kernel must not write them.
        for given, original in zip(args, (s0k, Uk, Yk), strict=True):
            np.testing.assert_array_equal(given, original)
        np.testing.assert_array_equal(net.theta, theta.astype(dtype))


@pytest.mark.parametrize(("cell", "act", "layers", "loss"), FD_KERNEL_CASES)
def test_kernel_grad_matches_finite_differences(cell, act, layers, loss):
    lay = make_layout(cell, layers, loss)
    theta, s0, U, Y = make_data(lay, act, seed=1)
    net, _ = net_with_theta(lay, act, theta)
    _, grad = net.loss_and_grad(s0, U, Y, first_loss=2)

    def kernel_loss(th):
        net.theta[:] = th
        return float(net.loss_and_grad(s0, U, Y, first_loss=2)[0])

    fd = central_differences(kernel_loss, theta)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_kernel_sequence_longer_than_window(cell):
    lay = make_layout(cell, 2, "mse")
    theta, s0, U, Y = make_data(lay, "tanh", steps=3 * T)
    net, theta64 = net_with_theta(lay, "tanh", theta, window=4, update_every=4)
    loss_value, grad = net.loss_and_grad(s0, U, Y, first_loss=5)
    ref_loss, ref_grad = naive.loss_and_grad(lay, theta64, s0, U, Y, 5)
    assert_close(loss_value, ref_loss, "float64", "loss")
    assert_blocks_close(lay, grad, ref_grad, "float64")


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_initial_state_is_zero(cell):
    lay = make_layout(cell, 2, "mse")
    s0 = make_net(lay).initial_state()
    assert s0.shape == (2, lay.state_width)
    assert s0.dtype == np.float64
    assert not s0.any()


def test_gaussian_log_variance_clip_blocks_gradient():
    lay = make_layout("lstm", 1, "gaussian")
    theta, s0, U, Y = make_data(lay, "tanh")
    v, c, _ = lay.head_offsets
    V = theta[v:c].reshape(2 * D, H)
    V[D:] = 0.0
    theta[c + D : c + 2 * D] = [20.0, -20.0]  # log-variance pinned above and below the clip
    net, theta64 = net_with_theta(lay, "tanh", theta)
    loss_value, grad = net.loss_and_grad(s0, U, Y)
    ref_loss, ref_grad = naive.loss_and_grad(lay, theta64, s0, U, Y)
    assert np.isfinite(loss_value)
    assert_close(loss_value, ref_loss, "float64", "clipped gaussian loss")
    assert_blocks_close(lay, grad, ref_grad, "float64")
    kernel_grad_V = grad[v:c].reshape(2 * D, H)
    assert not kernel_grad_V[D:].any()
    assert not grad[c + D : c + 2 * D].any()


def test_bce_stable_for_extreme_logits():
    lay = make_layout("elman", 1, "bce")
    theta, s0, U, _ = make_data(lay, "tanh")
    v, c, _ = lay.head_offsets
    theta[v:c] = 0.0
    theta[c : c + D] = [60.0, -60.0]  # 1 - sigmoid(60) rounds to 0: the log form gives inf
    Y = np.tile([[1.0, 0.0], [0.0, 1.0]], (T // 2, 1))
    net, theta64 = net_with_theta(lay, "tanh", theta)
    loss_value, grad = net.loss_and_grad(s0, U, Y)
    ref_loss, ref_grad = naive.loss_and_grad(lay, theta64, s0, U, Y)
    assert ref_loss == pytest.approx(60.0, rel=1e-12)  # every other step costs 60 per output
    assert_close(loss_value, ref_loss, "float64", "extreme bce loss")
    assert_blocks_close(lay, grad, ref_grad, "float64")


def test_bce_soft_labels():
    # The logit form is defined for any target in [0, 1], not just hard labels.
    lay = make_layout("gru", 2, "bce")
    theta, s0, U, _ = make_data(lay, "tanh")
    Y = np.random.default_rng(9).uniform(size=(T, D))
    net, theta64 = net_with_theta(lay, "tanh", theta)
    loss_value, grad = net.loss_and_grad(s0, U, Y, first_loss=1)
    ref_loss, ref_grad = naive.loss_and_grad(lay, theta64, s0, U, Y, 1)
    assert_close(loss_value, ref_loss, "float64", "soft-label bce loss")
    assert_blocks_close(lay, grad, ref_grad, "float64")


# --------------------------------------------------------------------------- optimizers

# Passed explicitly and away from the defaults, so a hard-coded constant in a kernel shows up.
# RMSProp's squared-gradient decay is the Network's ``beta2``.
BETA1, BETA2, EPS = 0.8, 0.99, 1e-7


def _reference_updates(optimizer, theta, grads, lr, momentum, clip_norm, decay, mask):
    """Theta after each update, with decay before clipping before the optimizer rule."""
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    out = []
    for t, grad in enumerate(grads, start=1):
        g = naive.clip_by_global_norm(naive.weight_decay(grad, theta, mask, decay), clip_norm)
        if optimizer == "sgd":
            theta, m = naive.sgd(theta, g, m, lr, momentum)
        elif optimizer == "rmsprop":
            theta, v = naive.rmsprop(theta, g, v, lr, BETA2, EPS)
        else:
            theta, m, v = naive.adam(theta, g, m, v, t, lr, BETA1, BETA2, EPS)
        out.append(theta)
    return out


def _random_grads(n_params, count, seed):
    # Norms straddle clip_norm=1 so some updates are clipped and some are not, which also
    # pins the order of decay and clipping.
    rng = np.random.default_rng(seed)
    grads = []
    for k in range(count):
        g = rng.normal(size=n_params)
        grads.append(g / np.linalg.norm(g) * (0.4, 2.5, 0.8, 5.0, 0.9)[k % 5])
    return grads


OPTIMIZER_CASES = [
    pytest.param("sgd", 0.9, id="sgd-momentum"),
    pytest.param("rmsprop", 0.0, id="rmsprop"),
    pytest.param("adam", 0.0, id="adam"),
]


@pytest.mark.parametrize("clip_norm", [None, 1.0])
@pytest.mark.parametrize(("optimizer", "momentum"), OPTIMIZER_CASES)
def test_optimizer_matches_reference(optimizer, momentum, clip_norm):
    lay = make_layout("lstm", 1, "mse")
    net = make_net(
        lay,
        optimizer=optimizer,
        lr=0.05,
        momentum=momentum,
        clip_norm=clip_norm,
        weight_decay=0.3,
        beta1=BETA1,
        beta2=BETA2,
        eps=EPS,
    )
    theta0 = net.theta.copy()
    grads = _random_grads(lay.n_params, 6, seed=5)
    expected = _reference_updates(
        optimizer, theta0, grads, 0.05, momentum, clip_norm, 0.3, lay.decay_mask()
    )
    for k, (grad, ref) in enumerate(zip(grads, expected, strict=True)):
        assert net.apply_gradient(grad.copy()) is True
        np.testing.assert_allclose(
            net.theta, ref, rtol=1e-10, atol=1e-12, err_msg=f"{optimizer} update {k + 1}"
        )
    assert (net.n_updates, net.n_skipped) == (len(grads), 0)


def test_weight_decay_spares_biases():
    lay = make_layout("gru", 2, "gaussian")
    net = make_net(lay, lr=0.1, weight_decay=0.5)
    net.theta[:] = 1.0
    assert net.apply_gradient(np.zeros(lay.n_params)) is True
    mask = lay.decay_mask().astype(bool)
    np.testing.assert_allclose(net.theta[mask], 1.0 - 0.1 * 0.5, rtol=1e-14)
    np.testing.assert_array_equal(net.theta[~mask], 1.0)


# --------------------------------------------------------------------------- non-finite updates


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize(("optimizer", "momentum"), OPTIMIZER_CASES)
def test_non_finite_gradient_is_skipped(optimizer, momentum, bad):
    lay = make_layout("lstm", 1, "mse")
    net = make_net(
        lay,
        optimizer=optimizer,
        lr=0.05,
        momentum=momentum,
        clip_norm=1.0,
        weight_decay=0.1,
        beta1=BETA1,
        beta2=BETA2,
        eps=EPS,
    )
    grads = _random_grads(lay.n_params, 2, seed=6)
    theta0 = net.theta.copy()
    assert net.apply_gradient(grads[0].copy()) is True
    before = net.theta.copy()
    poisoned = grads[1].copy()
    poisoned[7] = bad
    assert net.apply_gradient(poisoned) is False
    assert net.theta.tobytes() == before.tobytes()
    assert (net.n_updates, net.n_skipped) == (1, 1)
    # A skipped update must not leak into optimizer memory (momentum, moments, step count):
    # the next good step lands where it would had the bad one never been offered.
    assert net.apply_gradient(grads[1].copy()) is True
    expected = _reference_updates(
        optimizer, theta0, grads, 0.05, momentum, 1.0, 0.1, lay.decay_mask()
    )[-1]
    np.testing.assert_allclose(net.theta, expected, rtol=1e-10, atol=1e-12)
    assert (net.n_updates, net.n_skipped) == (2, 1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_update_overflowing_theta_is_skipped(dtype):
    lay = make_layout("elman", 1, "mse")
    net = make_net(lay, dtype=dtype, optimizer="sgd", lr=10.0)
    big = np.finfo(dtype).max
    grad = np.zeros(lay.n_params, dtype=dtype)
    grad[3] = -big / 4  # finite, but ten times it is not
    assert np.isfinite(grad).all()
    before = net.theta.copy()
    assert net.apply_gradient(grad) is False
    assert net.theta.tobytes() == before.tobytes()
    assert (net.n_updates, net.n_skipped) == (0, 1)

    # Overflow of theta itself near the top of the range, with a modest-looking step.
    net.theta[5] = big * 0.9
    before = net.theta.copy()
    grad = np.zeros(lay.n_params, dtype=dtype)
    grad[5] = -big * 0.05
    assert net.apply_gradient(grad) is False
    assert net.theta.tobytes() == before.tobytes()
    assert (net.n_updates, net.n_skipped) == (0, 2)


# --------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_dropout_only_affects_training(cell):
    lay = make_layout(cell, 2, "mse")
    theta, s0, U, Y = make_data(lay, "tanh")
    plain, _ = net_with_theta(lay, "tanh", theta)
    drop_a, _ = net_with_theta(lay, "tanh", theta, dropout=0.5, seed=11)
    drop_b, _ = net_with_theta(lay, "tanh", theta, dropout=0.5, seed=11)

    outs, states = plain.forward(s0, U)
    d_outs, d_states = drop_a.forward(s0, U)
    np.testing.assert_allclose(d_outs, outs, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(d_states, states, rtol=1e-13, atol=1e-15)
    state, out = drop_a.step(s0.copy(), U[0].copy())
    np.testing.assert_allclose(out, outs[0], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(state, states[0], rtol=1e-13, atol=1e-15)

    clean_loss, clean_grad = plain.loss_and_grad(s0, U, Y)
    for _ in range(2):  # the same seed must replay the same masks call after call
        loss_a, grad_a = drop_a.loss_and_grad(s0, U, Y)
        loss_b, grad_b = drop_b.loss_and_grad(s0, U, Y)
        assert loss_a == loss_b
        np.testing.assert_array_equal(grad_a, grad_b)
        assert loss_a != pytest.approx(clean_loss, rel=1e-6)
        assert not np.allclose(grad_a, clean_grad, rtol=1e-6)
        assert np.isfinite(grad_a).all()


# --------------------------------------------------------------------------- initialisation


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_init_is_seeded(cell):
    lay = make_layout(cell, 2, "gaussian")
    a, b, c = make_net(lay, seed=1), make_net(lay, seed=1), make_net(lay, seed=2)
    np.testing.assert_array_equal(a.theta, b.theta)
    assert not np.array_equal(a.theta, c.theta)
    assert a.theta.shape == (lay.n_params,)
    assert a.theta.dtype == np.float64
    assert make_net(lay, seed=1, dtype="float32").theta.dtype == np.float32


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_init_recurrent_blocks_orthogonal_and_biases(cell):
    lay = make_layout(cell, 2, "mse")
    net = make_net(lay, seed=3)
    G = lay.gates
    for layer, (w, u, b, end) in enumerate(lay.layer_offsets):
        Umat = net.theta[u:b].reshape(H, G * H).T
        for gate in range(G):
            block = Umat[gate * H : (gate + 1) * H]
            np.testing.assert_allclose(
                block.T @ block,
                np.eye(H),
                atol=1e-10,
                err_msg=f"U_{layer} gate {gate} not orthogonal",
            )
        bias = net.theta[b:end]
        expected = np.zeros(G * H)
        if cell == "lstm":
            expected[H : 2 * H] = 1.0  # forget gate open at start, so memory flows
        np.testing.assert_array_equal(bias, expected, err_msg=f"b_{layer}")
        Wmat = net.theta[w:u]
        assert np.isfinite(Wmat).all() and np.abs(Wmat).max() > 0.0
    v, c, end = lay.head_offsets
    np.testing.assert_array_equal(net.theta[c:end], 0.0)
    assert np.abs(net.theta[v:c]).max() > 0.0
