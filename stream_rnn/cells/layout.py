"""Where every weight lives in the flat parameter vector, and the integer codes kernels read.

All weights of a network are one contiguous 1-D array ``theta``. Optimizers, gradient
clipping, finiteness checks and checkpoints then work on a single vector, and kernels
read their blocks through offsets computed once here.

For layer ``l`` (``in_l = input_size`` for ``l == 0``, else ``hidden_size``), with ``G``
gate blocks per cell (Elman 1, LSTM 4, GRU 3), ``theta`` holds, in this order:

``W_l`` (``G*H, in_l``) stored input-major, i.e. its transpose (``in_l, G*H``) row-major;
then ``U_l`` (``G*H, H``), also stored as its transpose (``H, G*H``) row-major; then
``b_l`` (``G*H``). Input-major storage makes the forward pass add whole contiguous
columns, which vectorizes far better than one dot product per gate row.

After the last layer comes the linear head: ``V`` (``O, H``) row-major (output-major),
then ``c`` (``O``).

Gate order within the ``G*H`` rows:

- LSTM: input ``i``, forget ``f``, candidate ``g``, output ``o`` (PyTorch's order).
  ``c' = f*c + i*g``, ``h' = o*tanh(c')``.
- GRU: reset ``r``, update ``z``, candidate ``n``.
  ``n = tanh(W_n x + b_n + r * (U_n h))``, ``h' = (1 - z)*n + z*h``.
- Elman: ``h' = act(W x + U h + b)`` with ``act`` tanh, relu or sigmoid.

The head reads the top layer's ``h``: ``out = V h + c``. With the Gaussian loss the
first ``D`` outputs are means and the next ``D`` are log-variances (``O = 2*D``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "CELL_CODES",
    "ACTIVATION_CODES",
    "LOSS_CODES",
    "OPTIMIZER_CODES",
    "GATES",
    "Layout",
]

CELL_ELMAN, CELL_LSTM, CELL_GRU = 0, 1, 2
CELL_CODES = {"elman": CELL_ELMAN, "lstm": CELL_LSTM, "gru": CELL_GRU}
GATES = {CELL_ELMAN: 1, CELL_LSTM: 4, CELL_GRU: 3}

ACT_TANH, ACT_RELU, ACT_SIGMOID = 0, 1, 2
ACTIVATION_CODES = {"tanh": ACT_TANH, "relu": ACT_RELU, "sigmoid": ACT_SIGMOID}

LOSS_MSE, LOSS_GAUSSIAN, LOSS_BCE = 0, 1, 2
LOSS_CODES = {"mse": LOSS_MSE, "gaussian": LOSS_GAUSSIAN, "bce": LOSS_BCE}

OPT_SGD, OPT_RMSPROP, OPT_ADAM = 0, 1, 2
OPTIMIZER_CODES = {"sgd": OPT_SGD, "rmsprop": OPT_RMSPROP, "adam": OPT_ADAM}


@dataclass(frozen=True)
class Layout:
    """Shapes and offsets of one network's parameters inside ``theta``.

    Parameters
    ----------
    cell
        ``'elman'``, ``'lstm'`` or ``'gru'``.
    input_size
        Features per step.
    hidden_size
        Units per layer.
    num_layers
        Stacked recurrent layers, at least 1.
    target_size
        Targets per step (``D``).
    loss
        ``'mse'``, ``'gaussian'`` or ``'bce'``; the Gaussian loss doubles the head.

    Examples
    --------
    >>> lay = Layout("lstm", input_size=4, hidden_size=32, num_layers=1, target_size=1)
    >>> lay.n_params
    4769
    >>> lay.layer_offsets[0]
    (0, 512, 4608, 4736)
    """

    cell: str
    input_size: int
    hidden_size: int
    num_layers: int = 1
    target_size: int = 1
    loss: str = "mse"

    def __post_init__(self) -> None:
        if self.cell not in CELL_CODES:
            raise ValueError(f"cell must be one of {sorted(CELL_CODES)}, got {self.cell!r}")
        if self.loss not in LOSS_CODES:
            raise ValueError(f"loss must be one of {sorted(LOSS_CODES)}, got {self.loss!r}")
        for name in ("input_size", "hidden_size", "num_layers", "target_size"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    @property
    def cell_code(self) -> int:
        return CELL_CODES[self.cell]

    @property
    def gates(self) -> int:
        return GATES[self.cell_code]

    @property
    def output_size(self) -> int:
        """Head width ``O``: ``2*D`` for the Gaussian loss, else ``D``."""
        return 2 * self.target_size if self.loss == "gaussian" else self.target_size

    @property
    def state_width(self) -> int:
        """Floats of recurrent state per layer: ``h``, plus ``c`` for the LSTM."""
        return 2 * self.hidden_size if self.cell == "lstm" else self.hidden_size

    @property
    def layer_offsets(self) -> tuple[tuple[int, int, int, int], ...]:
        """Per layer ``(W, U, b, end)`` offsets into ``theta``."""
        out = []
        pos = 0
        gh = self.gates * self.hidden_size
        for layer in range(self.num_layers):
            in_l = self.input_size if layer == 0 else self.hidden_size
            w = pos
            u = w + gh * in_l
            b = u + gh * self.hidden_size
            pos = b + gh
            out.append((w, u, b, pos))
        return tuple(out)

    @property
    def head_offsets(self) -> tuple[int, int, int]:
        """``(V, c, end)`` offsets of the output head."""
        v = self.layer_offsets[-1][3]
        c = v + self.output_size * self.hidden_size
        return v, c, c + self.output_size

    @property
    def n_params(self) -> int:
        return self.head_offsets[2]

    def offsets_array(self) -> np.ndarray:
        """Offsets as the ``int64`` array kernels take: rows ``(W, U, b, in_l)`` per layer,
        then one row ``(V, c, O, 0)`` for the head."""
        rows = [
            (w, u, b, self.input_size if layer == 0 else self.hidden_size)
            for layer, (w, u, b, _) in enumerate(self.layer_offsets)
        ]
        v, c, _ = self.head_offsets
        rows.append((v, c, self.output_size, 0))
        return np.asarray(rows, dtype=np.int64)

    def decay_mask(self, dtype: np.dtype | type = np.float64) -> np.ndarray:
        """1 on weight matrices, 0 on biases: L2 decay shrinks weights, never biases."""
        mask = np.ones(self.n_params, dtype=dtype)
        for _, _, b, end in self.layer_offsets:
            mask[b:end] = 0.0
        _, c, end = self.head_offsets
        mask[c:end] = 0.0
        return mask
