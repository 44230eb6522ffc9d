"""``KeyedState``: per-entity arrays behind a key -> slot index, with a cap and LRU eviction.

Each entity (a sensor, a card) owns one row ("slot") of every array; the arrays grow by
doubling up to ``max_keys`` rows, so a store sized for a million cards costs nothing until
the cards arrive. When full, the least recently learned key gives up its slot. Rows are
plain NumPy arrays, so checkpoints and pickles hold nothing else.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable, Iterator, Mapping, Sequence

import numpy as np

__all__ = ["KeyedState"]


class KeyedState:
    """Per-key rows of named arrays, bounded by ``max_keys``.

    Parameters
    ----------
    templates
        Name -> array whose shape after the first axis and dtype define one row; the first
        axis of the template is ignored (use 1 or any size).
    max_keys
        Most keys held at once; the least recently used key is evicted beyond that.
    initial_capacity
        Rows allocated at first; the arrays double when they fill.

    Examples
    --------
    >>> import numpy as np
    >>> store = KeyedState({"h": np.zeros((1, 4), np.float32)}, max_keys=2)
    >>> store.slot_for("a"), store.slot_for("b"), store.slot_for("a")
    ((0, True), (1, True), (0, False))
    >>> store.slot_for("c")  # evicts "b", the least recently used
    (1, True)
    >>> sorted(store), store.evictions
    (['a', 'c'], 1)
    """

    def __init__(
        self, templates: Mapping[str, np.ndarray], max_keys: int, initial_capacity: int = 16
    ) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be >= 1, got {max_keys}")
        self.max_keys = int(max_keys)
        self._capacity = max(1, min(int(initial_capacity), self.max_keys))
        self.arrays: dict[str, np.ndarray] = {
            name: np.zeros((self._capacity, *t.shape[1:]), dtype=t.dtype)
            for name, t in templates.items()
        }
        self._slots: OrderedDict[Hashable, int] = OrderedDict()
        self._free: list[int] = []
        self.evictions = 0
        #: Bumped whenever the arrays are reallocated, so cached references can be renewed.
        self.generation = 0

    def __len__(self) -> int:
        return len(self._slots)

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self._slots)

    def __contains__(self, key: object) -> bool:
        return key in self._slots

    @property
    def capacity(self) -> int:
        """Rows currently allocated."""
        return self._capacity

    def get(self, key: Hashable) -> int:
        """Slot of ``key`` or -1, without touching its recency."""
        return self._slots.get(key, -1)

    def slot_for(self, key: Hashable) -> tuple[int, bool]:
        """Slot of ``key``, taking one (growing or evicting) if it has none.

        Returns ``(slot, is_new)``. A new slot's rows still hold whatever they held before:
        the caller clears them (:meth:`clear`), now or at the point in a batch where the
        key takes the slot.
        """
        slot = self._slots.get(key)
        if slot is not None:
            self._slots.move_to_end(key)
            return slot, False
        if self._free:
            slot = self._free.pop()
        elif len(self._slots) < self._capacity:
            slot = len(self._slots)
        elif self._capacity < self.max_keys:
            slot = self._capacity
            self._grow(min(self.max_keys, 2 * self._capacity))
        else:
            _, slot = self._slots.popitem(last=False)
            self.evictions += 1
        self._slots[key] = slot
        return slot, True

    def slots_for(self, keys: Sequence[Hashable]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`slot_for` of each key in turn: ``(slots, is_new)`` as arrays.

        The usual batch holds only keys the store already has; its slots are read in one
        pass, and the recency order ends as the calls in turn leave it: the batch's keys
        last, ordered by their last occurrence in it.
        """
        n = len(keys)
        slots = self._slots
        found = list(map(slots.get, keys))
        if None not in found:
            # Unique keys by last occurrence, from last to first; moved first to last.
            latest_first = list(dict.fromkeys(reversed(keys)))
            deque(map(slots.move_to_end, reversed(latest_first)), maxlen=0)
            return np.array(found, dtype=np.int64).reshape(n), np.zeros(n, dtype=np.bool_)
        out = np.empty(n, dtype=np.int64)
        fresh = np.zeros(n, dtype=np.bool_)
        slot_for = self.slot_for
        for i, key in enumerate(keys):
            out[i], fresh[i] = slot_for(key)
        return out, fresh

    def clear(self, slot: int) -> None:
        """Zero every array's row ``slot``."""
        for arr in self.arrays.values():
            arr[slot] = 0

    def remove(self, key: Hashable) -> bool:
        """Forget ``key``; its slot is reused by the next new key."""
        slot = self._slots.pop(key, None)
        if slot is None:
            return False
        self.clear(slot)
        self._free.append(slot)
        return True

    def _grow(self, capacity: int) -> None:
        for name, arr in self.arrays.items():
            grown = np.zeros((capacity, *arr.shape[1:]), dtype=arr.dtype)
            grown[: arr.shape[0]] = arr
            self.arrays[name] = grown
        self._capacity = capacity
        self.generation += 1

    def keys_by_slot(self) -> list[Hashable]:
        """Keys in least- to most-recently-used order (the order checkpoints keep)."""
        return list(self._slots)

    def bytes_per_key(self) -> int:
        """Array bytes one key costs (one row of every array)."""
        return int(sum(arr[0].nbytes for arr in self.arrays.values()))

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays now (allocated rows, used or not)."""
        return int(sum(arr.nbytes for arr in self.arrays.values()))

    def export(self) -> tuple[list[Hashable], dict[str, np.ndarray]]:
        """Keys (LRU order) and their rows, compacted: row ``i`` belongs to ``keys[i]``."""
        keys = self.keys_by_slot()
        order = np.fromiter((self._slots[k] for k in keys), dtype=np.int64, count=len(keys))
        return keys, {name: arr[order].copy() for name, arr in self.arrays.items()}

    def load(self, keys: list[Hashable], rows: Mapping[str, np.ndarray]) -> None:
        """Replace the contents with ``keys`` and their ``rows`` (as :meth:`export` gives)."""
        if len(keys) > self.max_keys:
            raise ValueError(f"{len(keys)} keys exceed max_keys={self.max_keys}")
        if set(rows) != set(self.arrays):
            raise ValueError(f"arrays {sorted(rows)} do not match {sorted(self.arrays)}")
        capacity = max(1, min(self.max_keys, max(len(keys), self._capacity)))
        for name, arr in self.arrays.items():
            src = np.asarray(rows[name])
            if src.shape[1:] != arr.shape[1:] or src.shape[0] != len(keys):
                raise ValueError(f"array {name!r} has shape {src.shape}, expected "
                                 f"({len(keys)}, {', '.join(map(str, arr.shape[1:]))})")
            fresh = np.zeros((capacity, *arr.shape[1:]), dtype=arr.dtype)
            fresh[: len(keys)] = src
            self.arrays[name] = fresh
        self._capacity = capacity
        self.generation += 1
        self._slots = OrderedDict((k, i) for i, k in enumerate(keys))
        self._free = []
