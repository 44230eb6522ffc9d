"""What every recurrent estimator shares: the constructor vocabulary, feature slots,
input checks, and the keyed store of per-entity state around one shared ``Network``.

Estimators build their network lazily, on the first event they learn from, because that
event fixes the feature slots. Until then they predict a neutral value.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Hashable, Mapping
from operator import itemgetter
from typing import Any

import numpy as np

from stream_rnn.cells.network import Network
from stream_rnn.state.store import KeyedState

__all__ = ["RNNBase", "GLOBAL_KEY"]

# features, their number, values(x) in slot order, the array pack writes into, pack.
VectorPlan = tuple[dict[Hashable, int], int, Callable[[dict], tuple], np.ndarray | None,
                   Callable[..., None] | None]

#: The key used when ``key=None``: one global sequence, as River's checks expect.
GLOBAL_KEY = "__global__"

COMMON_PARAMS = (
    "cell",
    "hidden_size",
    "num_layers",
    "window",
    "update_every",
    "optimizer",
    "lr",
    "clip_norm",
    "seed",
    "activation",
    "weight_decay",
    "dropout",
    "max_keys",
    "input_size",
    "dtype",
)



#: What a network's checkpoint holds: weights, optimizer moments, counters, the dropout
#: stream and the last loss and gradient norm.
NETWORK_ARRAYS = ("theta", "opt", "counters", "rng", "stats")


def network_arrays(net: Network, prefix: str) -> dict[str, np.ndarray]:
    """``net``'s state as ``{prefix/name: array}``."""
    return {f"{prefix}/{name}": getattr(net, name) for name in NETWORK_ARRAYS}


def load_network(net: Network, arrays: dict[str, np.ndarray], prefix: str) -> None:
    """Copy :func:`network_arrays` back into ``net``, refusing arrays of another shape."""
    for name in NETWORK_ARRAYS:
        target = getattr(net, name)
        source = arrays[f"{prefix}/{name}"]
        if source.shape != target.shape:
            raise ValueError(f"{prefix}/{name} has shape {source.shape}, "
                             f"expected {target.shape}")
        target[...] = source


