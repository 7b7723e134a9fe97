"""``baseline="value"``: each step's reward-to-go against a learned value of its state, the value head regressed on
the Monte Carlo reward-to-go in the same minibatch steps (docs/METHOD.md section 17). Hand-computed advantages and
loss, the loss's gradient against autograd and its split over minibatches, the model's update wired to them (the
advantages it uses are those of the group's reward-to-go and the value head at the update's start; the head's error
on the group falls), learning on an identity env, the default critic, errors, save/load."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import IdentityEnv, SimpleMultiObsEnv
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.utils import obs_as_tensor
from test_step_credit import StopAfterFirstUpdate

from sb3_haepo import HAEPO
from sb3_haepo.common.buffers import step_observations
from sb3_haepo.common.utils import (
    bootstrap_truncated_rewards,
    discounted_reward_to_go,
    lambda_returns,
    value_baseline_advantages,
    value_regression_loss,
)
from sb3_haepo.haepo import haepo as haepo_module


def values_of(model: HAEPO, observations) -> th.Tensor:
    with th.no_grad():
        return model.policy.predict_values(obs_as_tensor(observations, model.device)).flatten()


def test_advantages_by_hand():
    # d = G - V = [2, 0, 1, -1], mean 0.5 -> [1.5, -0.5, 0.5, -1.5], population std sqrt(5 / 4)
    advantages = value_baseline_advantages(th.tensor([3.0, 1.0, 2.0, 0.0]), th.tensor([1.0, 1.0, 1.0, 1.0]))
    expected = th.tensor([1.5, -0.5, 0.5, -1.5]) / math.sqrt(1.25)
    assert th.allclose(advantages, expected, atol=1e-6)
    assert advantages.dtype == th.float32
    # A state's value moves its step's advantage: V = G on the first step leaves d = [0, 0, 1, -1]
    moved = value_baseline_advantages(th.tensor([3.0, 1.0, 2.0, 0.0]), th.tensor([3.0, 1.0, 1.0, 1.0]))
    assert th.allclose(moved, th.tensor([0.0, 0.0, 1.0, -1.0]) / math.sqrt(0.5), atol=1e-6)


def test_advantages_floor_and_no_variation():
    # d = [1, -1]: std 1, below the floor 4 -> [0.25, -0.25]
    floored = value_baseline_advantages(th.tensor([2.0, 0.0]), th.tensor([0.0, 0.0]), min_std=4.0)
    assert th.allclose(floored, th.tensor([0.25, -0.25]), atol=1e-6)
    # A value head that predicts every G up to a constant: no signal, 0 everywhere, not NaN
    assert value_baseline_advantages(th.tensor([5.0, 7.0, 9.0]), th.tensor([4.0, 6.0, 8.0])).tolist() == [0.0, 0.0, 0.0]


def test_advantages_errors():
    with pytest.raises(ValueError, match=r"same shape \(n_steps,\), got \(3,\) and \(2,\)"):
        value_baseline_advantages(th.zeros(3), th.zeros(2))
    with pytest.raises(ValueError, match=r"min_std must be"):
        value_baseline_advantages(th.zeros(2), th.zeros(2), min_std=-1.0)


def test_regression_loss_by_hand_and_its_gradient_against_autograd():
    values = th.tensor([1.0, 2.0, 0.5], requires_grad=True)
    targets = th.tensor([0.0, 4.0, 0.5])
    # 0.5 * (1 + 4 + 0) / 3
    loss = value_regression_loss(values, targets, 0.5)
    assert loss.item() == pytest.approx(2.5 / 3)
    (grad,) = th.autograd.grad(loss, values)
    # d/dV_t = 2 vf_coef (V_t - G_t) / N
    assert th.allclose(grad, 2 * 0.5 * (values.detach() - targets) / 3)


def test_regression_loss_splits_over_minibatches():
    values = th.tensor([1.0, -2.0, 0.5, 3.0, 0.0])
    targets = th.tensor([0.0, 4.0, 0.5, 1.0, -1.0])
    whole = value_regression_loss(values, targets, 0.25)
    parts = value_regression_loss(values[:2], targets[:2], 0.25, 5) + value_regression_loss(values[2:], targets[2:], 0.25, 5)
    assert parts.item() == pytest.approx(whole.item())


def test_regression_loss_errors():
    with pytest.raises(ValueError, match=r"same shape \(n,\), got \(2,\) and \(3,\)"):
        value_regression_loss(th.zeros(2), th.zeros(3), 0.5)
    with pytest.raises(ValueError, match=r"vf_coef must be"):
        value_regression_loss(th.zeros(2), th.zeros(2), 0.0)
    with pytest.raises(ValueError, match=r"n_steps must be"):
        value_regression_loss(th.zeros(3), th.zeros(3), 0.5, 2)


def test_bootstrap_truncated_rewards_by_hand():
    # Episodes of 3 and 2 steps, the first truncated in a state worth 10: its last reward gains gamma * 10
    rewards = th.tensor([1.0, 1.0, 1.0, 2.0, 2.0])
    lengths, truncated = th.tensor([3, 2]), th.tensor([True, False])
    bootstrapped = bootstrap_truncated_rewards(rewards, lengths, truncated, th.tensor([10.0]), 0.5)
    assert bootstrapped.tolist() == [1.0, 1.0, 6.0, 2.0, 2.0]
    assert rewards.tolist() == [1.0, 1.0, 1.0, 2.0, 2.0]
    # Its reward-to-go at step 0: 1 + 0.5 + 0.25 plus 0.5^3 * 10
    assert discounted_reward_to_go(bootstrapped, lengths, 0.5)[0].item() == pytest.approx(1.75 + 1.25)
    # Two truncated one-step episodes between terminated ones
    both = bootstrap_truncated_rewards(
        th.zeros(4), th.tensor([1, 1, 1, 1]), th.tensor([False, True, False, True]), th.tensor([2.0, -4.0]), 0.9
    )
    assert th.allclose(both, th.tensor([0.0, 1.8, 0.0, -3.6]))


def test_bootstrap_errors():
    with pytest.raises(ValueError, match=r"one final value per truncated episode: 1 of 2 episodes truncated, 2 final"):
        bootstrap_truncated_rewards(th.zeros(3), th.tensor([1, 2]), th.tensor([True, False]), th.zeros(2), 0.9)
    with pytest.raises(ValueError, match=r"gamma must be"):
        bootstrap_truncated_rewards(th.zeros(1), th.tensor([1]), th.tensor([True]), th.zeros(1), 0.0)


def test_lambda_returns_by_hand():
    # Episodes of 3 and 2 steps, gamma 0.9, lambda 0.5: the last step's target is its reward, then
    # G_t = r_t + 0.9 (0.5 V(s_{t+1}) + 0.5 G_{t+1})
    rewards, values, lengths = th.tensor([1.0, 2.0, 3.0, 4.0, 5.0]), th.tensor([0.5, 0.1, 0.2, 0.3, 0.4]), th.tensor([3, 2])
    second = 2.0 + 0.9 * (0.5 * 0.2 + 0.5 * 3.0)
    expected = [1.0 + 0.9 * (0.5 * 0.1 + 0.5 * second), second, 3.0, 4.0 + 0.9 * (0.5 * 0.4 + 0.5 * 5.0), 5.0]
    assert lambda_returns(rewards, values, lengths, 0.9, 0.5).tolist() == pytest.approx(expected)
    assert expected == pytest.approx([2.593, 3.44, 3.0, 6.43, 5.0])
    # lambda = 1: the Monte Carlo reward-to-go; lambda = 0: the one-step target r_t + gamma V(s_{t+1})
    assert th.equal(lambda_returns(rewards, values, lengths, 0.9, 1.0), discounted_reward_to_go(rewards, lengths, 0.9))
    one_step = [1.0 + 0.9 * 0.1, 2.0 + 0.9 * 0.2, 3.0, 4.0 + 0.9 * 0.4, 5.0]
    assert lambda_returns(rewards, values, lengths, 0.9, 0.0).tolist() == pytest.approx(one_step)


@pytest.mark.parametrize("gamma, gae_lambda", [(0.99, 0.95), (0.9, 0.0), (1.0, 0.8), (0.97, 1.0)])
def test_lambda_returns_minus_values_are_sb3s_gae(gamma, gae_lambda):
    """On episodes of random lengths, one after another in one env's stream, with truncated ones bootstrapped in
    their last reward as SB3's PPO does: the lambda-returns minus V are SB3's RolloutBuffer advantages, and the
    lambda-returns its returns."""
    generator = th.Generator().manual_seed(0)
    lengths = th.tensor([5, 1, 12, 3, 7])
    n_steps = int(lengths.sum())
    rewards, values = th.randn(n_steps, generator=generator), th.randn(n_steps, generator=generator)
    truncated, final_values = th.tensor([True, False, True, False, False]), th.randn(2, generator=generator)
    bootstrapped = bootstrap_truncated_rewards(rewards, lengths, truncated, final_values, gamma)
    buffer = RolloutBuffer(n_steps, spaces.Box(-1, 1, (1,)), spaces.Discrete(2), gamma=gamma, gae_lambda=gae_lambda)
    starts = th.zeros(n_steps)
    starts[lengths.cumsum(0)[:-1]] = 1.0
    starts[0] = 1.0
    for t in range(n_steps):
        buffer.add(
            np.zeros((1, 1)),
            np.zeros((1, 1)),
            bootstrapped[t : t + 1].numpy(),
            starts[t : t + 1].numpy(),
            values[t : t + 1],
            th.zeros(1),
        )
    buffer.compute_returns_and_advantage(th.zeros(1), np.ones(1))
    targets = lambda_returns(bootstrapped, values, lengths, gamma, gae_lambda)
    assert np.allclose((targets - values).numpy(), buffer.advantages.ravel(), atol=1e-5)
    assert np.allclose(targets.numpy(), buffer.returns.ravel(), atol=1e-5)


def test_lambda_returns_stay_finite_for_long_episodes():
    # 10^5 steps with gamma = 1: no power of gamma * lambda is formed, the recursion only adds
    n_steps = 100_000
    targets = lambda_returns(th.ones(n_steps), th.full((n_steps,), 50.0), th.tensor([n_steps]), 1.0, 0.99)
    assert th.isfinite(targets).all()
    # Far from the end the target settles where x = 1 + 0.01 * 50 = 1.5 summed with 0.99^l: 150
    assert targets[0].item() == pytest.approx(150.0, rel=1e-4) and targets[-1].item() == 1.0


def test_lambda_returns_errors():
    with pytest.raises(ValueError, match=r"gae_lambda must be"):
        lambda_returns(th.zeros(2), th.zeros(2), th.tensor([2]), 0.9, 1.5)
    with pytest.raises(ValueError, match=r"rewards and values must have the same shape \(n_steps,\), got \(2,\) and \(3,\)"):
        lambda_returns(th.zeros(2), th.zeros(3), th.tensor([2]), 0.9, 0.5)
    with pytest.raises(ValueError, match=r"The episode lengths sum to 3 but there are 2 rewards"):
        lambda_returns(th.zeros(2), th.zeros(2), th.tensor([3]), 0.9, 0.5)


class CounterEnv(gym.Env):
    """Observation: the number of steps taken since reset; reward 1; never terminates (time limits truncate it)."""

    observation_space = spaces.Box(0.0, 1e6, (1,), np.float32)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([float(self.t)], np.float32), 1.0, False, False, {}


@pytest.mark.parametrize("limit", ["time_limit", "cut"])
def test_buffer_keeps_the_final_observation_of_truncated_episodes(limit):
    """A time limit of 3 steps (the VecEnv's terminal observation, 3) and the max_episode_steps guard at 4 (the
    observation after the cut step, while the env runs on): each truncated episode keeps the observation it was
    truncated in, and the update's final values are the value head's there."""
    if limit == "time_limit":
        env = make_vec_env(CounterEnv, n_envs=2, wrapper_class=gym.wrappers.TimeLimit, wrapper_kwargs={"max_episode_steps": 3})
        model = HAEPO("MlpPolicy", env, n_episodes=4, baseline="value", seed=0)
        expected_length = 3
    else:
        model = HAEPO(
            "MlpPolicy", make_vec_env(CounterEnv, n_envs=2), n_episodes=4, baseline="value", max_episode_steps=4, seed=0
        )
        expected_length = 4
    # Two envs: four episodes complete on the last step of the budget, the update trains on them, the buffer keeps them
    model.learn(2 * 2 * expected_length)
    assert model._n_train_calls == 1
    batch = model.rollout_buffer.get()
    assert batch.lengths.tolist() == [expected_length] * 4 and batch.truncated.all()
    # The cut env runs on: its second episode starts at the counter's 4 and is cut at 8
    expected_finals = [3.0] * 4 if limit == "time_limit" else [4.0, 4.0, 8.0, 8.0]
    assert [float(final[0]) for final in batch.final_observations] == expected_finals
    final_values = values_of(model, np.stack(batch.final_observations))
    assert th.allclose(model._final_values(batch), final_values)
    # A truncated episode without its final observation (an env outside SB3's VecEnvs) is refused by name
    with pytest.raises(ValueError, match=r"bootstraps truncated episodes from their final observation"):
        model._final_values(batch._replace(final_observations=[None] * 4))


def first_update(monkeypatch, **kwargs) -> tuple[HAEPO, dict]:
    """The first update of a model with baseline='value' on CartPole, recording what the advantages were formed from."""
    seen: dict = {}

    def spy(reward_to_go, values, **spy_kwargs):
        seen.update(reward_to_go=reward_to_go.clone(), values=values.clone(), kwargs=spy_kwargs)
        seen["advantages"] = value_baseline_advantages(reward_to_go, values, **spy_kwargs)
        return seen["advantages"]

    original_step_values = HAEPO._step_values

    def step_values(self, batch):
        seen["batch"] = batch
        return original_step_values(self, batch)

    monkeypatch.setattr(haepo_module, "value_baseline_advantages", spy)
    monkeypatch.setattr(HAEPO, "_step_values", step_values)
    env = kwargs.pop("env", "CartPole-v1")
    model = HAEPO("MlpPolicy", env, n_episodes=4, n_epochs=4, seed=0, baseline="value", **kwargs)
    seen["initial"] = HAEPO("MlpPolicy", env, n_episodes=4, n_epochs=4, seed=0, baseline="value", **kwargs)
    model.learn(400, callback=StopAfterFirstUpdate())
    assert model._n_train_calls == 1
    return model, seen


def test_dict_observations(monkeypatch):
    """MultiInputPolicy on SB3's SimpleMultiObsEnv (a vector and an image key) cut at 7 steps: the buffer keeps each
    truncated episode's final observation as a dict of the env's keys, and the update bootstraps from their values."""
    finals = []
    original = haepo_module.bootstrap_truncated_rewards

    def spy(rewards, lengths, truncated, final_values, gamma):
        finals.append((int(truncated.sum()), len(final_values)))
        return original(rewards, lengths, truncated, final_values, gamma)

    monkeypatch.setattr(haepo_module, "bootstrap_truncated_rewards", spy)
    env = make_vec_env(lambda: gym.wrappers.TimeLimit(SimpleMultiObsEnv(random_start=True), 7), n_envs=2, seed=0)
    model = HAEPO("MultiInputPolicy", env, n_episodes=4, baseline="value", seed=0)
    model.learn(28)
    assert model._n_train_calls == 1 and finals == [(4, 4)]
    batch = model.rollout_buffer.get()
    assert all(set(final) == set(env.observation_space.spaces) for final in batch.final_observations)
    assert math.isfinite(model.logger.name_to_value["train/value_loss"])


def test_update_uses_the_reward_to_go_against_the_value_head_at_its_start(monkeypatch):
    """The advantages come from the group's discounted reward-to-go, its truncated episodes (CartPole cut at 20 steps)
    bootstrapped, and the value head before the update (the same parameters as an untrained model of the same seed),
    with the model's min_return_std."""
    env = make_vec_env("CartPole-v1", n_envs=2, env_kwargs={"max_episode_steps": 20}, seed=0)
    model, seen = first_update(monkeypatch, gamma=0.9, min_return_std=0.5, env=env)
    batch = seen["batch"]
    truncated = th.as_tensor(batch.truncated)
    assert 0 < int(truncated.sum()) < len(truncated)
    finals = [batch.final_observations[k] for k in np.flatnonzero(batch.truncated)]
    final_values = values_of(seen["initial"], np.stack(finals))
    rewards = bootstrap_truncated_rewards(batch.rewards, batch.lengths, truncated, final_values, 0.9)
    assert th.allclose(seen["reward_to_go"], discounted_reward_to_go(rewards, batch.lengths, 0.9), atol=1e-5)
    assert not th.allclose(seen["reward_to_go"], discounted_reward_to_go(batch.rewards, batch.lengths, 0.9))
    observations = step_observations(batch, slice(0, len(batch.episode_index)))
    assert th.allclose(seen["values"], values_of(seen["initial"], observations), atol=1e-6)
    assert seen["kwargs"] == {"min_std": 0.5}
    # The value head moved: the update trained it
    assert not th.allclose(values_of(model, observations), seen["values"])


