"""Argument checks shared by the package: one place for the integer options' validation and its messages."""

from typing import Any, Literal, overload

import numpy as np


@overload
def check_int(
    name: str,
    value: Any,
    minimum: int,
    maximum: int | None = None,
    *,
    allow_none: Literal[False] = False,
    why: str = "",
    why_none: str = "",
) -> int: ...


@overload
def check_int(
    name: str,
    value: Any,
    minimum: int,
    maximum: int | None = None,
    *,
    allow_none: bool,
    why: str = "",
    why_none: str = "",
) -> int | None: ...


def check_int(
    name: str,
    value: Any,
    minimum: int,
    maximum: int | None = None,
    *,
    allow_none: bool = False,
    why: str = "",
    why_none: str = "",
) -> int | None:
    """
    Check an integer argument early, with a message that names the bad value and what is allowed.

    The message reads ``"{name} must be an integer {range} ({why}) or None ({why_none}), got {value!r}"``, the parts
    in brackets only when given (``or None`` only with ``allow_none``). A bool is refused although Python counts it
    as an int: ``True`` for a count is a mistake, not a 1.

    :param name: the argument's name, as the user wrote it
    :param value: the value given
    :param minimum: the smallest value allowed
    :param maximum: the largest value allowed; None: no upper bound
    :param allow_none: also accept None (returned as None)
    :param why: what the number means, said after the range
    :param why_none: what None means, said after ``or None`` (only with ``allow_none``)
    :return: ``value`` as an ``int``, or None when ``value`` is None and ``allow_none``
    :raises ValueError: unless ``value`` is an integer (a Python or NumPy integer, not a bool) in
        ``[minimum, maximum]``, or None where allowed
    """
    if value is None and allow_none:
        return None
    if (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, (int, np.integer))
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        allowed = f"an integer >= {minimum}" if maximum is None else f"an integer in [{minimum}, {maximum}]"
        if why:
            allowed += f" ({why})"
        if allow_none:
            allowed += " or None" + (f" ({why_none})" if why_none else "")
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return int(value)
