"""stream_rnn: streaming online learning with Numba-compiled recurrent cells.

Events keyed by their entity (a sensor, a card) move that entity's hidden state forward,
get a live prediction and score, then teach the shared weights with truncated
backpropagation through time.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
