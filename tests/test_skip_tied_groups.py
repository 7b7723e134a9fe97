"""
``skip_tied_groups`` (docs/METHOD.md section 15): which groups carry a return signal, by hand and through the
advantages the update computes; no optimizer step on a group without one (batch and streamed paths, both credits),
while the default update does move the policy there; the counters and save/load (bad input: tests/test_checks.py).
"""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium.wrappers import TransformReward

from sb3_haepo import HAEPO
from sb3_haepo.common.utils import has_return_signal, reward_to_go_advantages, reward_to_go_advantages_into
from sb3_haepo.envs.random_walk import RandomWalkEnv


def test_has_return_signal_by_hand():
    # Episode credit: the returns alone
    assert not has_return_signal(th.tensor([0.0, 0.0, 0.0]))
    assert not has_return_signal(th.tensor([-200.0, -200.0]))
    assert has_return_signal(th.tensor([0.0, 0.0, 1.0]))
    # Per-step credit: the advantages alone, whatever the returns
    assert not has_return_signal(th.tensor([1.0, 2.0]), th.zeros(5))
    assert has_return_signal(th.tensor([1.0, 1.0]), th.tensor([0.0, 0.0, -1e-30, 0.0]))


@pytest.mark.parametrize("reward", [0.0, -1.0, -0.1, 0.99])
def test_equal_reward_sequences_give_exactly_zero_advantages(reward):
    # 7 episodes of the same 200 rewards (a task that truncates every episode before its goal, e.g. MountainCar's
    # -1 per step): their float32 G_t are equal, the float64 baseline of equal values is exact, A is exactly 0
    lengths = th.full((7,), 200)
    rewards = th.full((1400,), reward)
    advantages = reward_to_go_advantages(rewards, lengths, 0.99)
    assert not bool(advantages.any())
    assert not has_return_signal(th.full((7,), reward), advantages)
    # The in-place version, which the streamed update uses
    episodes = [np.full(200, reward, dtype=np.float32) for _ in range(7)]
    reward_to_go_advantages_into(episodes, episodes, 0.99, chunk_steps=64)
    assert not any(episode.any() for episode in episodes)


def test_equal_returns_at_different_times_carry_a_signal():
    # gamma 1: both episodes return 1, but G_t differs at t = 1 (0 against 1): per-step credit has a signal,
    # episode credit does not. Deviations (0, -0.5, 0, 0.5), population std sqrt(0.5 / 4): A = (0, -sqrt 2, 0, sqrt 2)
    rewards = th.tensor([1.0, 0.0, 0.0, 1.0])
    lengths = th.tensor([2, 2])
    advantages = reward_to_go_advantages(rewards, lengths, 1.0)
    assert th.allclose(advantages, th.tensor([0.0, -(2**0.5), 0.0, 2**0.5]), atol=1e-6)
    assert has_return_signal(th.tensor([1.0, 1.0]), advantages)
    assert not has_return_signal(th.tensor([1.0, 1.0]))


def _never_succeeds(reward_per_step: float = 0.0) -> gym.Env:
    # A walk whose goal is out of reach within the horizon: every episode is 20 steps of the same reward
    env = RandomWalkEnv(horizon=20, goal_distance=1000)
    return TransformReward(env, lambda r: r + reward_per_step) if reward_per_step else env


# (keyword arguments, what they exercise): the default clipped minibatches, the exact update streamed from the buffer
# (a group of 4 x 20 steps read in chunks of 16), and the paper's episode credit
UPDATE_MODES = [
    {},
    {"minibatch_size": None, "clip_range": None, "batch_size": 16},
    {"credit": "episode"},
]


