"""Atomic checkpoints: one ``.npz`` of plain arrays plus a JSON manifest, never pickle.

A checkpoint is written in two steps so a crash at any instant leaves either the old
checkpoint or the new one, never a mix:

1. the arrays go to ``<name>.<generation>.npz`` (written to a temporary file, flushed,
   fsynced, then renamed into place);
2. the manifest ``<name>.json`` naming that generation replaces the old manifest the same
   way. Only then is the previous generation's ``.npz`` deleted.

Readers open the manifest first and load exactly the arrays it names, with
``allow_pickle=False``: a checkpoint cannot execute code when loaded.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_checkpoint", "read_checkpoint", "CheckpointError"]

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
FORMAT = "stream-rnn-checkpoint/1"


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be read back faithfully."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def write_checkpoint(directory: str | Path, name: str, manifest: Mapping[str, Any],
                     arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` and ``manifest`` (JSON-able) as checkpoint ``name``; returns the
    manifest path.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> d = tempfile.mkdtemp()
    >>> _ = write_checkpoint(d, "orders-3", {"offset": 42}, {"w": np.arange(3.0)})
    >>> manifest, arrays = read_checkpoint(d, "orders-3")
    >>> manifest["offset"], arrays["w"].tolist()
    (42, [0.0, 1.0, 2.0])
    """
    if not _NAME.match(name):
        raise ValueError(f"checkpoint name {name!r} must match {_NAME.pattern}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    manifest_path = directory / f"{name}.json"
    previous = None
    if manifest_path.exists():
        try:
            previous = json.loads(manifest_path.read_text(encoding="utf-8")).get("arrays_file")
        except (OSError, ValueError):
            previous = None
    generation = 0
    if previous:
        match = re.search(r"\.(\d+)\.npz$", previous)
        generation = int(match.group(1)) + 1 if match else 0
    arrays_file = f"{name}.{generation}.npz"
    clean = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    for key, value in clean.items():
        if value.dtype == object:
            raise TypeError(f"array {key!r} has dtype object; checkpoints hold plain arrays")
    _atomic_write(directory / arrays_file, lambda fh: np.savez(fh, **clean))
    body = dict(manifest)
    body["format"] = FORMAT
    body["arrays_file"] = arrays_file
    payload = json.dumps(body, sort_keys=True, allow_nan=False).encode("utf-8")
    _atomic_write(manifest_path, lambda fh: fh.write(payload))
    if previous and previous != arrays_file:
        try:
            (directory / previous).unlink()
        except FileNotFoundError:
            pass
    return manifest_path


def read_checkpoint(directory: str | Path, name: str
                    ) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """The manifest and arrays of checkpoint ``name``, or None when there is none.

    Raises CheckpointError when the manifest exists but it or its arrays are damaged.
    """
    directory = Path(directory)
    manifest_path = directory / f"{name}.json"
    if not manifest_path.exists():
        return None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{manifest_path}: unreadable manifest: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{manifest_path}: unknown format {manifest.get('format')!r}")
    arrays_path = directory / str(manifest.get("arrays_file", ""))
    try:
        with np.load(arrays_path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{arrays_path}: unreadable arrays: {exc}") from exc
    return manifest, arrays
