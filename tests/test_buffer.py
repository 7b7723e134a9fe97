"""
The episode buffer, tested in the style of SB3's ``test_gae.py``: a deterministic env with known episode lengths
and rewards, and a model that records every group it trains on.
"""

from itertools import cycle

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import StopTrainingOnMaxEpisodes
from stable_baselines3.common.env_checker import check_env
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_haepo import DPO, GRPO, HAEPO, EpisodeBuffer
from sb3_haepo.common import buffers
from sb3_haepo.common.buffers import GroupView
from sb3_haepo.common.type_aliases import EpisodeBatch


@pytest.fixture(autouse=True, params=[2, buffers.PAGE_ROWS], ids=["pages-of-2", "default-pages"])
def page_rows(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Every test of this file runs with the default pages and with pages of 2 rows, which every episode spans."""
    monkeypatch.setattr(buffers, "PAGE_ROWS", request.param)
    return request.param


class CountingEnv(gym.Env):
    """
    Observation ``[tag, episode number, t]``; reward ``t + 1`` at step ``t``; episode lengths cycle through
    ``lengths``. Episodes whose number is in ``truncate_episodes`` end by truncation instead of termination.
    An empty ``lengths`` gives an env that never ends.
    """

    def __init__(self, tag: int = 0, lengths: tuple[int, ...] = (3,), truncate_episodes: tuple[int, ...] = ()):
        super().__init__()
        self.observation_space = spaces.Box(low=0.0, high=1e6, shape=(3,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self.tag = tag
        self.lengths = lengths
        self.truncate_episodes = truncate_episodes
        self._length_iter = cycle(lengths) if lengths else None
        self.episode = -1
        self.t = 0
        self.length = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.tag, self.episode, self.t], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        self.length = next(self._length_iter) if self._length_iter is not None else -1
        return self._obs(), {}

    def step(self, action):
        reward = float(self.t + 1)
        self.t += 1
        ended = self.t == self.length
        truncated = ended and self.episode in self.truncate_episodes
        return self._obs(), reward, ended and not truncated, truncated, {}


class RecordingHAEPO(HAEPO):
    """HAEPO that keeps every group it trains on."""

    def _setup_model(self) -> None:
        super()._setup_model()
        self.groups: list[EpisodeBatch] = []

    def train(self) -> None:
        self.groups.append(self.rollout_buffer.get())
        super().train()


def expected_groups(env_lengths, n_episodes, n_groups):
    """Independent simulation: which (env, episode number, length) completes in which group."""
    iters = [cycle(lengths) for lengths in env_lengths]
    state = [[0, 0, next(it)] for it in iters]  # episode number, t, length
    groups, completed = [], []
    while len(groups) < n_groups:
        for env_idx, env_state in enumerate(state):
            env_state[1] += 1
            if env_state[1] == env_state[2]:
                completed.append((env_idx, env_state[0], env_state[2]))
                env_state[0], env_state[1], env_state[2] = env_state[0] + 1, 0, next(iters[env_idx])
        if len(completed) >= n_episodes:
            groups.append(completed)
            completed = []
    return groups


def make_model(env_lengths, n_episodes, gamma=1.0, truncate=(), **kwargs):
    env = DummyVecEnv(
        [lambda i=i, lengths=lengths: CountingEnv(i, lengths, truncate) for i, lengths in enumerate(env_lengths)]
    )
    return RecordingHAEPO(
        "MlpPolicy", env, n_episodes=n_episodes, n_epochs=1, gamma=gamma, policy_kwargs=dict(net_arch=[8]), seed=0, **kwargs
    )


def test_counting_env_is_valid():
    check_env(CountingEnv(0, (3, 5)))


@pytest.mark.parametrize(
    "env_lengths, n_episodes",
    [
        ([(3, 5, 2)], 2),
        ([(4,)], 3),
        ([(3, 5), (7,), (2, 9, 4)], 2),
        ([(3, 5), (7,), (2, 9, 4)], 5),
        ([(11,), (1, 2), (6, 3)], 4),
    ],
)
@pytest.mark.parametrize("gamma", [1.0, 0.9])
@pytest.mark.filterwarnings("ignore:RecordingHAEPO.learn")
def test_steps_land_in_exactly_one_group(env_lengths, n_episodes, gamma):
    n_groups = 6
    model = make_model(env_lengths, n_episodes, gamma=gamma)
    while len(model.groups) < n_groups:
        # Budgets that end mid-group: each learn() stops on its budget, and the next one completes the group
        model.learn(model.num_timesteps % 5 + 1, reset_num_timesteps=False)
    expected = expected_groups(env_lengths, n_episodes, len(model.groups))
    seen: set[tuple[int, int, int]] = set()
    for batch, group in zip(model.groups, expected, strict=True):
        obs = batch.observations
        assert isinstance(obs, np.ndarray)
        index = batch.episode_index.cpu().numpy()
        # Steps are ordered episode by episode
        assert np.all(np.diff(index) >= 0)
        assert len(batch.returns) == len(group)
        for k, (env_idx, episode, length) in enumerate(group):
            rows = obs[index == k]
            assert np.all(rows[:, 0] == env_idx) and np.all(rows[:, 1] == episode)
            # Every step of the episode, in time order: nothing lost, nothing from another episode
            np.testing.assert_array_equal(rows[:, 2], np.arange(length))
            assert int(batch.lengths[k]) == length
            assert batch.env_indices[k] == env_idx
            # R = sum_t gamma^t (t + 1)
            expected_return = sum(gamma**t * (t + 1) for t in range(length))
            assert np.isclose(float(batch.returns[k]), expected_return, rtol=1e-5)
            for t in range(length):
                key = (env_idx, episode, t)
                assert key not in seen, f"step {key} used twice"
                seen.add(key)
    used = sum(len(batch.episode_index) for batch in model.groups)
    # Every collected step was used once or is still held (in an unfinished episode or an untrained group)
    assert used == len(seen)
    buffer = model.rollout_buffer
    # (after an update, the trained group stays in the buffer until the next rollout starts)
    held_completed = 0 if model._group_ready else buffer.n_completed_steps
    assert used + held_completed + buffer.n_in_progress_steps == model.num_timesteps
    assert model._n_discarded_steps == 0


def test_episodes_spanning_rollouts_are_carried_over():
    # One env with a 7-step episode beside one with 2-step episodes: with M=2, the long episode spans rollouts
    model = make_model([(2,), (7,)], n_episodes=2)
    model.learn(40)
    long_episodes = [
        batch.observations[batch.episode_index.cpu().numpy() == k]  # type: ignore[index]
        for batch in model.groups
        for k in range(len(batch.returns))
        if batch.env_indices[k] == 1
    ]
    assert len(long_episodes) >= 2
    for rows in long_episodes:
        np.testing.assert_array_equal(rows[:, 2], np.arange(7))


def test_truncation_ends_episode_and_is_flagged():
    model = make_model([(3,)], n_episodes=4, truncate=(1, 3))
    model.learn(12)
    batch = model.groups[0]
    np.testing.assert_array_equal(batch.truncated, [False, True, False, True])
    np.testing.assert_array_equal(batch.lengths.cpu().numpy(), [3, 3, 3, 3])


def test_never_ending_env_is_cut_and_counted():
    model = make_model([()], n_episodes=2, max_episode_steps=5)
    model.learn(30)
    assert model._n_cut_episodes >= 6
    for batch in model.groups:
        np.testing.assert_array_equal(batch.lengths.cpu().numpy(), [5, 5])
        assert batch.truncated.all()
        # A segment is 5 consecutive steps of the env's single episode
        t = batch.observations[:, 2]  # type: ignore[index]
        np.testing.assert_array_equal(np.diff(t.reshape(2, 5), axis=1), np.ones((2, 4)))


def test_external_reset_discards_and_counts_unfinished_steps():
    # Env 0 ends every 2 steps, env 1 every 10: with M=2 the first rollout stops at step 4 with 4 steps of env 1 held
    model = make_model([(2,), (10,)], n_episodes=2)
    model.learn(8)
    assert model.num_timesteps == 8
    assert model.rollout_buffer.n_in_progress_steps == 4
    # A new learn() resets the envs: the 4 steps of env 1 can never complete. They are dropped and counted.
    model.learn(8)
    assert model._n_discarded_steps == 4
    batch = model.groups[-1]
    # Env 0 was reset by learn(): its episode counter jumped from 2 to 3
    np.testing.assert_array_equal(batch.observations[:, 1:], [[3, 0], [3, 1], [4, 0], [4, 1]])  # type: ignore[index]


def test_buffer_growth_and_dict_observations():
    obs_space = spaces.Dict({"img": spaces.Box(0, 255, (4, 4, 1), np.uint8), "vec": spaces.Box(-1, 1, (2,), np.float32)})
    buffer = EpisodeBuffer(obs_space, spaces.Discrete(3), n_envs=2, initial_capacity=2)
    for t in range(50):
        obs = {"img": np.full((2, 4, 4, 1), t, np.uint8), "vec": np.full((2, 2), t / 100, np.float32)}
        buffer.add(obs, np.array([t % 3, (t + 1) % 3]), np.array([1.0, 2.0]), np.zeros(2))
        if t in (9, 29):
            buffer.end_episodes(np.array([True, False]))
    assert buffer.capacity >= 100 and buffer.size == 100
    assert buffer.observations["img"].dtype == np.uint8  # type: ignore[index]
    batch = buffer.get()
    np.testing.assert_array_equal(batch.lengths.cpu().numpy(), [10, 20])
    np.testing.assert_allclose(batch.returns.cpu().numpy(), [10.0, 20.0])
    assert isinstance(batch.observations, dict)
    np.testing.assert_array_equal(batch.observations["img"][:, 0, 0, 0], np.arange(30))
    removed = buffer.pop_completed()
    assert removed == 30 and buffer.size == 70 and buffer.n_completed == 0
    # The carried-over steps keep their order and episode
    assert buffer.n_in_progress_steps == 70


def test_buffer_errors():
    buffer = EpisodeBuffer(spaces.Box(-1, 1, (2,)), spaces.Discrete(2), n_envs=1)
    with pytest.raises(ValueError, match="no completed episode"):
        buffer.get()
    with pytest.raises(ValueError, match="Env 0 has no step"):
        buffer.end_episodes(np.array([True]))


def test_stop_mid_rollout_keeps_collected_steps():
    """A callback that stops training mid-rollout loses no step: the next learn() completes the same group."""
    model = make_model([(3,)], n_episodes=4)
    model.learn(1000, callback=StopTrainingOnMaxEpisodes(max_episodes=2))
    assert model.num_timesteps == 6 and model.groups == []
    assert model.rollout_buffer.n_completed == 2
    model.learn(6, reset_num_timesteps=False)
    batch = model.groups[0]
    # Episodes 0-3 of the env, every step once, although training stopped after episode 1
    np.testing.assert_array_equal(batch.observations[:, 1], np.repeat([0, 1, 2, 3], 3))  # type: ignore[index]
    np.testing.assert_array_equal(batch.observations[:, 2], np.tile([0, 1, 2], 4))  # type: ignore[index]
    assert model.num_timesteps == 12


@pytest.mark.parametrize("chunk_steps", [1, 4, 9, 1000])
def test_group_view_reads_the_group_in_place(chunk_steps):
    """
    GroupView's chunks, of any size, run across episodes and envs in get()'s step order: the same observations,
    actions, rewards and episode indices, read from the buffer's rows (also after pop_completed moved the episodes
    in progress to the front of their envs' rows); a slot written chunk by chunk reads back in step order.
    """
    buffer = EpisodeBuffer(spaces.Box(0.0, 1e6, (2,), np.float32), spaces.Box(-1, 1, (2,)), n_envs=3, initial_capacity=3)
    step = 0
    ends = {2: [True, False, False], 4: [True, True, False], 5: [False, False, True], 9: [True, False, True]}
    for t in range(12):
        if t == 7:
            assert buffer.pop_completed() > 0
        rows = np.arange(step, step + 3, dtype=np.float32)
        buffer.add(np.stack([rows, -rows], 1), np.stack([rows, rows], 1), rows, -rows)
        step += 3
        if t in ends:
            buffer.end_episodes(np.array(ends[t]))
    batch = buffer.get()
    view = GroupView(buffer)
    assert view.n_steps == len(batch.episode_index) and th.equal(view.lengths, batch.lengths)
    assert th.equal(view.returns, batch.returns)
    chunks = list(view.chunks(chunk_steps))
    assert [c.steps.start for c in chunks] == list(range(0, view.n_steps, chunk_steps))
    np.testing.assert_array_equal(np.concatenate([view.observations(c) for c in chunks]), batch.observations)
    th.testing.assert_close(th.cat([view.tensor(buffer.actions, c) for c in chunks]), batch.actions)
    th.testing.assert_close(th.cat([view.tensor(buffer.rewards, c) for c in chunks]), batch.rewards)
    th.testing.assert_close(th.cat([c.episode_index for c in chunks]), batch.episode_index)
    slot = view.slot("kl_terms")
    for chunk in chunks:
        slot[chunk.steps] = view.tensor(buffer.rewards, chunk)
    th.testing.assert_close(view.slot("kl_terms"), batch.rewards)
    with pytest.raises(ValueError, match=r"Unknown update slot 'returns', allowed: \('advantages', 'start_log_probs'"):
        view.slot("returns")


def test_memory_follows_the_steps_held_when_one_env_runs_long(page_rows):
    """
    Env 0 runs one 3,000-step episode while the 7 others end one every 5 steps, and a group is taken every 20
    episodes: the pages allocated stay within twice the most steps held at once, plus two pages per env (envs that
    each kept a row as long as the longest env would need 8 times the long episode).
    """
    buffer = EpisodeBuffer(spaces.Box(-1, 1, (4,)), spaces.Discrete(2), n_envs=8, initial_capacity=1)
    most_held = 0
    for t in range(3000):
        buffer.add(np.zeros((8, 4)), np.zeros(8), np.ones(8), np.zeros(8))
        most_held = max(most_held, buffer.size)
        ended = np.array([t == 2999] + [(t + 1) % 5 == 0] * 7)
        if ended.any():
            buffer.end_episodes(ended)
        if buffer.n_completed >= 20 and t < 2999:
            n_held = buffer.size
            assert buffer.pop_completed() == n_held - buffer.n_in_progress_steps
    assert buffer.n_in_progress_steps == 0 and 3000 in buffer.get().lengths.tolist()
    assert most_held < 3000 + 7 * 40
    assert buffer.capacity <= 2 * (most_held + 2 * 8 * page_rows), (buffer.capacity, most_held)


@pytest.mark.parametrize("algo", [HAEPO, GRPO, DPO])
@pytest.mark.parametrize(("lengths", "expected"), [((1, 2, 3, 4), 46**0.5 / 2), ((3,), 0.0)])
def test_logged_return_std(algo, lengths, expected):
    """train/return_std is the group's population std of returns: episodes of 1-4 steps return 1, 3, 6 and 10."""
    model = algo("MlpPolicy", CountingEnv(lengths=lengths), n_episodes=4, gamma=1.0, n_epochs=1, seed=0)
    model.learn(sum(lengths) * 4 // len(lengths))
    assert model._n_train_calls == 1
    assert model.logger.name_to_value["train/return_std"] == pytest.approx(expected, abs=1e-6)


def test_logged_return_std_is_zero_for_equal_discounted_returns():
    """Equal float32 returns whose float32 mean is inexact (gamma 0.99, 8 episodes of 7 steps) still log exactly 0."""
    returns = th.full((8,), sum(0.99**t * (t + 1) for t in range(7)), dtype=th.float32)
    assert float(returns.std(unbiased=False)) > 0  # the float32 rounding the float64 metric avoids
    model = HAEPO("MlpPolicy", CountingEnv(lengths=(7,)), n_episodes=8, gamma=0.99, n_epochs=1, seed=0)
    model.learn(56)
    assert model.logger.name_to_value["train/return_std"] == 0.0
