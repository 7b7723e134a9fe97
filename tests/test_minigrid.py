import importlib.util
import os
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import sb3_haepo.envs  # noqa: F401  (registers the envs)
from sb3_haepo import HAEPO
from sb3_haepo.envs import (
    MINIGRID_LONG_HORIZON_TASKS,
    MINIGRID_WRAPPED_ENV_IDS,
    MiniGridCNN,
    MiniGridObsWrapper,
    make_minigrid_env,
    minigrid_cnn_policy_kwargs,
)

if os.environ.get("CI"):
    # CI installs the minigrid extra: a missing package must fail there, not skip
    import minigrid  # noqa: F401
else:
    pytest.importorskip("minigrid", reason="needs the minigrid extra: pip install 'sb3_haepo[minigrid]'")

from minigrid.wrappers import FlatObsWrapper, ImgObsWrapper

TASKS = ("MiniGrid-DoorKey-16x16-v0", "MiniGrid-KeyCorridorS6R3-v0")
SMALL = dict(n_episodes=4, n_epochs=2, seed=0, device="cpu")


# One torch thread for every test of this file (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_episode_limits():
    # DoorKey: 10 * size ** 2; KeyCorridor: 30 * room_size ** 2
    assert MINIGRID_LONG_HORIZON_TASKS == {"MiniGrid-DoorKey-16x16-v0": 2560, "MiniGrid-KeyCorridorS6R3-v0": 1080}
    for env_id, max_steps in MINIGRID_LONG_HORIZON_TASKS.items():
        assert make_minigrid_env(env_id).unwrapped.max_steps == max_steps
        assert make_minigrid_env(env_id, max_steps=40).unwrapped.max_steps == 40


@pytest.mark.parametrize("env_id", TASKS)
@pytest.mark.parametrize("observation", ["flat", "image"])
def test_check_env_and_spaces(env_id, observation):
    env = make_minigrid_env(env_id, observation)
    with warnings.catch_warnings():
        # Gymnasium: "the env is wrapped" (it is on purpose); SB3: a 7x7 image is too small for NatureCNN
        warnings.simplefilter("ignore")
        gym_check_env(env)
        sb3_check_env(env, warn=True)
    if observation == "flat":
        assert env.observation_space == spaces.Box(0, 255, (7 * 7 * 3 + 96 * 28,), np.uint8)
    else:
        assert env.observation_space == spaces.Box(0, 255, (7, 7, 3), np.uint8)
    assert env.action_space == spaces.Discrete(7)
    # The same values as minigrid's own wrapper on the same layout
    reference = (FlatObsWrapper if observation == "flat" else ImgObsWrapper)(gym.make(env_id))
    obs, _ = env.reset(seed=3)
    reference_obs, _ = reference.reset(seed=3)
    np.testing.assert_array_equal(obs, reference_obs)
    for action in (2, 1, 2, 2):
        obs = env.step(action)[0]
        np.testing.assert_array_equal(obs, reference.step(action)[0])
    # The spec records the wrapper, so the env can be made again from it
    remade = gym.make(env.spec)
    np.testing.assert_array_equal(remade.reset(seed=3)[0], reference.reset(seed=3)[0])


def test_registered_wrapped_ids():
    assert MINIGRID_WRAPPED_ENV_IDS == {
        "sb3_haepo/MiniGrid-DoorKey-16x16-Flat-v0": ("MiniGrid-DoorKey-16x16-v0", "flat"),
        "sb3_haepo/MiniGrid-DoorKey-16x16-Image-v0": ("MiniGrid-DoorKey-16x16-v0", "image"),
        "sb3_haepo/MiniGrid-KeyCorridorS6R3-Flat-v0": ("MiniGrid-KeyCorridorS6R3-v0", "flat"),
        "sb3_haepo/MiniGrid-KeyCorridorS6R3-Image-v0": ("MiniGrid-KeyCorridorS6R3-v0", "image"),
    }
    env = gym.make("sb3_haepo/MiniGrid-KeyCorridorS6R3-Image-v0", max_steps=30)
    assert env.observation_space.shape == (7, 7, 3) and env.unwrapped.max_steps == 30
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gym_check_env(env)
    flat = gym.make("sb3_haepo/MiniGrid-DoorKey-16x16-Flat-v0")
    assert flat.observation_space.shape == (2835,) and flat.unwrapped.max_steps == 2560


def test_reward_and_truncation():
    env = make_minigrid_env("MiniGrid-DoorKey-16x16-v0", "image")
    grid_env = env.unwrapped
    env.reset(seed=0)
    # The goal is the bottom-right inner cell (14, 14); put the agent left of it, facing right (direction 0), after
    # 99 steps: one step forward succeeds with reward 1 - 0.9 * 100 / 2560
    assert grid_env.grid.get(14, 14).type == "goal"
    grid_env.agent_pos = (13, 14)
    grid_env.agent_dir = 0
    grid_env.step_count = 99
    _, reward, terminated, truncated, _ = env.step(2)
    assert (terminated, truncated) == (True, False)
    assert reward == pytest.approx(1 - 0.9 * 100 / 2560)

    # Turning in place until the limit: truncated at max_steps, reward 0
    # (a NumPy integer is passed on to MiniGrid as a Python int, which MiniGrid asks for)
    short = make_minigrid_env("MiniGrid-KeyCorridorS6R3-v0", "flat", max_steps=np.int64(5))
    short.reset(seed=0)
    outcomes = [short.step(0)[1:4] for _ in range(5)]
    assert outcomes == [(0, False, False)] * 4 + [(0, False, True)]


