"""``Network``: a thin checker around the kernels that owns weights, optimizer state and
scratch space.

It validates settings once, allocates every array the kernels need, and exposes the
sequence-level operations (step, forward, loss and gradient, optimizer step) that tests
and estimators use. Keyed learning over many entities goes through :meth:`Network.learn`,
:meth:`Network.predict` and :meth:`Network.run_batch`, which take the keyed arrays as
arguments so this module stays free of any entity bookkeeping; the per-event API binds
them once with :meth:`Network.bind_events`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from stream_rnn.cells import kernels as K
from stream_rnn.cells.init import init_weights
from stream_rnn.cells.layout import (
    ACTIVATION_CODES,
    LOSS_CODES,
    OPTIMIZER_CODES,
    Layout,
)

__all__ = ["Network"]

_DTYPES = {"float32": np.float32, "float64": np.float64}


def _bind_compiled(kernel: Callable, bound: tuple, call_args: tuple) -> Callable:
    """``kernel`` with the arguments ``bound`` bound, to be called with arguments of the
    same types as ``call_args``.

    A compiled kernel's dispatcher works out the type of every argument on every call,
    which for the per-event kernels' forty-odd arguments costs as much as the prediction
    itself. The types never change here (the bound arrays are fixed, the call arguments
    are a Python int slot and a Python float target), so the compiled function for them
    is looked up once and called directly: the function the dispatcher would have called.
    Without a compiler (``NUMBA_DISABLE_JIT``) or should Numba's dispatcher change shape,
    the kernel itself is bound.
    """
    try:
        signature = tuple(kernel.typeof_pyval(a) for a in (*bound, *call_args))
        compiled = kernel.overloads.get(signature)
        if compiled is None:
            kernel.compile(signature)
            compiled = kernel.overloads[signature]
        entry = compiled.entry_point
    except (AttributeError, KeyError):
        entry = kernel
    return functools.partial(entry, *bound)


class Network:
    """Stacked recurrent cells with a linear head, trained by truncated BPTT.

    Parameters
    ----------
    cell
        ``'lstm'``, ``'gru'`` or ``'elman'``.
    input_size, hidden_size, num_layers, target_size
        Shapes (see :class:`~stream_rnn.cells.layout.Layout`).
    loss
        ``'mse'``, ``'gaussian'`` (mean and log-variance heads) or ``'bce'`` (logits).
    activation
        Elman's nonlinearity: ``'tanh'``, ``'relu'`` or ``'sigmoid'``.
    window
        ``k2``: steps the backward pass reaches back.
    update_every
        ``k1``: learned events of an entity between two updates, ``1 <= k1 <= k2``.
    optimizer
        ``'sgd'`` (with ``momentum``), ``'rmsprop'`` (decay ``beta2``) or ``'adam'``.
    lr, momentum, beta1, beta2, eps
        Optimizer settings; ``momentum`` is SGD's, ``beta1`` Adam's.
    clip_norm
        Clip the gradient to this global L2 norm; ``None`` disables clipping.
    weight_decay
        L2 penalty on weight matrices (not biases), added to the gradient.
    dropout
        Drop probability on the inputs of stacked layers above the first, while learning.
    init, recurrent_init
        Initialization schemes (see :func:`~stream_rnn.cells.init.init_weights`).
    seed
        Seeds the weights and the dropout stream.
    dtype
        ``'float32'`` or ``'float64'``.

    Examples
    --------
    >>> import numpy as np
    >>> net = Network("gru", input_size=1, hidden_size=8, target_size=1, window=8,
    ...               update_every=8, lr=0.05, seed=1)
    >>> xs = np.sin(np.arange(400) * 0.3).astype(np.float32)
    >>> U, Y = xs[:-1, None], xs[1:, None]
    >>> before, _ = net.loss_and_grad(net.initial_state(), U, Y)
    >>> for start in range(0, 390, 8):
    ...     _, g = net.loss_and_grad(net.initial_state(), U[start:start + 8], Y[start:start + 8])
    ...     _ = net.apply_gradient(g)
    >>> after, _ = net.loss_and_grad(net.initial_state(), U, Y)
    >>> bool(after < before / 4)
    True
    """

    def __init__(
        self,
        cell: str = "lstm",
        input_size: int = 1,
        hidden_size: int = 32,
        num_layers: int = 1,
        target_size: int = 1,
        loss: str = "mse",
        activation: str = "tanh",
        window: int = 16,
        update_every: int = 1,
        optimizer: str = "adam",
        lr: float = 1e-3,
        momentum: float = 0.0,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        clip_norm: float | None = None,
        weight_decay: float = 0.0,
        dropout: float = 0.0,
        init: str = "xavier",
        recurrent_init: str = "orthogonal",
        seed: int = 0,
        dtype: str = "float32",
    ) -> None:
        self.layout = Layout(cell, input_size, hidden_size, num_layers, target_size, loss)
        if activation not in ACTIVATION_CODES:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATION_CODES)}, got {activation!r}"
            )
        if optimizer not in OPTIMIZER_CODES:
            raise ValueError(
                f"optimizer must be one of {sorted(OPTIMIZER_CODES)}, got {optimizer!r}"
            )
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        if not (isinstance(window, int | np.integer) and window >= 1):
            raise ValueError(f"window must be a positive integer, got {window!r}")
        if not (isinstance(update_every, int | np.integer) and 1 <= update_every <= window):
            raise ValueError(
                f"update_every must be an integer in [1, window={window}], got {update_every!r}"
            )
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        if clip_norm is not None and not clip_norm > 0:
            raise ValueError(f"clip_norm must be > 0 or None, got {clip_norm!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
        for name, value in (("momentum", momentum), ("beta1", beta1), ("beta2", beta2)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")

        lay = self.layout
        self.dtype = np.dtype(_DTYPES[dtype])
        self.window = int(window)
        self.update_every = int(update_every)
        self.activation = activation
        self.optimizer = optimizer
        self.max_in = max(lay.input_size, lay.hidden_size)

        cfg = np.zeros(K.N_CFG, dtype=np.int64)
        cfg[K.C_CELL] = lay.cell_code
        cfg[K.C_ACT] = ACTIVATION_CODES[activation]
        cfg[K.C_LOSS] = LOSS_CODES[loss]
        cfg[K.C_OPT] = OPTIMIZER_CODES[optimizer]
        cfg[K.C_LAYERS] = lay.num_layers
        cfg[K.C_IN] = lay.input_size
        cfg[K.C_HID] = lay.hidden_size
        cfg[K.C_OUT] = lay.output_size
        cfg[K.C_TGT] = lay.target_size
        cfg[K.C_K1] = self.update_every
        cfg[K.C_K2] = self.window
        cfg[K.C_SW] = lay.state_width
        cfg[K.C_MAXIN] = self.max_in
        self.cfg = cfg

        hyper = np.zeros(K.N_HYPER, dtype=self.dtype)
        hyper[K.H_LR] = lr
        # Momentum (SGD) and beta1 (Adam) share the first-moment slot; RMSProp's decay is beta2.
        hyper[K.H_B1] = momentum if optimizer == "sgd" else beta1
        hyper[K.H_B2] = beta2
        hyper[K.H_EPS] = eps
        hyper[K.H_CLIP] = 0.0 if clip_norm is None else clip_norm
        hyper[K.H_WD] = weight_decay
        hyper[K.H_DROPOUT] = dropout
        hyper[K.H_FMAX] = np.finfo(self.dtype).max
        self.hyper = hyper

        self.offs = lay.offsets_array()
        self.theta = init_weights(lay, seed, init, recurrent_init, self.dtype)
        P = lay.n_params
        self.opt = np.zeros((3, P), dtype=self.dtype)
        self.opt[2] = lay.decay_mask(self.dtype)
        self.grad = np.zeros(P, dtype=self.dtype)
        self.counters = np.zeros(K.N_COUNTERS, dtype=np.int64)
        # xorshift needs a non-zero state.
        self.rng = np.array([(int(seed) * 0x9E3779B97F4A7C15 | 1) % 2**64], dtype=np.uint64)
        self.stats = np.zeros(2, dtype=np.float64)
        self._workspace = self._make_workspace(self.window)
        self._step_kept = self._make_step_kept()

    # ------------------------------------------------------------- bookkeeping

    def __getstate__(self) -> dict:
        # Workspace and gradient buffer are scratch: rebuilt on load, never persisted.
        state = self.__dict__.copy()
        state.pop("_workspace", None)
        state.pop("_step_kept", None)
        state.pop("grad", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.grad = np.zeros_like(self.theta)
        self._workspace = self._make_workspace(self.window)
        self._step_kept = self._make_step_kept()

    def _make_step_kept(self) -> tuple[np.ndarray, ...]:
        """Where a per-event prediction keeps its step for the learning call that follows
        (see :meth:`bind_events`)."""
        lay = self.layout
        dt = self.dtype
        return (
            np.zeros(lay.input_size, dt),  # the input
            np.zeros((lay.num_layers, lay.state_width), dt),  # the state it started from
            np.zeros((lay.num_layers, lay.state_width), dt),  # the state it reached
            np.zeros(lay.output_size, dt),  # the head output
            np.zeros(2, np.int64),  # usable flag, optimizer step count
        )

    def _make_workspace(self, steps: int) -> tuple[np.ndarray, ...]:
        lay = self.layout
        L, H, SW = lay.num_layers, lay.hidden_size, lay.state_width
        GH = lay.gates * H
        dt = self.dtype
        width = max(GH, self.max_in, lay.output_size, 2)
        return (
            np.zeros((steps, L, self.max_in), dt),  # ws_x: layer inputs
            np.zeros((steps, L, GH), dt),  # ws_g: gate activations
            np.zeros((steps, L, GH), dt),  # ws_aux: tanh(c) (LSTM) or U h (GRU)
            np.zeros((steps + 1, L, SW), dt),  # ws_s: states, [0] = start
            np.zeros((steps, lay.output_size), dt),  # ws_o: head outputs
            np.ones((steps, L, H), dt),  # ws_m: dropout masks
            np.zeros((2, L, SW), dt),  # ws_d: state gradients carried back in time
            np.zeros((4, width), dt),  # ws_tmp
        )

    @property
    def n_updates(self) -> int:
        """Optimizer steps applied."""
        return int(self.counters[K.K_UPDATES])

    @property
    def n_skipped(self) -> int:
        """Updates skipped because the gradient or the result was not finite."""
        return int(self.counters[K.K_SKIPPED])

    @property
    def learned_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The weights and the optimizer's state: what a rollback must find finite (a
        non-finite moment would break the next update even with finite weights)."""
        return self.theta, self.opt

    def initial_state(self) -> np.ndarray:
        """Zero state of one entity, ``(num_layers, state_width)``."""
        return np.zeros((self.layout.num_layers, self.layout.state_width), dtype=self.dtype)

    def _as(self, a: np.ndarray, ndim: int, width: int, name: str) -> np.ndarray:
        a = np.ascontiguousarray(a, dtype=self.dtype)
        if a.ndim != ndim or a.shape[-1] != width:
            raise ValueError(f"{name} must have {ndim} dims and last dim {width}, got {a.shape}")
        return a

    # ------------------------------------------------------------- sequences

    def step(self, state: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One inference step: returns ``(new_state, head_output)``."""
        state = self._as(state, 2, self.layout.state_width, "state")
        u = self._as(u, 1, self.layout.input_size, "u")
        new_state = np.empty_like(state)
        out = np.empty(self.layout.output_size, dtype=self.dtype)
        ws = self._workspace
        K.network_step(self.cfg, self.offs, self.theta, state, u, new_state, out,
                       ws[1][0, 0], ws[2][0, 0], ws[7][2])
        return new_state, out

    def forward(self, state0: np.ndarray, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inference over a sequence: ``(outputs (T, O), states after each step (T, L, SW))``."""
        state0 = self._as(state0, 2, self.layout.state_width, "state0")
        U = self._as(U, 2, self.layout.input_size, "U")
        T = U.shape[0]
        ws = self._workspace if T <= self.window else self._make_workspace(T)
        K.forward_window(self.cfg, self.hyper, self.offs, self.theta, state0, U, T, False,
                         self.rng, *ws[:6])
        return ws[4][:T].copy(), ws[3][1 : T + 1].copy()

    def loss_and_grad(
        self, state0: np.ndarray, U: np.ndarray, Y: np.ndarray, first_loss: int = 0
    ) -> tuple[float, np.ndarray]:
        """Mean loss over steps ``first_loss..T-1`` and its gradient by full BPTT over ``U``.

        Learning mode: dropout (if any) is applied.
        """
        state0 = self._as(state0, 2, self.layout.state_width, "state0")
        U = self._as(U, 2, self.layout.input_size, "U")
        Y = self._as(Y, 2, self.layout.target_size, "Y")
        T = U.shape[0]
        if Y.shape[0] != T:
            raise ValueError(f"U and Y lengths differ: {T} vs {Y.shape[0]}")
        if not 0 <= first_loss < T:
            raise ValueError(f"first_loss must be in [0, {T}), got {first_loss}")
        ws = self._workspace if T <= self.window else self._make_workspace(T)
        K.forward_window(self.cfg, self.hyper, self.offs, self.theta, state0, U, T, True,
                         self.rng, *ws[:6])
        grad = np.zeros_like(self.theta)
        loss = K.backward_window(self.cfg, self.offs, self.theta, Y, T, first_loss, grad,
                                 *ws)
        return float(loss), grad

    def apply_gradient(self, grad: np.ndarray) -> bool:
        """One optimizer step with ``grad``; ``False`` (and nothing changed) if it was skipped."""
        grad = np.array(grad, dtype=self.dtype, copy=True)
        if grad.shape != self.theta.shape:
            raise ValueError(f"grad must have shape {self.theta.shape}, got {grad.shape}")
        skipped = self.n_skipped
        K.apply_update(self.cfg, self.hyper, self.theta, grad, self.opt, self.counters)
        return self.n_skipped == skipped

    # ------------------------------------------------------------- keyed learning

    def keyed_arrays(self, n_slots: int) -> dict[str, np.ndarray]:
        """Fresh per-entity arrays for ``n_slots`` entities, as the keyed kernels take them."""
        lay = self.layout
        dt = self.dtype
        return {
            "state": np.zeros((n_slots, lay.num_layers, lay.state_width), dt),
            "snapshot": np.zeros((n_slots, lay.num_layers, lay.state_width), dt),
            "window_inputs": np.zeros((n_slots, self.window, lay.input_size), dt),
            "window_targets": np.zeros((n_slots, self.window, lay.target_size), dt),
            "window_len": np.zeros(n_slots, np.int64),
            "pending": np.zeros(n_slots, np.int64),
        }

    def bind(self, keyed: dict[str, np.ndarray]) -> tuple[tuple, tuple, tuple]:
        """Argument tuples of the per-event kernels for these keyed arrays.

        The per-event API pays for every Python-level argument it assembles; estimators
        build these once (again only when their store reallocates) and call
        :meth:`predict_bound` / :meth:`learn_bound`.
        """
        ws = self._workspace
        predict_args = (self.cfg, self.offs, self.theta, keyed["state"])
        predict_tail = (ws[1], ws[2], ws[7], ws[6])
        learn_args = (
            self.cfg, self.hyper, self.offs, self.theta, self.grad, self.opt, self.counters,
            self.rng, *ws,
            keyed["state"], keyed["snapshot"], keyed["window_inputs"], keyed["window_targets"],
            keyed["window_len"], keyed["pending"],
        )
        return predict_args, predict_tail, learn_args

    def predict_bound(self, bound: tuple[tuple, tuple, tuple], slot: int, u: np.ndarray,
                      out: np.ndarray) -> None:
        """:meth:`predict` with arguments from :meth:`bind`."""
        K.predict_slot(*bound[0], slot, u, out, *bound[1])

    def learn_bound(self, bound: tuple[tuple, tuple, tuple], slot: int, u: np.ndarray,
                    y: np.ndarray, out: np.ndarray) -> bool:
        """:meth:`learn` with arguments from :meth:`bind`."""
        return bool(K.learn_slot(*bound[2], slot, u, y, out, self.stats))

    def bind_events(self, keyed: dict[str, np.ndarray], u: np.ndarray, y: np.ndarray,
                    out: np.ndarray, scaled_target: tuple | None = None
                    ) -> tuple[Callable[[int], None], Callable[..., int]]:
        """``(predict, learn)``: the per-event calls with everything but the slot bound.

        ``predict(slot)`` is :meth:`predict` and ``learn(slot)`` :meth:`learn` (it returns
        1 when an update ran) on the input in ``u``, target in ``y`` and output in
        ``out``; estimators fill those buffers, and bind again when the keyed arrays
        reallocate. A ``learn`` that follows a ``predict`` of the same input from the same
        state, with no update in between, reuses that prediction's step (the same numbers,
        one network step fewer): the usual predict-then-learn loop costs one step per
        event, not two. (Weights are taken to change only through updates, which the
        optimizer counts; code that writes ``theta`` directly should bind again.)

        With ``scaled_target = (scale, clip, memory, mean, var, count, raw, scaled, loc,
        scale_out)`` (the arguments of :func:`~stream_rnn.cells.scaling.scale_targets` on
        ``(1, 1)`` buffers, ``y`` being ``scaled[0]``) learning takes a one-dimensional
        raw target, ``learn(target, slot)``, and standardizes it in the same compiled call
        when ``scale`` is true (otherwise it is used as it is); ``predict(slot)`` then also
        returns the prediction in the target's units (``out`` keeps the network's).
        """
        ws = self._workspace
        kept = self._step_kept
        kept[4][0] = 0
        # The buffers themselves are bound, so they must already be what the kernels take.
        for name, buf, width in (("u", u, self.layout.input_size),
                                 ("y", y, self.layout.target_size),
                                 ("out", out, self.layout.output_size)):
            if not (isinstance(buf, np.ndarray) and buf.dtype == self.dtype
                    and buf.shape == (width,) and buf.flags.c_contiguous
                    and buf.flags.writeable):
                raise ValueError(f"{name} must be a writable contiguous {self.dtype} array "
                                 f"of shape ({width},)")
        predict_args = (self.cfg, self.offs, self.theta, self.counters, keyed["state"],
                        ws[1], ws[2], ws[7], *kept, u, out)
        if scaled_target is None:
            predict = _bind_compiled(K.predict_event, predict_args, (0,))
        else:
            scale, _, _, mean, var, count = scaled_target[:6]
            predict = _bind_compiled(K.predict_event_scaled,
                                     (*predict_args, scale, mean, var, count), (0,))
        learn = _bind_compiled(
            K.learn_event if scaled_target is None else K.learn_event_scaled,
            (self.cfg, self.hyper, self.offs, self.theta, self.grad, self.opt,
             self.counters, self.rng, *ws,
             keyed["state"], keyed["snapshot"], keyed["window_inputs"], keyed["window_targets"],
             keyed["window_len"], keyed["pending"], *kept, u, y, out, self.stats,
             *(scaled_target or ())),
            (0,) if scaled_target is None else (0.0, 0))
        return predict, learn

    def predict(self, keyed: dict[str, np.ndarray], slot: int, u: np.ndarray,
                out: np.ndarray) -> None:
        """Head output for ``u`` from ``slot``'s state (``slot=-1``: a new entity); no state
        moves."""
        self.predict_bound(self.bind(keyed), slot, u, out)

    def learn(self, keyed: dict[str, np.ndarray], slot: int, u: np.ndarray, y: np.ndarray,
              out: np.ndarray) -> bool:
        """Step ``slot`` with ``u`` (its output before learning goes to ``out``) and learn
        from target ``y`` when the entity's update is due. Returns whether an update ran;
        its loss and gradient norm are then in ``self.stats``."""
        return self.learn_bound(self.bind(keyed), slot, u, y, out)

    def reset(self, keyed: dict[str, np.ndarray], slot: int) -> None:
        """Forget one entity's state and window."""
        K.reset_slot(slot, keyed["state"], keyed["snapshot"], keyed["window_len"],
                     keyed["pending"])

    def run_batch(self, keyed: dict[str, np.ndarray], slots: np.ndarray, resets: np.ndarray,
                  U: np.ndarray, Y: np.ndarray, learn: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A batch of events in arrival order in one compiled call.

        Returns ``(outputs, losses, grad_norms)``; ``outputs[i]`` is the prediction made
        before event ``i`` was learned, ``losses``/``grad_norms`` are NaN where no update ran.
        ``stats`` ends as the per-event calls would leave it: the last update's loss and norm.
        """
        n = slots.shape[0]
        outs = np.empty((n, self.layout.output_size), dtype=self.dtype)
        losses = np.empty(n, dtype=np.float64)
        norms = np.empty(n, dtype=np.float64)
        K.run_batch(
            self.cfg, self.hyper, self.offs, self.theta, self.grad, self.opt, self.counters,
            self.rng, *self._workspace,
            keyed["state"], keyed["snapshot"], keyed["window_inputs"], keyed["window_targets"],
            keyed["window_len"], keyed["pending"],
            np.ascontiguousarray(slots, dtype=np.int64),
            np.ascontiguousarray(resets, dtype=np.bool_),
            self._as(U, 2, self.layout.input_size, "U"),
            self._as(Y, 2, self.layout.target_size, "Y"),
            np.ascontiguousarray(learn, dtype=np.bool_), outs, losses, norms, self.stats)
        return outs, losses, norms
