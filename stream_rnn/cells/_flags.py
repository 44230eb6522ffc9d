"""Numba compilation flags, set in one place and checked by ``tests/test_layering.py``.

``fastmath`` leaves out ``nnan`` and ``ninf``: with them LLVM may assume no NaN or
infinity ever appears and delete the finiteness guards that protect the weights.
``cache=True`` is only for serial kernels; a cached ``parallel=True`` function can crash
when the thread count changes between runs.
"""

from __future__ import annotations

import functools

import numba

__all__ = ["FASTMATH", "CACHE", "jit"]

FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})
CACHE = True

jit = functools.partial(numba.njit, fastmath=set(FASTMATH), cache=CACHE, nogil=True)
