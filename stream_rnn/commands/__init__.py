"""Subcommands of the ``stream-rnn`` command line, one module each."""
