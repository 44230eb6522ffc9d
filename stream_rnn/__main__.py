"""``python -m stream_rnn`` runs the same entry point as the ``stream-rnn`` script."""

from __future__ import annotations

from stream_rnn.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