def test_cnn_extractor_shapes():
    channels_first = spaces.Box(0, 255, (3, 7, 7), np.uint8)
    extractor = MiniGridCNN(channels_first, features_dim=128)
    # 3 -> 16 -> 32 -> 64 channels with 2x2 kernels (7 -> 6 -> 5 -> 4), then 4 * 4 * 64 = 1024 -> 128
    assert sum(p.numel() for p in extractor.parameters()) == (3 * 16 * 4 + 16) + (16 * 32 * 4 + 32) + (32 * 64 * 4 + 64) + (
        1024 * 128 + 128
    )
    batch = th.as_tensor(np.stack([channels_first.sample() for _ in range(5)]))
    features = extractor(batch)
    assert features.shape == (5, 128) and bool((features >= 0).all())
    # A channels-last space is transposed inside: same network, same features
    channels_last = MiniGridCNN(spaces.Box(0, 255, (7, 7, 3), np.uint8), features_dim=128)
    channels_last.load_state_dict(extractor.state_dict())
    th.testing.assert_close(channels_last(batch.permute(0, 2, 3, 1)), features)
    assert MiniGridCNN(spaces.Box(0, 255, (3, 9, 5), np.uint8), features_dim=8)(th.zeros(2, 3, 9, 5)).shape == (2, 8)
    with pytest.raises(ValueError, match="3-dimensional"):
        MiniGridCNN(spaces.Box(0, 255, (147,), np.uint8))
    with pytest.raises(ValueError, match="at least 4 x 4"):
        MiniGridCNN(spaces.Box(0, 255, (3, 3, 3), np.uint8))
    with pytest.raises(ValueError, match="features_dim"):
        MiniGridCNN(channels_first, features_dim=0)


def test_haepo_learns_on_flat_observations():
    env = make_minigrid_env("MiniGrid-DoorKey-16x16-v0", "flat", max_steps=16)
    model = HAEPO("MlpPolicy", env, policy_kwargs=dict(net_arch=[16]), **SMALL)
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(300)
    assert model.num_timesteps >= 300
    assert any(not th.equal(a, b) for a, b in zip(before, model.policy.parameters(), strict=True))
    action, _ = model.predict(env.reset(seed=0)[0])
    assert env.action_space.contains(int(action))


@pytest.mark.parametrize("policy", ["CnnPolicy", "MlpPolicy"])
def test_haepo_learns_with_the_cnn(policy):
    env = make_minigrid_env("MiniGrid-KeyCorridorS6R3-v0", "image", max_steps=16)
    model = HAEPO(policy, env, policy_kwargs=dict(minigrid_cnn_policy_kwargs(16), net_arch=[16]), **SMALL)
    assert isinstance(model.policy.features_extractor, MiniGridCNN)
    # SB3 transposes the 7x7x3 view to channels-first and, with normalize_images=False, feeds the raw indices
    assert model.observation_space.shape == (3, 7, 7) and not model.policy.normalize_images
    model.learn(300)
    assert model.num_timesteps >= 300
    obs = model.get_env().reset()
    assert model.policy.extract_features(model.policy.obs_to_tensor(obs)[0]).shape == (1, 16)


def test_bad_values():
    with pytest.raises(ValueError, match="Unknown observation 'rgb'"):
        make_minigrid_env("MiniGrid-DoorKey-16x16-v0", "rgb")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"max_steps must be an integer >= 1 or None \(the env's own limit\), got 0"):
        make_minigrid_env("MiniGrid-DoorKey-16x16-v0", max_steps=0)
    with pytest.raises(ValueError, match="'CartPole-v1' is not an environment of the minigrid package"):
        make_minigrid_env("CartPole-v1")
    with pytest.raises(ValueError, match="Unknown observation"):
        MiniGridObsWrapper(gym.make("MiniGrid-DoorKey-16x16-v0"), observation="dict")  # type: ignore[arg-type]


def test_shortest_solution_search_of_the_docs():
    # scripts/env_baselines.py finds the optimum figures of the docs by breadth-first search; its plans must solve
    # the real env with the reward of their length
    path = Path(__file__).parent.parent / "scripts" / "env_baselines.py"
    spec = importlib.util.spec_from_file_location("env_baselines", path)
    assert spec is not None and spec.loader is not None
    baselines = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(baselines)
    for env_id, expected_length in (("MiniGrid-DoorKey-16x16-v0", 29), ("MiniGrid-KeyCorridorS6R3-v0", 39)):
        env = make_minigrid_env(env_id, "image")
        env.reset(seed=0)
        plan = baselines.LayoutSearch(env).solve()
        assert len(plan) == expected_length
        rewards = [env.step(action)[1:3] for action in plan]
        assert all(not terminated for _, terminated in rewards[:-1])
        reward, terminated = rewards[-1]
        assert terminated and reward == pytest.approx(1 - 0.9 * expected_length / env.unwrapped.max_steps)
