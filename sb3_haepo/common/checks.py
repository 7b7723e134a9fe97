"""Argument checks shared by the package: one place for the validation of integer and real-valued options and their
messages, and for what counts as a real number."""

import math
from typing import Any

import numpy as np


def check_int(name: str, value: Any, minimum: int, maximum: int | None = None, *, why: str = "") -> int:
    """
    Check an integer argument early, with a message that names the bad value and what is allowed.

    The message reads ``"{name} must be an integer {range} ({why}), got {value!r}"``, the bracket only when ``why`` is
    given. A bool is refused although Python counts it as an int: ``True`` for a count is a mistake, not a 1.

    :param name: the argument's name, as the user wrote it
    :param value: the value given
    :param minimum: the smallest value allowed
    :param maximum: the largest value allowed; None: no upper bound
    :param why: what the number means, said after the range
    :return: ``value`` as an ``int``
    :raises ValueError: unless ``value`` is an integer (a Python or NumPy integer, not a bool) in
        ``[minimum, maximum]``
    """
    if not _is_int_in(value, minimum, maximum):
        raise ValueError(f"{name} must be {_allowed(minimum, maximum, why)}, got {value!r}")
    return int(value)


def check_optional_int(name: str, value: Any, minimum: int, *, why: str = "", why_none: str = "") -> int | None:
    """
    :func:`check_int` for an option that may also be None. The message reads ``"{name} must be an integer >=
    {minimum} ({why}) or None ({why_none}), got {value!r}"``, the brackets only when given.

    :param name: the argument's name, as the user wrote it
    :param value: the value given
    :param minimum: the smallest value allowed
    :param why: what the number means, said after the range
    :param why_none: what None means, said after ``or None``
    :return: ``value`` as an ``int``, or None
    :raises ValueError: unless ``value`` is None or an integer (a Python or NumPy integer, not a bool) >= ``minimum``
    """
    if value is None:
        return None
    if not _is_int_in(value, minimum, None):
        allowed = _allowed(minimum, None, why) + " or None" + (f" ({why_none})" if why_none else "")
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return int(value)


def check_real(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    why: str = "",
) -> float:
    """
    Check a real-valued argument early, with a message that names the bad value and what is allowed.

    The message reads ``"{name} must be a finite number {range} ({why}), got {value!r}"``: the range is ``>= low``,
    ``> low``, ``<= high``, ``< high`` or an interval such as ``in (0, 1]``, the bracket only when ``why`` is given.
    NaN and infinities are refused, and so is a bool (``True`` for a scale is a mistake, not a 1).

    :param name: the argument's name, as the user wrote it
    :param value: the value given
    :param low: the lower bound; None: none
    :param high: the upper bound; None: none
    :param low_open: whether ``low`` itself is refused
    :param high_open: whether ``high`` itself is refused
    :param why: what the number means, said after the range
    :return: ``value`` as a ``float``
    :raises ValueError: unless ``value`` is a finite Python or NumPy number (not a bool) within the bounds
    """
    if not _is_real_in(value, low, high, low_open, high_open):
        raise ValueError(f"{name} must be {_allowed_real(low, high, low_open, high_open, why)}, got {value!r}")
    return float(value)


def check_optional_real(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    why: str = "",
    why_none: str = "",
) -> float | None:
    """
    :func:`check_real` for an option that may also be None. The message reads ``"{name} must be a finite number
    {range} ({why}) or None ({why_none}), got {value!r}"``, the brackets only when given.

    :param name: the argument's name, as the user wrote it
    :param value: the value given
    :param low: the lower bound; None: none
    :param high: the upper bound; None: none
    :param low_open: whether ``low`` itself is refused
    :param high_open: whether ``high`` itself is refused
    :param why: what the number means, said after the range
    :param why_none: what None means, said after ``or None``
    :return: ``value`` as a ``float``, or None
    :raises ValueError: unless ``value`` is None or a finite number (not a bool) within the bounds
    """
    if value is None:
        return None
    if not _is_real_in(value, low, high, low_open, high_open):
        allowed = _allowed_real(low, high, low_open, high_open, why) + " or None" + (f" ({why_none})" if why_none else "")
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return float(value)


def is_real(value: Any) -> bool:
    """:return: whether ``value`` is a Python or NumPy int or float (a bool is not: ``True`` for a scale is a mistake)"""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _is_int_in(value: Any, minimum: int, maximum: int | None) -> bool:
    return bool(
        not isinstance(value, (bool, np.bool_))
        and isinstance(value, (int, np.integer))
        and value >= minimum
        and (maximum is None or value <= maximum)
    )


def _allowed(minimum: int, maximum: int | None, why: str) -> str:
    allowed = f"an integer >= {minimum}" if maximum is None else f"an integer in [{minimum}, {maximum}]"
    return allowed + (f" ({why})" if why else "")


def _is_real_in(value: Any, low: float | None, high: float | None, low_open: bool, high_open: bool) -> bool:
    if not is_real(value) or not math.isfinite(value):
        return False
    above = low is None or (value > low if low_open else value >= low)
    below = high is None or (value < high if high_open else value <= high)
    return bool(above and below)


def _allowed_real(low: float | None, high: float | None, low_open: bool, high_open: bool, why: str) -> str:
    if low is not None and high is not None:
        bounds = f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        bounds = f" {'>' if low_open else '>='} {low:g}"
    elif high is not None:
        bounds = f" {'<' if high_open else '<='} {high:g}"
    else:
        bounds = ""
    return "a finite number" + bounds + (f" ({why})" if why else "")