def test_update_with_gae_lambda_uses_the_lambda_returns(monkeypatch):
    """With gae_lambda=0.8 the value head's targets (and so the advantages' deviations, before the z-score) are the
    lambda-returns of the bootstrapped rewards under the value head at the update's start: PPO's GAE."""
    env = make_vec_env("CartPole-v1", n_envs=2, env_kwargs={"max_episode_steps": 20}, seed=0)
    targets = []
    original_loss = haepo_module.value_regression_loss

    def loss_spy(values, step_targets, vf_coef, n_steps=None):
        targets.append(step_targets.clone())
        return original_loss(values, step_targets, vf_coef, n_steps)

    monkeypatch.setattr(haepo_module, "value_regression_loss", loss_spy)
    model, seen = first_update(monkeypatch, gamma=0.9, gae_lambda=0.8, env=env)
    assert model.gae_lambda == 0.8
    batch = seen["batch"]
    truncated = th.as_tensor(batch.truncated)
    finals = [batch.final_observations[k] for k in np.flatnonzero(batch.truncated)]
    rewards = bootstrap_truncated_rewards(
        batch.rewards, batch.lengths, truncated, values_of(seen["initial"], np.stack(finals)), 0.9
    )
    observations = step_observations(batch, slice(0, len(batch.episode_index)))
    values = values_of(seen["initial"], observations)
    expected = lambda_returns(rewards, values, batch.lengths, 0.9, 0.8)
    assert th.allclose(seen["reward_to_go"], expected, atol=1e-5)
    assert not th.allclose(seen["reward_to_go"], discounted_reward_to_go(rewards, batch.lengths, 0.9), atol=1e-3)
    # The value head is regressed on the same lambda-returns: each epoch's minibatches hold every step's target once
    n_steps = len(batch.episode_index)
    epochs = th.cat(targets).reshape(model.n_epochs, n_steps)
    for epoch_targets in epochs:
        assert th.allclose(epoch_targets.sort().values, expected.sort().values, atol=1e-5)


