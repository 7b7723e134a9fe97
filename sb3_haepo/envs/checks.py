"""Argument checks shared by the environments of :mod:`sb3_haepo.envs`."""

from typing import Any

import numpy as np


def check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    """
    :return: ``value`` as an ``int``
    :raises ValueError: naming the value and what is allowed, unless ``value`` is an integer (not a bool) in
        ``[minimum, maximum]`` (no upper bound when ``maximum`` is None)
    """
    allowed = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
    return int(value)