def store_arrays(store: KeyedState, meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """``store``'s rows as ``{store/name: array}``; its keys and evictions go in ``meta``."""
    keys, rows = store.export()
    meta["keys"] = keys
    meta["evictions"] = store.evictions
    return {f"store/{name}": value for name, value in rows.items()}


def load_store(store: KeyedState, meta: dict[str, Any], arrays: dict[str, np.ndarray]
               ) -> None:
    """Load what :func:`store_arrays` exported into ``store``."""
    rows = {key[6:]: value for key, value in arrays.items() if key.startswith("store/")}
    store.load(list(meta["keys"]), rows)
    store.evictions = int(meta["evictions"])


class RNNBase:
    """Mixin holding the shared machinery; concrete estimators also derive from River bases.

    Subclasses call :meth:`_build` with the feature names of their first learned event,
    and implement ``_target_size`` and ``_loss``.
    """

    # The fast path of ``_vectorize`` (see ``_plan_vectors``); rebuilt when slots change.
    _vector_plan: VectorPlan | None = None

    def _init_common(self, **params: Any) -> None:
        for name, value in params.items():
            setattr(self, name, value)
        self._net: Network | None = None
        self._store: KeyedState | None = None
        self._features: dict[Hashable, int] = {}
        self._n_inputs = 0

    def _make_buffers(self) -> None:
        """Scratch arrays reused across calls; subclasses fill ``self._buf``."""

    def __getstate__(self) -> dict[str, Any]:
        # Scratch buffers are rebuilt on load: a pickle holds model state only, and two
        # models in the same state pickle identically whatever they last computed.
        state = self.__dict__.copy()
        state.pop("_buf", None)
        state.pop("_vector_plan", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self._net is not None:
            self._make_buffers()

    # ------------------------------------------------------------- subclass hooks

    @property
    def _loss(self) -> str:
        raise NotImplementedError

    def _target_size(self) -> int:
        raise NotImplementedError

    def _network_inputs(self) -> int:
        """Inputs of the network given the fixed feature slots (subclasses may add lags)."""
        return self._n_inputs

    # ------------------------------------------------------------- building

    @property
    def _is_stochastic(self) -> bool:
        return True

    def _validate_common(self) -> None:
        if self.max_keys is not None and self.max_keys < 1:
            raise ValueError(f"max_keys must be >= 1 or None, got {self.max_keys!r}")
        if self.input_size is not None and self.input_size < 1:
            raise ValueError(f"input_size must be >= 1 or None, got {self.input_size!r}")

    def _build(self, feature_names: list[Hashable]) -> None:
        self._validate_common()
        names = sorted(feature_names, key=str)
        if self.input_size is not None and len(names) > self.input_size:
            raise ValueError(
                f"the first event has {len(names)} features but input_size={self.input_size}"
            )
        self._features = {name: i for i, name in enumerate(names)}
        self._n_inputs = len(names) if self.input_size is None else int(self.input_size)
        self._net = Network(
            cell=self.cell,
            input_size=max(1, self._network_inputs()),
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            target_size=self._target_size(),
            loss=self._loss,
            activation=self.activation,
            window=self.window,
            update_every=self.update_every,
            optimizer=self.optimizer,
            lr=self.lr,
            clip_norm=self.clip_norm,
            weight_decay=self.weight_decay,
            dropout=self.dropout,
            seed=self.seed,
            dtype=self.dtype,
        )
        templates = dict(self._net.keyed_arrays(1))
        for name, (shape, dtype) in self._extra_rows_for().items():
            templates[name] = np.zeros((1, *shape), dtype=dtype)
        max_keys = 1_000_000 if self.max_keys is None else int(self.max_keys)
        self._store = KeyedState(templates, max_keys=max_keys)

    def _extra_rows_for(self) -> dict[str, tuple[tuple[int, ...], Any]]:
        return {}

    # ------------------------------------------------------------- features

    def _vectorize(self, x: Mapping[Hashable, Any], out: np.ndarray, learning: bool) -> None:
        """Fill ``out`` from the dict ``x`` by feature slot; missing features read 0.

        Raises ValueError naming the feature for a non-numeric, NaN or infinite value, and
        for a feature the model has no slot for (when ``input_size`` leaves spare slots, a
        learned event gives a new feature the next free slot; a prediction ignores it).
        Nothing is mutated before every value has been checked.
        """
        # Fast path for the usual event, a dict of exactly the known features: one C-level
        # read of the values in slot order, and one sum that is finite only if every value
        # is a finite number (a NaN or an infinity makes it NaN or infinite, a string or
        # None a TypeError, and fsum converts each value as float() does). The values are
        # then written as the checked path writes them (float(), then rounded to the
        # array's dtype). Anything else, an overflowing sum or a value too large for
        # float32 included, takes the checked path, which gives the same vector or the
        # precise error.
        plan = self._vector_plan
        if (plan is not None and plan[0] is self._features and type(x) is dict
                and len(x) == plan[1] == len(plan[0])):
            try:
                values = plan[2](x)
                total = math.fsum(values)
                if total - total == 0.0:
                    if out is plan[3]:
                        plan[4](out, 0, *values)
                        return
                    if out.shape[0] == plan[1]:
                        out[:] = values
                        return
            except (KeyError, TypeError, ValueError, OverflowError, struct.error):
                pass
        self._vectorize_checked(x, out, learning)
        if plan is None or plan[0] is not self._features or plan[1] != len(self._features):
            self._vector_plan = self._plan_vectors(out)

    def _plan_vectors(self, out: np.ndarray) -> VectorPlan | None:
        """The fast path's plan for the current slots: the features dict it is valid for,
        their number, a function reading their values from a dict in slot order, and the
        array (``out``, when every slot is a feature) that a packer writes values into."""
        features = self._features
        names = sorted(features, key=features.__getitem__)
        if not names:
            return None
        if len(names) == 1:
            (name,) = names
            values: Callable[[dict], tuple] = lambda x: (x[name],)  # noqa: E731
        else:
            values = itemgetter(*names)
        codes = {np.dtype(np.float32): "f", np.dtype(np.float64): "d"}
        if (out.ndim == 1 and out.shape[0] == len(names) and out.dtype in codes
                and out.flags.c_contiguous and out.flags.writeable
                and out.dtype.byteorder in "=|"):
            # The array's own memory, in its native layout: packing is numpy's cast.
            return features, len(names), values, out, struct.Struct(
                f"={len(names)}{codes[out.dtype]}").pack_into
        return features, len(names), values, None, None

    def _vectorize_checked(self, x: Mapping[Hashable, Any], out: np.ndarray,
                           learning: bool) -> None:
        features = self._features
        values = [0.0] * out.shape[0]
        new: list[Hashable] = []
        for name, value in x.items():
            # Inline checks: this runs for every feature of every event.
            try:
                v = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"feature {name!r} is not numeric: {value!r}") from None
            if v - v != 0.0:  # NaN or +-inf
                raise ValueError(f"feature {name!r} is not finite: {v!r}")
            idx = features.get(name)
            if idx is None:
                if len(features) + len(new) >= self._n_inputs:
                    raise ValueError(
                        f"feature {name!r} was not in the first event and the model has no "
                        f"free input slot (input_size={self._n_inputs}); pass a larger "
                        "input_size to let features appear later"
                    )
                if not learning:
                    continue
                new.append(name)
                idx = len(features) + len(new) - 1
            values[idx] = v
        out[:] = values
        for name in new:
            self._features[name] = len(self._features)

    # ------------------------------------------------------------- keys

    @staticmethod
    def _key(key: Hashable | None) -> Hashable:
        return GLOBAL_KEY if key is None else key

    def _bound(self) -> tuple[tuple, tuple, tuple]:
        """Kernel arguments for the current store arrays (renewed when they reallocate)."""
        buf = self._buf
        generation = self._store.generation
        if getattr(buf, "bound_generation", -1) != generation:
            buf.bound = self._net.bind(self._store.arrays)
            buf.bound_generation = generation
        return buf.bound

    def _assign_slots(self, keys: list[Hashable | None]) -> tuple[np.ndarray, np.ndarray]:
        """Slots for a batch's keys in arrival order, and which events take a slot afresh
        (the kernels clear those rows at that event, since a slot can change hands within
        one batch)."""
        assert self._store is not None
        if None in keys:
            keys = [GLOBAL_KEY if key is None else key for key in keys]
        return self._store.slots_for(keys)

    @property
    def feature_names(self) -> list[Hashable]:
        """Features in input-slot order (the column order the batch methods take)."""
        return sorted(self._features, key=self._features.__getitem__)

    @property
    def n_keys(self) -> int:
        """Entities currently holding state."""
        return 0 if self._store is None else len(self._store)

    @property
    def n_evictions(self) -> int:
        """Entities evicted to keep at most ``max_keys``."""
        return 0 if self._store is None else self._store.evictions

    @property
    def bytes_per_key(self) -> int:
        """Bytes of array state one entity costs (0 before the first event)."""
        return 0 if self._store is None else self._store.bytes_per_key()

    @property
    def n_updates(self) -> int:
        """Weight updates applied so far."""
        return 0 if self._net is None else self._net.n_updates

    @property
    def n_skipped_updates(self) -> int:
        """Updates skipped because a gradient or weight turned non-finite."""
        return 0 if self._net is None else self._net.n_skipped

    @property
    def last_loss(self) -> float:
        """Training loss of the most recent update (NaN before any)."""
        return float("nan") if self._net is None or self.n_updates == 0 else float(
            self._net.stats[0]
        )

    @property
    def last_grad_norm(self) -> float:
        """Global gradient norm of the most recent update (NaN before any)."""
        return float("nan") if self._net is None or self.n_updates == 0 else float(
            self._net.stats[1]
        )

    # ------------------------------------------------------------- state export

    def export_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Everything needed to resume this model: JSON-able metadata and plain arrays.

        Constructor parameters, feature slots, weights, optimizer moments and counters,
        the dropout stream, and every key's rows (in recency order) are included; scratch
        buffers are not. :meth:`from_state` rebuilds an identical model.
        """
        meta: dict[str, Any] = {
            "class": type(self).__name__,
            "params": self._get_params(),
            "features": None,
            "attrs": {},
        }
        arrays: dict[str, np.ndarray] = {}
        skip = ({"_net", "_store", "_buf", "_features", "_n_inputs", "_vector_plan"}
                | set(meta["params"]))
        for name, value in self.__dict__.items():
            if name in skip:
                continue
            if isinstance(value, np.ndarray):
                arrays[f"attr/{name}"] = value
            else:
                meta["attrs"][name] = value
        if self._net is not None:
            meta["features"] = [[name, slot] for name, slot in self._features.items()]
            arrays.update(network_arrays(self._net, "net"))
            arrays.update(store_arrays(self._store, meta))
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> RNNBase:
        """Rebuild a model exported by :meth:`export_state`."""
        if meta.get("class") != cls.__name__:
            raise ValueError(f"state is for {meta.get('class')!r}, not {cls.__name__}")
        model = cls(**meta["params"])
        for name, value in meta["attrs"].items():
            setattr(model, name, value)
        for key, value in arrays.items():
            if key.startswith("attr/"):
                setattr(model, key[5:], np.array(value))
        if meta["features"] is not None:
            features = {name: int(slot) for name, slot in meta["features"]}
            model._build(sorted(features, key=features.__getitem__))
            model._features = features
            load_network(model._net, arrays, "net")
            load_store(model._store, meta, arrays)
            model._make_buffers()
        return model

    def forget(self, key: Hashable | None = None) -> bool:
        """Drop one entity's state; returns whether it had any."""
        return False if self._store is None else self._store.remove(self._key(key))


def _as_finite_float(name: Hashable, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"feature {name!r} is not numeric: {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"feature {name!r} is not finite: {v!r}")
    return v


def check_target(y: Any, name: str = "target") -> float:
    """``y`` as a finite float, or a ValueError naming it."""
    return _as_finite_float(name, y)
