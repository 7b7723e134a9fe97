import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import sb3_haepo.envs  # noqa: F401  (registers the envs)
from sb3_haepo.envs import BanditEnv, RandomWalkEnv


@pytest.mark.parametrize(
    "env_id,kwargs",
    [
        ("sb3_haepo/Bandit-v0", {"n_arms": 5}),
        ("sb3_haepo/Bandit10-v0", {}),
        ("sb3_haepo/Bandit30-v0", {"reward_distribution": "gaussian"}),
        ("sb3_haepo/RandomWalk-v0", {}),
        ("sb3_haepo/RandomWalk-v0", {"horizon": 20_000, "slip_prob": 0.1}),
    ],
)
def test_check_env(env_id, kwargs):
    env = gym.make(env_id, **kwargs)
    gym_check_env(env.unwrapped)
    sb3_check_env(env.unwrapped, warn=True)


def test_registered_sizes():
    assert gym.make("sb3_haepo/Bandit20-v0").unwrapped.n_arms == 20
    assert gym.make("sb3_haepo/Bandit-v0", n_arms=7).action_space.n == 7
    assert gym.make("sb3_haepo/RandomWalk-v0").unwrapped.horizon == 500
    assert gym.make("sb3_haepo/RandomWalk-v0", horizon=10_000).unwrapped.horizon == 10_000


def test_bandit_instance_and_regret():
    env = BanditEnv(n_arms=10, arm_seed=0)
    # Means of np.random.default_rng(0).uniform(size=10), computed by hand once
    expected = [0.637, 0.2698, 0.041, 0.0165, 0.8133, 0.9128, 0.6066, 0.7295, 0.5436, 0.9351]
    np.testing.assert_allclose(env.arm_means, expected, atol=1e-4)
    assert env.optimal_arm == 9
    # The instance does not depend on the reset seed
    env.reset(seed=123)
    np.testing.assert_allclose(env.arm_means, expected, atol=1e-4)
    assert not np.allclose(BanditEnv(n_arms=10, arm_seed=1).arm_means, expected)

    obs, reward, terminated, truncated, info = env.step(np.int64(2))
    assert terminated and not truncated
    np.testing.assert_array_equal(obs, [0.0])
    assert reward in (0.0, 1.0)
    assert info["regret"] == pytest.approx(0.9351 - 0.041, abs=1e-4)
    assert not info["is_success"]
    _, _, _, _, info = env.step(np.int64(9))
    assert info["regret"] == 0.0 and info["is_success"]


def test_bandit_reward_frequencies():
    env = BanditEnv(n_arms=3, arm_seed=0)
    env.reset(seed=0)
    for arm in range(3):
        rewards = [env.step(np.int64(arm))[1] for _ in range(4000)]
        # Bernoulli(mu): mean within 4 standard errors
        assert np.mean(rewards) == pytest.approx(env.arm_means[arm], abs=4 * 0.5 / np.sqrt(4000))
    gaussian = BanditEnv(n_arms=3, arm_seed=0, reward_distribution="gaussian", reward_std=0.0)
    gaussian.reset(seed=0)
    assert gaussian.step(np.int64(1))[1] == pytest.approx(gaussian.arm_means[1])


def test_bandit_bad_values():
    with pytest.raises(ValueError, match="n_arms"):
        BanditEnv(n_arms=1)
    with pytest.raises(ValueError, match="poisson"):
        BanditEnv(reward_distribution="poisson")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="arm"):
        BanditEnv(n_arms=3).step(np.int64(3))


def test_random_walk_dynamics():
    env = RandomWalkEnv(horizon=10, goal_distance=3)
    obs, _ = env.reset(seed=0)
    np.testing.assert_allclose(obs, [0.0, 0.0])
    # Left at the wall stays at 0
    obs, reward, terminated, truncated, info = env.step(np.int64(0))
    np.testing.assert_allclose(obs, [0.0, 0.1])
    assert (reward, terminated, truncated) == (0.0, False, False) and "is_success" not in info
    # right, right, left, right, right: positions 1, 2, 1, 2, 3 (goal)
    positions = []
    for action in (1, 1, 0, 1):
        obs, reward, terminated, truncated, info = env.step(np.int64(action))
        positions.append(info["position"])
        assert reward == 0.0 and not terminated
    obs, reward, terminated, truncated, info = env.step(np.int64(1))
    assert positions == [1, 2, 1, 2]
    np.testing.assert_allclose(obs, [1.0, 0.6], rtol=1e-6)
    assert (reward, terminated, truncated, info["is_success"]) == (1.0, True, False, True)


def test_random_walk_optimum_and_horizon():
    env = RandomWalkEnv(horizon=500, goal_distance=30)
    env.reset(seed=0)
    total, steps, terminated = 0.0, 0, False
    while not terminated:
        _, reward, terminated, truncated, info = env.step(np.int64(1))
        total += reward
        steps += 1
    assert (total, steps, info["is_success"]) == (1.0, 30, True)

    long_env = RandomWalkEnv(horizon=20_000, goal_distance=30)
    long_env.reset(seed=0)
    for t in range(1, 20_001):
        _, reward, terminated, truncated, info = long_env.step(np.int64(0))
        assert reward == 0.0 and not terminated
        assert truncated == (t == 20_000)
    assert info["is_success"] is False


def test_random_walk_slip():
    env = RandomWalkEnv(horizon=10_000, goal_distance=10_000, slip_prob=0.25)
    env.reset(seed=0)
    for _ in range(4000):
        _, _, _, _, info = env.step(np.int64(1))
    # Drift 1 - 2 * 0.25 = 0.5 per step, variance 1 - 0.5**2 = 0.75: 2000 +- 4 std (4 * sqrt(4000 * 0.75) ~ 220)
    assert abs(info["position"] - 2000) < 220


def test_random_walk_bad_values():
    with pytest.raises(ValueError, match="horizon"):
        RandomWalkEnv(horizon=0)
    with pytest.raises(ValueError, match="goal_distance"):
        RandomWalkEnv(goal_distance=0)
    with pytest.raises(ValueError, match="slip_prob"):
        RandomWalkEnv(slip_prob=1.0)
