"""The shared integer check (sb3_haepo.common.checks.check_int): what it accepts, returns and says."""

import numpy as np
import pytest

from sb3_haepo.common.checks import check_int, check_optional_int, is_real


def test_accepts_python_and_numpy_integers_and_returns_int():
    assert check_int("n", 3, 1) == 3
    value = check_int("n", np.int64(7), 1, 7)
    assert value == 7 and type(value) is int
    assert check_int("n", 0, 0) == 0  # the bounds are inclusive
    assert check_optional_int("n", None, 1) is None
    value = check_optional_int("n", np.int64(2), 1)
    assert value == 2 and type(value) is int


@pytest.mark.parametrize(
    "value, kwargs, message",
    [
        (0, {}, "n must be an integer >= 1, got 0"),
        (8, dict(maximum=7), "n must be an integer in [1, 7], got 8"),
        (True, {}, "n must be an integer >= 1, got True"),
        (np.bool_(True), {}, f"n must be an integer >= 1, got {np.bool_(True)!r}"),
        (2.0, {}, "n must be an integer >= 1, got 2.0"),
        ("3", {}, "n must be an integer >= 1, got '3'"),
        (None, {}, "n must be an integer >= 1, got None"),
        (0, dict(why="a count"), "n must be an integer >= 1 (a count), got 0"),
    ],
)
def test_refuses_with_a_message_naming_the_value_and_what_is_allowed(value, kwargs, message):
    with pytest.raises(ValueError) as error:
        check_int("n", value, 1, **kwargs)
    assert str(error.value) == message


@pytest.mark.parametrize(
    "value, kwargs, message",
    [
        (0, {}, "n must be an integer >= 1 or None, got 0"),
        (True, {}, "n must be an integer >= 1 or None, got True"),
        (1.5, {}, "n must be an integer >= 1 or None, got 1.5"),
        (0, dict(why="a count", why_none="no limit"), "n must be an integer >= 1 (a count) or None (no limit), got 0"),
    ],
)
def test_optional_refuses_with_a_message_that_allows_none(value, kwargs, message):
    with pytest.raises(ValueError) as error:
        check_optional_int("n", value, 1, **kwargs)
    assert str(error.value) == message


def test_is_real_takes_numbers_and_not_bools():
    assert all(is_real(value) for value in (0, 1.5, np.int64(2), np.float32(0.5), float("nan")))
    assert not any(is_real(value) for value in (True, np.bool_(False), "1", None, [1.0]))