def test_value_head_error_on_the_group_falls(monkeypatch):
    """Four epochs of minibatch steps regress the value head on the group's reward-to-go (gradients unclipped here):
    its squared error there falls by more than half, and the logged train/value_loss, the mean squared error over
    those epochs' minibatches, lies between the two."""
    model, seen = first_update(monkeypatch, learning_rate=0.03, max_grad_norm=100.0)
    batch = seen["batch"]
    observations = step_observations(batch, slice(0, len(batch.episode_index)))
    before = float((seen["values"] - seen["reward_to_go"]).pow(2).mean())
    after = float((values_of(model, observations) - seen["reward_to_go"]).pow(2).mean())
    assert after < 0.5 * before
    logged = model.logger.name_to_value["train/value_loss"]
    assert after < logged < before


def test_value_gradient_is_clipped_apart_from_the_actors(monkeypatch):
    """The value head's gradient is clipped on its own, so the actor's update does not depend on vf_coef (bitwise)
    while the value head's does; train/grad_norm is the actor's norm, train/value_grad_norm the value head's."""
    models = [first_update(monkeypatch, vf_coef=coef)[0] for coef in (0.5, 50.0)]
    actors, critics = zip(*(model._actor_critic_parameters() for model in models), strict=True)
    assert all(th.equal(a, b) for a, b in zip(*actors, strict=True))
    assert not all(th.equal(a, b) for a, b in zip(*critics, strict=True))
    logged = [model.logger.name_to_value for model in models]
    assert logged[0]["train/grad_norm"] == logged[1]["train/grad_norm"]
    assert logged[1]["train/value_grad_norm"] > 10 * logged[0]["train/value_grad_norm"]


