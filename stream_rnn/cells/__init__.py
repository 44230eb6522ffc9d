"""Compiled recurrent cells: Elman, LSTM and GRU kernels with truncated BPTT.

Kernels are module-level Numba functions over contiguous arrays (:mod:`.kernels`); the
weights of a network are one flat vector laid out by :class:`.layout.Layout`;
:class:`.network.Network` validates settings, owns the arrays and calls the kernels.
This package imports nothing but NumPy and Numba.
"""

from __future__ import annotations

from stream_rnn.cells.init import init_weights
from stream_rnn.cells.layout import Layout
from stream_rnn.cells.network import Network

__all__ = ["Layout", "Network", "init_weights"]
