"""Numba compilation flags, set in one place and checked by ``tests/test_layering.py``.

``fastmath`` leaves out ``nnan`` and ``ninf``: with them LLVM may assume no NaN or
infinity ever appears and delete the finiteness guards that protect the weights.
``cache=True`` is only for serial kernels; a cached ``parallel=True`` function can crash
when the thread count changes between runs.

``jit_noalloc`` is ``jit`` without Numba's reference counting (NRT), for kernels that
never allocate. With it, every array handed to a call that LLVM does not inline costs two
atomic counter updates, which at this project's sizes is as much as the arithmetic. Such a
function cannot allocate or return a new array: compilation fails if it tries. ``_nrt`` is
a private Numba option; should a future Numba drop it, ``jit_noalloc`` falls back to
``jit`` (same results, slower).
"""

from __future__ import annotations

import functools

import numba
from numba.core import options

__all__ = ["FASTMATH", "CACHE", "jit", "jit_noalloc"]

FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})
CACHE = True

jit = functools.partial(numba.njit, fastmath=set(FASTMATH), cache=CACHE, nogil=True)

_NO_REFCOUNT = {"_nrt": False} if hasattr(options.DefaultOptions, "_nrt") else {}
jit_noalloc = functools.partial(jit, **_NO_REFCOUNT)