class LinearExtractor(BaseFeaturesExtractor):
    """A features extractor with parameters (SB3's MLP extractor, FlattenExtractor, has none)."""

    def __init__(self, observation_space: spaces.Box):
        super().__init__(observation_space, features_dim=8)
        self.linear = th.nn.Linear(observation_space.shape[0], 8)

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return th.tanh(self.linear(observations))


@pytest.mark.parametrize("share", [True, False])
def test_features_extractor_with_parameters(monkeypatch, share):
    """A features extractor with parameters: shared with the actor, the value head reads its features detached, so
    it is the actor's and vf_coef does not move it; not shared, the value head's own extractor is the critic's. In
    both the actor's update does not depend on vf_coef (bitwise)."""
    policy_kwargs = dict(features_extractor_class=LinearExtractor, share_features_extractor=share)
    models = [first_update(monkeypatch, vf_coef=coef, policy_kwargs=policy_kwargs)[0] for coef in (0.5, 50.0)]
    actors, critics = zip(*(model._actor_critic_parameters() for model in models), strict=True)
    assert all(th.equal(a, b) for a, b in zip(*actors, strict=True))
    assert not all(th.equal(a, b) for a, b in zip(*critics, strict=True))
    extractor_ids = {id(p) for p in models[0].policy.features_extractor.parameters()}
    vf_extractor_ids = {id(p) for p in models[0].policy.vf_features_extractor.parameters()}
    assert extractor_ids <= {id(p) for p in actors[0]}
    assert (vf_extractor_ids <= {id(p) for p in critics[0]}) == (not share)


