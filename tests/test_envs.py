import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import sb3_haepo.envs  # noqa: F401  (registers the envs)
from sb3_haepo.envs import (
    DEEP_SEA_ENV_IDS,
    LONG_RANDOM_WALKS,
    BanditEnv,
    DeepSeaEnv,
    RandomWalkEnv,
    play_actions,
    success_statistics,
)


@pytest.mark.parametrize(
    "env_id,kwargs",
    [
        ("sb3_haepo/Bandit-v0", {"n_arms": 5}),
        ("sb3_haepo/Bandit10-v0", {}),
        ("sb3_haepo/Bandit30-v0", {"reward_distribution": "gaussian"}),
        ("sb3_haepo/RandomWalk-v0", {}),
        ("sb3_haepo/RandomWalk-v0", {"horizon": 20_000, "slip_prob": 0.1}),
        ("sb3_haepo/RandomWalk1k-v0", {}),
        ("sb3_haepo/RandomWalk100k-v0", {}),
        ("sb3_haepo/DeepSea-v0", {"size": 3}),
        ("sb3_haepo/DeepSea10-v0", {}),
        ("sb3_haepo/DeepSea100-v0", {"mapping_seed": 7}),
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


def test_success_statistics_hand_computed():
    # H = 3, D = 2, random policy (r = 1/2): RR reaches the goal at step 2 (1/4), LRR at step 3 (left at the wall
    # stays at 0: 1/8); RLR ends at 1. Success 3/8, mean steps (2/4 + 3/8) / (3/8) = 7/3, mean length 7/8 + 5/8 * 3
    stats = success_statistics(horizon=3, goal_distance=2, slip_prob=0.0, right_prob=0.5)
    assert stats.success_rate == pytest.approx(3 / 8)
    assert stats.mean_steps_to_goal == pytest.approx(7 / 3)
    assert stats.mean_episode_length == pytest.approx(2.75)
    # Slip 0.25, always right: two effective right moves with probability 0.75 ** 2; every episode lasts 2 steps
    assert success_statistics(2, 2, slip_prob=0.25) == pytest.approx((0.5625, 2.0, 2.0))
    # The random policy ignores the slip (it is symmetric)
    assert success_statistics(3, 2, slip_prob=0.3, right_prob=0.5) == pytest.approx((3 / 8, 7 / 3, 2.75))
    assert success_statistics(5, 1) == (1.0, 1.0, 1.0)
    never = success_statistics(5, 1, right_prob=0.0)
    assert never.success_rate == 0.0 and np.isnan(never.mean_steps_to_goal) and never.mean_episode_length == 5.0
    with pytest.raises(ValueError, match="right_prob"):
        success_statistics(5, 1, right_prob=1.5)
    with pytest.raises(ValueError, match="horizon"):
        success_statistics(0, 1)


def test_long_random_walks_registered():
    expected = {
        "sb3_haepo/RandomWalk1k-v0": (1_000, 110, 0.4),
        "sb3_haepo/RandomWalk10k-v0": (10_000, 350, 0.468),
        "sb3_haepo/RandomWalk100k-v0": (100_000, 1_100, 0.49),
    }
    assert set(LONG_RANDOM_WALKS) == set(expected)
    for env_id, (horizon, goal_distance, slip_prob) in expected.items():
        env = gym.make(env_id)
        assert env.spec is not None and env.spec.max_episode_steps is None  # the env enforces its horizon
        walk = env.unwrapped
        assert (walk.horizon, walk.goal_distance, walk.slip_prob) == (horizon, goal_distance, slip_prob)
        # One problem at three resolutions: goal ~3.5 random-walk standard deviations away, and the optimum's
        # drift-based time D / (1 - 2 slip) between half and 0.6 of the horizon
        assert 3.4 < goal_distance / np.sqrt(horizon) < 3.6
        assert 0.5 * horizon < goal_distance / (1 - 2 * slip_prob) < 0.6 * horizon
    # The documented exact figures of the 10k variant (the 1k one is simulated below)
    optimum = success_statistics(10_000, 350, 0.468)
    assert optimum.success_rate == pytest.approx(0.99916, abs=1e-5)
    assert optimum.mean_steps_to_goal == pytest.approx(5350.1, abs=0.1)
    assert success_statistics(10_000, 350, 0.468, right_prob=0.5).success_rate == pytest.approx(9.125e-4, rel=1e-3)


def test_random_walk_1k_simulated():
    env = gym.make("sb3_haepo/RandomWalk1k-v0").unwrapped
    exact_optimum = success_statistics(1_000, 110, 0.4)
    exact_random = success_statistics(1_000, 110, 0.4, right_prob=0.5)
    assert exact_optimum.success_rate == pytest.approx(0.99910, abs=1e-5)
    assert exact_optimum.mean_steps_to_goal == pytest.approx(539.5, abs=0.1)
    assert exact_random.success_rate == pytest.approx(9.44e-4, rel=1e-3)

    # Always right, 100 episodes: the steps to the goal have a standard deviation of about 115 (sqrt(D var / drift^3)
    # = sqrt(110 * 0.96 / 0.2^3)), so their mean is 539.5 within 4 * 11.5
    env.reset(seed=0)
    steps_to_goal = []
    for _ in range(100):
        env.reset()
        steps, terminated, truncated = 0, False, False
        while not (terminated or truncated):
            _, reward, terminated, truncated, info = env.step(np.int64(1))
            steps += 1
        assert info["is_success"] and reward == 1.0 and steps < 1_000
        steps_to_goal.append(steps)
    assert abs(np.mean(steps_to_goal) - exact_optimum.mean_steps_to_goal) < 46

    # Uniformly random, 1,000 episodes (about 10^6 steps): 0.94 successes expected; 5 or more has probability 0.3%
    actions = np.random.default_rng(0).integers(2, size=1_000 * 1_000)
    env.reset(seed=1)
    successes, index = 0, 0
    for _ in range(1_000):
        env.reset()
        terminated = truncated = False
        while not (terminated or truncated):
            _, _, terminated, truncated, info = env.step(actions[index])
            index += 1
        successes += int(info["is_success"])
    assert successes < 5


def test_deep_sea_registered():
    assert DEEP_SEA_ENV_IDS == ("sb3_haepo/DeepSea10-v0", "sb3_haepo/DeepSea30-v0", "sb3_haepo/DeepSea100-v0")
    for env_id, size in zip(DEEP_SEA_ENV_IDS, (10, 30, 100), strict=True):
        env = gym.make(env_id)
        assert env.unwrapped.size == size and env.unwrapped.mapping_seed == 42
        assert env.spec is not None and env.spec.max_episode_steps is None
        assert env.observation_space.shape == (size * size,) and env.observation_space.dtype == np.float32
    assert gym.make("sb3_haepo/DeepSea-v0").unwrapped.size == 10
    assert gym.make("sb3_haepo/DeepSea-v0", size=5).unwrapped.size == 5


def _one_hot(size, row, column):
    obs = np.zeros(size * size, dtype=np.float32)
    obs[row * size + column] = 1.0
    return obs


def test_deep_sea_dynamics_by_hand():
    env = DeepSeaEnv(size=3, mapping_seed=42)
    # numpy.random.RandomState(42).binomial(1, 0.5, (3, 3)), read once: the action that moves right per cell
    np.testing.assert_array_equal(env.action_mapping, [[0, 1, 1], [1, 0, 0], [0, 1, 1]])
    cost = 0.01 / 3

    # The treasure path: right in (0, 0), (1, 1), (2, 2) = actions 0, 0, 1
    obs, info = env.reset(seed=0)
    np.testing.assert_array_equal(obs, _one_hot(3, 0, 0))
    assert info == {}
    rewards = []
    for action, (row, column) in zip((0, 0), ((1, 1), (2, 2)), strict=True):
        obs, reward, terminated, truncated, info = env.step(np.int64(action))
        np.testing.assert_array_equal(obs, _one_hot(3, row, column))
        assert (terminated, truncated, info) == (False, False, {})
        rewards.append(reward)
    obs, reward, terminated, truncated, info = env.step(np.int64(1))
    rewards.append(reward)
    np.testing.assert_array_equal(obs, np.zeros(9, dtype=np.float32))
    assert (terminated, truncated, info) == (True, False, {"is_success": True})
    assert rewards == pytest.approx([-cost, -cost, 1.0 - cost])
    assert sum(rewards) == pytest.approx(env.optimal_return) and env.optimal_return == pytest.approx(0.99)

    # Action 1 in (0, 0) is "left": column 0 stays 0 and costs nothing; then right in (1, 0) (action 1) to (2, 1),
    # right in (2, 1) (action 1) leaves the grid in column 2 but was not taken in column 2: no treasure
    env.reset(seed=1)
    steps = [env.step(np.int64(action)) for action in (1, 1, 1)]
    assert [step[1] for step in steps] == pytest.approx([0.0, -cost, -cost])
    np.testing.assert_array_equal(steps[0][0], _one_hot(3, 1, 0))
    np.testing.assert_array_equal(steps[1][0], _one_hot(3, 2, 1))
    assert steps[2][2] and steps[2][4] == {"is_success": False}
    assert (env.row, env.column) == (3, 2)

    # Left from the diagonal: right in (0, 0) then action 1 in (1, 1) is "left" back to column 0
    env.reset()
    env.step(np.int64(0))
    _, reward, _, _, _ = env.step(np.int64(1))
    assert reward == 0.0 and (env.row, env.column) == (2, 0)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.int64(0))
        env.step(np.int64(0))

    # Debug mapping: action 1 is right everywhere
    plain = DeepSeaEnv(size=3, randomize_actions=False)
    plain.reset()
    total = sum(plain.step(np.int64(1))[1] for _ in range(3))
    assert total == pytest.approx(0.99)


def test_deep_sea_mapping_fixed_by_mapping_seed():
    first, second = DeepSeaEnv(size=20, mapping_seed=3), DeepSeaEnv(size=20, mapping_seed=3)
    np.testing.assert_array_equal(first.action_mapping, second.action_mapping)
    # The reset seed does not change the MDP
    first.reset(seed=0)
    second.reset(seed=12345)
    np.testing.assert_array_equal(first.action_mapping, second.action_mapping)
    # Another mapping_seed is another MDP (400 cells: equal mappings have probability 2 ** -400)
    assert not np.array_equal(first.action_mapping, DeepSeaEnv(size=20, mapping_seed=4).action_mapping)
    # About half the cells map action 1 to "right"
    assert 0.4 < first.action_mapping.mean() < 0.6
    # Following the mapping along the diagonal finds the treasure in every registered size
    for env_id in DEEP_SEA_ENV_IDS:
        env = gym.make(env_id).unwrapped
        env.reset(seed=0)
        total = 0.0
        for row in range(env.size):
            _, reward, terminated, _, info = env.step(np.int64(env.action_mapping[row, row]))
            total += reward
        assert terminated and info["is_success"] and total == pytest.approx(0.99)


def test_deep_sea_random_policy():
    # 2 ** -3 = 1/8 success for N = 3, whatever the mapping: 8,000 episodes, 1,000 expected (std 30)
    env = DeepSeaEnv(size=3, mapping_seed=0)
    actions = np.random.default_rng(0).integers(2, size=(8_000, 3))
    env.reset(seed=0)
    successes, total = play_actions(env, actions)
    assert abs(successes - 1_000) < 4 * 30
    # Expected return 2 ** -3 - 0.01 / 2 per episode
    assert total / 8_000 == pytest.approx(1 / 8 - 0.005, abs=4 * 0.33 / np.sqrt(8_000))


def test_deep_sea_bad_values():
    with pytest.raises(ValueError, match="size must be an integer >= 1, got 0"):
        DeepSeaEnv(size=0)
    with pytest.raises(ValueError, match=r"mapping_seed.*None"):
        DeepSeaEnv(mapping_seed=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="move_cost"):
        DeepSeaEnv(move_cost=-0.1)
    with pytest.raises(ValueError, match="randomize_actions"):
        DeepSeaEnv(randomize_actions="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="action must be 0 or 1, got 2"):
        DeepSeaEnv(size=3).step(np.int64(2))


def test_minigrid_is_optional():
    # Without the minigrid package (blocked in sys.modules), the envs still import and register; making a MiniGrid
    # env says which extra to install
    code = """
import sys
sys.modules["minigrid"] = None
import gymnasium as gym
import sb3_haepo.envs
assert "sb3_haepo/MiniGrid-DoorKey-16x16-Flat-v0" in gym.registry
for make in (lambda: gym.make("sb3_haepo/MiniGrid-DoorKey-16x16-Flat-v0"),
             lambda: sb3_haepo.envs.make_minigrid_env("MiniGrid-DoorKey-16x16-v0")):
    try:
        make()
    except ImportError as error:
        assert 'pip install "sb3_haepo[minigrid]"' in str(error), error
    else:
        raise AssertionError("no ImportError")
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
