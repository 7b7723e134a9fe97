"""Argument checks shared by the package: one place for the validation of integer, real-valued and on/off options
and their messages, and for what counts as a real number."""

import math
from collections.abc import Callable
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
    _require(_is_int_in(value, minimum, maximum), name, value, lambda: _allowed(minimum, maximum, why))
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
    _require(_is_int_in(value, minimum, None), name, value, lambda: _or_none(_allowed(minimum, None, why), why_none))
    return int(value)


def check_bool(name: str, value: Any) -> bool:
    """
    Check a switch early: the message reads ``"{name} must be True or False, got {value!r}"``. An int (0, 1) or a
    string (``"False"`` is truthy) is refused, so that a mistyped value does not silently turn the switch on.

    :param name: the argument's name, as the user wrote it
    :param value: the value given
    :return: ``value`` as a Python ``bool``
    :raises ValueError: unless ``value`` is a Python or NumPy bool
    """
    _require(isinstance(value, (bool, np.bool_)), name, value, lambda: "True or False")
    return bool(value)


def check_real(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    finite: bool = True,
    why: str = "",
) -> float:
    """
    Check a real-valued argument early, with a message that names the bad value and what is allowed.

    The message reads ``"{name} must be a finite number {range} ({why}), got {value!r}"``: the range is ``>= low``,
    ``> low``, ``<= high``, ``< high`` or an interval such as ``in (0, 1]``, the bracket only when ``why`` is given.
    NaN is always refused, infinities unless ``finite=False`` (then the message says "a number"), and so is a bool
    (``True`` for a scale is a mistake, not a 1).

    :param name: the argument's name, as the user wrote it
    :param value: the value given
    :param low: the lower bound; None: none
    :param high: the upper bound; None: none
    :param low_open: whether ``low`` itself is refused
    :param high_open: whether ``high`` itself is refused
    :param finite: whether infinities are refused (False where ``inf`` means "no limit", as for a clipping norm)
    :param why: what the number means, said after the range
    :return: ``value`` as a ``float``
    :raises ValueError: unless ``value`` is a Python or NumPy number (not a bool, not NaN, finite unless ``finite``
        is False) within the bounds
    """
    ok = _is_real_in(value, low, high, low_open, high_open, finite)
    _require(ok, name, value, lambda: _allowed_real(low, high, low_open, high_open, why, finite))
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
    :func:`check_real` (the same parameters, infinities refused) for an option that may also be None, with
    ``why_none`` saying what None means. The message reads ``"{name} must be a finite number {range} ({why}) or None
    ({why_none}), got {value!r}"``, the brackets only when given.

    :return: ``value`` as a ``float``, or None
    :raises ValueError: unless ``value`` is None or a finite number (not a bool) within the bounds
    """
    if value is None:
        return None
    ok = _is_real_in(value, low, high, low_open, high_open, True)
    _require(ok, name, value, lambda: _or_none(_allowed_real(low, high, low_open, high_open, why, True), why_none))
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


def _is_real_in(value: Any, low: float | None, high: float | None, low_open: bool, high_open: bool, finite: bool) -> bool:
    if not is_real(value):
        return False
    try:
        if math.isnan(value) or (finite and math.isinf(value)):
            return False
    except OverflowError:  # an int beyond float's range: no float stands for it
        return False
    above = low is None or (value > low if low_open else value >= low)
    below = high is None or (value < high if high_open else value <= high)
    return bool(above and below)


def _allowed_real(low: float | None, high: float | None, low_open: bool, high_open: bool, why: str, finite: bool) -> str:
    if low is not None and high is not None:
        bounds = f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        bounds = f" {'>' if low_open else '>='} {low:g}"
    elif high is not None:
        bounds = f" {'<' if high_open else '<='} {high:g}"
    else:
        bounds = ""
    return ("a finite number" if finite else "a number") + bounds + (f" ({why})" if why else "")


def _require(ok: bool, name: str, value: Any, allowed: Callable[[], str]) -> None:
    """Raise the checks' one message, ``"{name} must be {allowed}, got {value!r}"``, unless ``ok``."""
    if not ok:
        raise ValueError(f"{name} must be {allowed()}, got {value!r}")


def _or_none(allowed: str, why_none: str) -> str:
    return allowed + " or None" + (f" ({why_none})" if why_none else "")
