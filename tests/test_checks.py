"""The shared argument checks (sb3_haepo.common.checks): what they accept, return and say."""

import re

import numpy as np
import pytest
import torch as th
from gymnasium.spaces import Discrete

from sb3_haepo import DPO, GRPO, HAEPO
from sb3_haepo.benchmark.runner import run_grid
from sb3_haepo.common.buffers import EpisodeBuffer
from sb3_haepo.common.checks import check_bool, check_int, check_optional_int, check_optional_real, check_real, is_real
from sb3_haepo.common.utils import (
    default_target_weight_entropy,
    epoch_minibatch_size,
    policy_entropy_loss,
    reward_to_go_advantages_into,
)
from sb3_haepo.envs.bandit import BanditEnv
from sb3_haepo.envs.deep_sea import DeepSeaEnv
from sb3_haepo.experiments.memory import FixedLengthEnv, mmap_threshold_env, plan_cases
from sb3_haepo.zoo import repeat_trial_runs


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


def test_bool_takes_python_and_numpy_bools_and_returns_bool():
    assert check_bool("flag", True) is True
    assert check_bool("flag", np.bool_(False)) is False


@pytest.mark.parametrize("value", [1, 0, 1.0, "False", None, np.int64(1)])
def test_bool_refuses_anything_else(value):
    with pytest.raises(ValueError) as error:
        check_bool("flag", value)
    assert str(error.value) == f"flag must be True or False, got {value!r}"
    # The switches that use it
    with pytest.raises(ValueError, match=re.escape(f"randomize_actions must be True or False, got {value!r}")):
        DeepSeaEnv(randomize_actions=value)
    with pytest.raises(ValueError, match=re.escape(f"skip_tied_groups must be True or False, got {value!r}")):
        HAEPO("MlpPolicy", "CartPole-v1", skip_tied_groups=value, _init_setup_model=False)


def test_is_real_takes_numbers_and_not_bools():
    assert all(is_real(value) for value in (0, 1.5, np.int64(2), np.float32(0.5), float("nan")))
    assert not any(is_real(value) for value in (True, np.bool_(False), "1", None, [1.0]))


def test_real_accepts_python_and_numpy_numbers_and_returns_float():
    value = check_real("x", np.float32(0.5), 0.0, 1.0)
    assert value == 0.5 and type(value) is float
    value = check_real("gamma", 1, 0.0, 1.0, low_open=True)  # an int is a number; the closed bound is allowed
    assert value == 1.0 and type(value) is float
    assert check_real("x", -1e300) == -1e300  # no bounds: any finite number
    assert check_optional_real("x", None, 0.0) is None
    assert check_optional_real("x", np.int64(3), 0.0, low_open=True) == 3.0


@pytest.mark.parametrize(
    "value, bounds, message",
    [
        (0.0, dict(low=0.0, high=1.0, low_open=True), "x must be a finite number in (0, 1], got 0.0"),
        (1.0, dict(low=0.0, high=1.0, high_open=True), "x must be a finite number in [0, 1), got 1.0"),
        (-0.5, dict(low=0.0), "x must be a finite number >= 0, got -0.5"),
        (0, dict(low=0.0, low_open=True), "x must be a finite number > 0, got 0"),
        (2.5, dict(high=2.0), "x must be a finite number <= 2, got 2.5"),
        (2.0, dict(high=2.0, high_open=True), "x must be a finite number < 2, got 2.0"),
        (float("nan"), {}, "x must be a finite number, got nan"),
        (float("inf"), dict(low=0.0), "x must be a finite number >= 0, got inf"),
        (True, dict(low=0.0), "x must be a finite number >= 0, got True"),
        ("0.5", dict(low=0.0), "x must be a finite number >= 0, got '0.5'"),
        (None, dict(low=0.0), "x must be a finite number >= 0, got None"),
        (-1.0, dict(low=0.0, why="0 disables it"), "x must be a finite number >= 0 (0 disables it), got -1.0"),
    ],
)
def test_real_refuses_with_a_message_naming_the_value_and_what_is_allowed(value, bounds, message):
    with pytest.raises(ValueError) as error:
        check_real("x", value, **bounds)
    assert str(error.value) == message


def test_optional_real_refuses_with_a_message_that_allows_none():
    with pytest.raises(ValueError) as error:
        check_optional_real("target_kl", 0.0, 0.0, low_open=True, why_none="no early stop")
    assert str(error.value) == "target_kl must be a finite number > 0 or None (no early stop), got 0.0"
    with pytest.raises(ValueError, match=r"^t must be a finite number >= 0 or None, got False$"):
        check_optional_real("t", False, 0.0)


@pytest.mark.parametrize(
    "algo, kwargs, message",
    [
        (GRPO, dict(gamma=True), "gamma must be a finite number in (0, 1], got True"),
        (DPO, dict(beta=True), "beta must be a finite number > 0, got True"),
        (HAEPO, dict(max_grad_norm=0), "max_grad_norm must be a number > 0 (inf: no clipping), got 0"),
        (HAEPO, dict(target_kl=-1.0), "target_kl must be a finite number > 0 or None (no early stop), got -1.0"),
    ],
)
def test_the_algorithms_use_the_real_check(algo, kwargs, message):
    # Each of these used to pass: gamma=True and beta=True as 1, max_grad_norm=0 and target_kl=-1 were refused with
    # other wording (the message is asserted whole)
    with pytest.raises(ValueError, match=re.escape(message)):
        algo("MlpPolicy", "CartPole-v1", **kwargs)