def test_skip_tied_groups_reads_the_rewards_not_the_value_head(monkeypatch):
    """Every reward 0 (a group without a return signal): the value head's varying V(s) would give non-zero advantages,
    but the group is skipped as with the time baseline, nothing moves, and the value head is never evaluated for it."""

    class ZeroRewardCounter(CounterEnv):
        def step(self, action):
            obs, _, terminated, truncated, info = super().step(action)
            return obs, 0.0, terminated, truncated, info

    env = make_vec_env(
        ZeroRewardCounter, n_envs=2, wrapper_class=gym.wrappers.TimeLimit, wrapper_kwargs={"max_episode_steps": 3}
    )
    model = HAEPO("MlpPolicy", env, n_episodes=4, baseline="value", skip_tied_groups=True, seed=0)
    value_passes = []
    monkeypatch.setattr(HAEPO, "_values_without_graph", lambda self, *args: value_passes.append(args))
    before = th.nn.utils.parameters_to_vector(model.policy.parameters()).clone()
    model.learn(12)
    assert model._n_train_calls == 1 and model._n_skipped_groups == 1
    assert value_passes == []
    assert th.equal(th.nn.utils.parameters_to_vector(model.policy.parameters()), before)


def test_default_critic_and_explicit_net_arch():
    value = HAEPO("MlpPolicy", "CartPole-v1", baseline="value")
    assert value.policy.net_arch == dict(pi=[64, 64], vf=[64, 64])
    assert value.vf_coef == 0.5
    assert HAEPO("MlpPolicy", "CartPole-v1").policy.net_arch == dict(pi=[64, 64], vf=[])
    assert HAEPO("MlpPolicy", "CartPole-v1").baseline == "time" and HAEPO("MlpPolicy", "CartPole-v1").vf_coef == 0.0
    given = HAEPO(
        "MlpPolicy", "CartPole-v1", baseline="value", vf_coef=0.25, policy_kwargs=dict(net_arch=dict(pi=[8], vf=[16]))
    )
    assert given.policy.net_arch == dict(pi=[8], vf=[16]) and given.vf_coef == 0.25


