"""Validation of config values: one spelling for each check, one message shape for each failure.

Every config dataclass checks its fields in ``__post_init__`` with these functions; each raises
``ValueError("<Config.field>=<value> must ...")``, which the CLI prints as its one error line.
A leaf module: it imports nothing of the package (any layer may use it).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any


def is_int(value: object) -> bool:
    """An integer (numpy's too) that is not a bool (True would otherwise pass as 1)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """A finite int or float that is not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def integer(name: str, value: Any, minimum: int, optional: bool = False) -> None:
    """An int >= minimum (or None if optional)."""
    if optional and value is None:
        return
    if not is_int(value) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name}={value!r} must be {what}" + (" or None" if optional else ""))


def positive_int(name: str, value: Any, optional: bool = False) -> None:
    integer(name, value, 1, optional)


def number(
    name: str,
    value: Any,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    open_low: bool = False,
    open_high: bool = False,
    optional: bool = False,
) -> None:
    """A finite number in the interval from low to high, each end open or closed."""
    if optional and value is None:
        return
    if is_number(value):
        above = value > low if open_low else value >= low
        below = value < high if open_high else value <= high
        if above and below:
            return
    if high == math.inf:
        what = "a positive number" if (low, open_low) == (0, True) else f"a number >= {low:g}"
    else:
        what = f"a number in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
    raise ValueError(f"{name}={value!r} must be {what}" + (" or None" if optional else ""))


def positive(name: str, value: Any, optional: bool = False) -> None:
    number(name, value, 0, open_low=True, optional=optional)


def choice(name: str, value: Any, allowed: Iterable[Any]) -> None:
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {allowed}")


def boolean(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name}={value!r} must be a boolean")


def text(name: str, value: Any, optional: bool = False) -> None:
    """A non-empty string (or None if optional)."""
    if optional and value is None:
        return
    if not (isinstance(value, str) and value):
        raise ValueError(f"{name}={value!r} must be a non-empty string")