def test_infinity_only_where_it_means_no_limit():
    # A clipping norm or GRPO's clip range may be inf (no clipping), as before; a cost or a noise scale may not
    assert check_real("max_grad_norm", float("inf"), 0.0, low_open=True, finite=False) == float("inf")
    HAEPO("MlpPolicy", "CartPole-v1", max_grad_norm=float("inf"), n_episodes=2)
    GRPO("MlpPolicy", "CartPole-v1", clip_range=float("inf"))
    with pytest.raises(ValueError, match=re.escape("x must be a number > 0, got nan")):
        check_real("x", float("nan"), 0.0, low_open=True, finite=False)
    with pytest.raises(ValueError, match=re.escape("move_cost must be a finite number >= 0, got inf")):
        DeepSeaEnv(move_cost=float("inf"))
    with pytest.raises(ValueError, match=re.escape("reward_std must be a finite number >= 0, got True")):
        BanditEnv(reward_std=True)


def test_an_int_beyond_floats_range_is_a_value_error():
    # math.isfinite raises OverflowError on it; the check says what is allowed instead
    with pytest.raises(ValueError, match=r"max_grad_norm must be a number > 0"):
        check_real("max_grad_norm", 10**400, 0.0, low_open=True, finite=False)
    with pytest.raises(ValueError, match=r"gamma must be a finite number in \(0, 1\]"):
        check_real("gamma", -(10**400), 0.0, 1.0, low_open=True)


def _plan(**changes):
    kwargs = dict(lengths=[10], policies=["mlp"], modes=["two-pass"], n_episodes=2, batch_size=8, seed=0, threads=1)
    return plan_cases(**{**kwargs, "device": "cpu", **changes})


@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda: reward_to_go_advantages_into([np.ones(2, np.float32)], [np.zeros(2, np.float32)], 0.9, chunk_steps=True),
            "chunk_steps must be an integer >= 1, got True",
        ),
        (lambda: epoch_minibatch_size(2.0, 64), "n_steps must be an integer >= 1, got 2.0"),
        (lambda: epoch_minibatch_size(10, True), "minibatch_size must be an integer >= 1 or None, got True"),
        (lambda: epoch_minibatch_size(10, 64, 1.5), "max_minibatches must be an integer >= 1 or None, got 1.5"),
        (lambda: default_target_weight_entropy(True), "n_episodes must be an integer >= 1, got True"),
        (lambda: EpisodeBuffer(Discrete(2), Discrete(2), page_rows=0), "page_rows must be an integer >= 1, got 0"),
        (lambda: run_grid([], n_jobs=0), "n_jobs must be an integer >= 1, got 0"),
        (lambda: repeat_trial_runs(lambda manager, trial: 0.0, 0), "n_runs must be an integer >= 1 (runs per trial), got 0"),
        (lambda: FixedLengthEnv(length=2.5), "length must be an integer >= 1, got 2.5"),
        (lambda: mmap_threshold_env(-1), "mmap_threshold must be an integer >= 0 (bytes; 0: glibc's default), got -1"),
        (lambda: _plan(lengths=[10, 0]), "each of lengths must be an integer >= 1 (steps per episode), got 0"),
        (lambda: _plan(n_episodes=1), "n_episodes must be an integer >= 2, got 1"),
        (lambda: _plan(batch_size=0), "batch_size must be an integer >= 1, got 0"),
        (lambda: _plan(repeats=0), "repeats must be an integer >= 1, got 0"),
        # a bool or a float, which the hand-written checks let through (or left to fail later inside numpy)
        (
            lambda: policy_entropy_loss(th.ones(2), 0.1, n_steps=2.0),
            "n_steps must be an integer >= 2 (the group's steps: at least these entropies and 1), got 2.0",
        ),
        (lambda: EpisodeBuffer(Discrete(2), Discrete(2), page_rows=True), "page_rows must be an integer >= 1, got True"),
        (lambda: run_grid([], n_jobs=True), "n_jobs must be an integer >= 1, got True"),
        (
            lambda: repeat_trial_runs(lambda manager, trial: 0.0, True),
            "n_runs must be an integer >= 1 (runs per trial), got True",
        ),
        (lambda: mmap_threshold_env(4096.0), "mmap_threshold must be an integer >= 0 (bytes; 0: glibc's default), got 4096.0"),
        (lambda: _plan(lengths=[2.5]), "each of lengths must be an integer >= 1 (steps per episode), got 2.5"),
        (lambda: _plan(batch_size=True), "batch_size must be an integer >= 1, got True"),
    ],
)
def test_the_package_counts_use_the_integer_check(build, message):
    # Each of these was a hand-written "must be >= 1" with its own wording; the message is asserted whole. The bool and
    # float cases passed those checks (True counted as 1, 2.0 compared as a number) or failed later inside numpy
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        build()