def test_learns_identity_env():
    """IdentityEnv(4), the per-step discount gamma=0.4 of SB3's tests, 5k steps, seed 0: reaches 90 of 100."""
    env = Monitor(IdentityEnv(4))
    model = HAEPO("MlpPolicy", env, gamma=0.4, baseline="value", seed=0, device="cpu")
    model.learn(5000)
    env.reset(seed=1000)
    env.action_space.seed(1000)
    mean, _ = evaluate_policy(model, env, n_eval_episodes=20)
    assert mean >= 90


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"baseline": "critic"}, r"Unknown baseline 'critic', allowed: \('time', 'value'\)"),
        (
            {"baseline": "value", "credit": "episode"},
            r"baseline='value' is the baseline of credit='reward_to_go'.*got credit='episode'",
        ),
        ({"baseline": "value", "minibatch_size": None, "clip_range": None}, r"give a minibatch_size or a clip_range"),
        ({"vf_coef": 0.5}, r"vf_coef=0.5 weights the value head's loss of baseline='value', got baseline='time'"),
        ({"baseline": "value", "vf_coef": 0.0}, r"vf_coef must be"),
        ({"gae_lambda": 0.95}, r"gae_lambda=0.95 mixes the value head's estimates .* got baseline='time'"),
        ({"baseline": "value", "gae_lambda": 1.5}, r"gae_lambda must be"),
    ],
)
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HAEPO("MlpPolicy", "CartPole-v1", **kwargs)


def test_save_load_keeps_the_option_and_the_value_head(tmp_path, monkeypatch):
    model, seen = first_update(monkeypatch, vf_coef=0.25, gae_lambda=0.9)
    model.save(tmp_path / "model")
    loaded = HAEPO.load(tmp_path / "model", env=model.get_env())
    assert (loaded.baseline, loaded.vf_coef, loaded.gae_lambda) == ("value", 0.25, 0.9)
    observations = step_observations(seen["batch"], slice(0, 50))
    assert th.equal(values_of(loaded, observations), values_of(model, observations))