@pytest.mark.parametrize("kwargs", UPDATE_MODES)
@pytest.mark.parametrize("reward_per_step", [0.0, -0.1])
def test_no_step_on_a_group_without_a_return_signal(kwargs, reward_per_step):
    def run(skip: bool) -> tuple[HAEPO, th.Tensor, th.Tensor]:
        model = HAEPO("MlpPolicy", _never_succeeds(reward_per_step), n_episodes=4, skip_tied_groups=skip, seed=0, **kwargs)
        before = th.nn.utils.parameters_to_vector(model.policy.parameters()).detach().clone()
        model.learn(160)
        return model, before, th.nn.utils.parameters_to_vector(model.policy.parameters()).detach()

    skipping, before, after = run(skip=True)
    assert th.equal(before, after)
    assert skipping.policy.optimizer.state_dict()["state"] == {}
    assert skipping._n_updates == 0
    # Two groups of 4 episodes of 20 steps, both skipped and counted
    assert skipping._n_skipped_groups == 2
    assert skipping._n_skipped_steps == 160
    logged = skipping.logger.name_to_value
    assert logged["train/n_epochs"] == 0
    assert logged["train/return_std"] == 0.0
    # The default update moves the policy on the same groups: beta's gradient, scaled up by Adam
    default, before, after = run(skip=False)
    assert not th.equal(before, after)
    assert default._n_updates > 0


@pytest.mark.parametrize("kwargs", UPDATE_MODES)
def test_a_group_with_a_signal_is_trained(kwargs):
    # A goal 2 steps away: the groups mix successes and failures
    model = HAEPO(
        "MlpPolicy", RandomWalkEnv(horizon=20, goal_distance=2), n_episodes=4, skip_tied_groups=True, seed=0, **kwargs
    )
    before = th.nn.utils.parameters_to_vector(model.policy.parameters()).detach().clone()
    model.learn(200)
    assert not th.equal(before, th.nn.utils.parameters_to_vector(model.policy.parameters()))
    # Every group is either trained (n_epochs epochs each) or skipped
    n_groups = model._n_train_calls
    assert model._n_skipped_groups < n_groups
    assert model._n_updates == (n_groups - model._n_skipped_groups) * model.n_epochs
    # The counters are logged on a trained group too, so that the columns do not come and go
    assert model.logger.name_to_value["train/n_skipped_groups"] == model._n_skipped_groups


class EarlyOrLateReward(gym.Env):
    """Two steps, reward 1 on exactly one of them: on the first if the first action is 1, else on the second.
    Every episode returns 1 (gamma 1); the reward-to-go at the second step is 0 or 1."""

    observation_space = gym.spaces.Box(0.0, 1.0, (1,))
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.early = 0, False
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action):
        if self.t == 0:
            self.early = bool(action == 1)
            reward = 1.0 if self.early else 0.0
        else:
            reward = 0.0 if self.early else 1.0
        self.t += 1
        return np.full(1, self.t / 2, dtype=np.float32), reward, self.t == 2, False, {}


def test_equal_returns_are_a_signal_with_per_step_credit_only():
    def run(credit: str) -> HAEPO:
        model = HAEPO("MlpPolicy", EarlyOrLateReward(), n_episodes=4, gamma=1.0, credit=credit, skip_tied_groups=True, seed=0)
        model.learn(400)
        return model

    # Per-step credit: a group mixing early and late rewards is trained, one of only early (or only late) ones is not
    # (each group of 4 episodes is all-early or all-late with probability 1/8 under a uniform policy)
    per_step = run("reward_to_go")
    assert 0 < per_step._n_updates
    assert per_step._n_skipped_groups < per_step._n_train_calls
    # Episode credit: every return is 1, every group is skipped
    episode = run("episode")
    assert episode._n_skipped_groups == episode._n_train_calls == 50
    assert episode._n_updates == 0


def test_save_load_keeps_the_switch_and_the_counters(tmp_path):
    model = HAEPO("MlpPolicy", _never_succeeds(), n_episodes=4, skip_tied_groups=np.bool_(True), seed=0)
    model.learn(80)
    model.save(tmp_path / "model")
    loaded = HAEPO.load(tmp_path / "model", env=_never_succeeds())
    assert loaded.skip_tied_groups is True
    assert (loaded._n_skipped_groups, loaded._n_skipped_steps) == (1, 80)
