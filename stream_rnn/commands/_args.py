"""Argument types shared by the subcommands: numbers checked at parse time, so a bad
flag is a usage error naming the value rather than a failure half way through a run."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = ["integer", "real", "positive_int", "positive_real", "non_negative_real",
           "probability", "fraction"]


def integer(minimum: int) -> Callable[[str], int]:
    """An integer >= ``minimum``.

    >>> integer(1)("3")
    3
    >>> integer(1)("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be >= 1, got 0
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def real(low: float = -math.inf, high: float = math.inf, low_open: bool = False,
         what: str | None = None) -> Callable[[str], float]:
    """A finite number in ``[low, high]`` (``(low, high]`` with ``low_open``).

    ``what`` replaces the range in the message (``"a positive number"``).

    >>> real(0.0, 1.0)("0.25")
    0.25
    >>> real(0.0, low_open=True, what="a positive number")("nan")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be a positive number, got 'nan'
    """
    opening = "(" if low_open else "["
    expected = what or f"in {opening}{low:g}, {high:g}]"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        above = value > low if low_open else value >= low
        if not (math.isfinite(value) and above and value <= high):
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


positive_int = integer(1)
positive_real = real(0.0, low_open=True, what="a positive number")
non_negative_real = real(0.0, what="finite and >= 0")
probability = real(0.0, 1.0)
fraction = real(0.0, 1.0, low_open=True)
