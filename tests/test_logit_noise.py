"""
Held logit noise (``logit_noise_std``, docs/METHOD.md section 14): the perturbation by hand, the noise held per
episode in the buffer, the log-probabilities the update uses equal to those the actions were sampled with, the
update's gradient against autograd (in tests/test_policy_entropy.py, with the conditioned log-probabilities), and
bad input.
"""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.utils import obs_as_tensor

from sb3_haepo import DPO, GRPO, HAEPO, EpisodeBuffer
from sb3_haepo.common.buffers import GroupView, step_observations
from sb3_haepo.common.exploration import (
    check_logit_noise_std,
    logit_noise_distribution,
    logit_noise_shape,
    perturbed_logits,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OBS_SPACE = spaces.Box(-1.0, 1.0, (3,), np.float32)
ACTION_SPACE = spaces.Discrete(2)


def test_perturbed_logits_by_hand():
    logits = th.tensor([[0.5, -1.0], [0.0, 2.0], [1.0, 1.0]])
    latent = th.tensor([[1.0, 2.0, 0.0], [-1.0, 0.0, 3.0], [0.0, 0.0, 1.0]])
    episode_noise = th.tensor(
        [
            [[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]],  # episode 0
            [[1.0, 2.0], [9.0, 9.0], [0.5, -1.0]],  # episode 1
        ]
    )
    # Rows of episodes 0, 1, 0: h @ Z = [1, 2], [-1 + 1.5, -2 - 3] = [0.5, -5], [5, 5]
    episode_index = th.tensor([0, 1, 0])
    expected = th.tensor([[0.5 + 0.5, -1.0 + 1.0], [0.0 + 0.25, 2.0 - 2.5], [1.0 + 2.5, 1.0 + 2.5]])
    assert th.allclose(perturbed_logits(logits, latent, episode_noise, episode_index, 0.5), expected)
    assert th.equal(perturbed_logits(logits, latent, episode_noise, episode_index, 0.0), logits)


def test_distribution_is_the_perturbed_policy():
    """The conditioned distribution is softmax(action_net(h) + std * h @ Z), computed here from the policy's parts."""
    model = HAEPO("MlpPolicy", "CartPole-v1", logit_noise_std=2.0, seed=0)
    policy = model.policy
    obs = th.randn(5, 4)
    assert logit_noise_shape(policy) == (64, 2)
    episode_noise = th.randn(2, *logit_noise_shape(policy))
    episode_index = th.tensor([0, 0, 1, 0, 1])
    latent = policy.mlp_extractor.forward_actor(obs)
    noise = episode_noise[episode_index]
    logits = policy.action_net(latent) + 2.0 * (latent.unsqueeze(1) @ noise).squeeze(1)
    actions = th.tensor([0, 1, 1, 0, 1])
    distribution = logit_noise_distribution(policy, obs, episode_noise, episode_index, 2.0)
    expected = th.distributions.Categorical(logits=logits)
    assert th.allclose(distribution.log_prob(actions), expected.log_prob(actions), atol=1e-6)
    assert th.allclose(distribution.entropy(), expected.entropy(), atol=1e-6)
    # No noise: the policy's own distribution
    unperturbed = logit_noise_distribution(policy, obs, th.zeros_like(episode_noise), episode_index, 2.0).log_prob(actions)
    assert th.allclose(unperturbed, policy.get_distribution(obs).log_prob(actions), atol=1e-6)


def test_noise_shape_follows_the_action_space():
    from stable_baselines3.common.envs import IdentityEnvMultiBinary, IdentityEnvMultiDiscrete

    for env, n_logits in ((IdentityEnvMultiDiscrete(3), 6), (IdentityEnvMultiBinary(3), 3)):
        model = HAEPO("MlpPolicy", env, logit_noise_std=1.0, n_episodes=2, seed=0)
        assert model.rollout_buffer.episode_noise_shape == (64, n_logits)
        model.learn(300)
        assert model.num_timesteps == 300


def test_buffer_holds_the_noise_of_each_episode():
    """Each completed episode keeps the noise its env held when it ran; episodes in progress carry theirs over."""
    buffer = EpisodeBuffer(OBS_SPACE, ACTION_SPACE, n_envs=2, episode_noise_shape=(2, 1))
    assert buffer.nbytes == EpisodeBuffer(OBS_SPACE, ACTION_SPACE, n_envs=2).nbytes
    step = (np.zeros((2, 3)), np.zeros(2), np.ones(2), np.zeros(2))
    buffer.set_current_noise(np.array([0, 1]), np.array([[[1.0], [1.0]], [[2.0], [2.0]]]))
    buffer.add(*step)
    buffer.end_episodes(np.array([False, True]))
    buffer.set_current_noise(np.array([1]), np.array([[[3.0], [3.0]]]))
    buffer.add(*step)
    buffer.end_episodes(np.array([True, False]))
    noise = buffer.get().episode_noise
    assert noise is not None
    assert noise[:, 0, 0].tolist() == [2.0, 1.0]  # completion order: env 1's episode, then env 0's
    assert th.equal(GroupView(buffer).episode_noise, noise)
    # Env 1's episode in progress (noise 3) is carried over and completes in the next group
    buffer.pop_completed()
    buffer.add(*step)
    buffer.end_episodes(np.array([False, True]))
    assert buffer.get().episode_noise[:, 0, 0].tolist() == [3.0]
    # A fragment that ends is dropped with its noise
    buffer.pop_completed()
    buffer.discard_in_progress(np.array([True, True]))
    buffer.mark_fragments(np.array([True, False]))
    buffer.add(*step)
    assert buffer.end_episodes(np.array([True, False])) == 1
    assert buffer.n_completed == 0 and buffer.completed_noise().shape == (0, 2, 1)
    with pytest.raises(ValueError, match="This buffer holds no noise"):
        EpisodeBuffer(OBS_SPACE, ACTION_SPACE).set_current_noise(np.array([0]), np.zeros((1, 1)))
    assert EpisodeBuffer(OBS_SPACE, ACTION_SPACE).completed_noise() is None


def collect_groups(model, n_groups: int = 1):
    """Run ``n_groups`` rollouts of ``model`` (no update) and return their groups."""
    model._setup_learn(100_000)
    callback = CallbackList([])
    callback.init_callback(model)
    groups = []
    for _ in range(n_groups):
        assert model.collect_rollouts(model.env, callback, model.rollout_buffer, 0)
        groups.append(model.rollout_buffer.get())
    return groups


@pytest.mark.parametrize(
    "algo, policy_kwargs",
    [(HAEPO, None), (GRPO, None), (DPO, None), (HAEPO, {"share_features_extractor": False})],
    ids=["haepo", "grpo", "dpo", "haepo-separate-extractors"],
)
def test_update_sees_the_log_probs_the_actions_were_sampled_with(algo, policy_kwargs):
    """
    With 3 envs (episodes of different lengths), in the second of two groups (whose first episodes began in the first
    rollout and were carried over), the stored log-probabilities (sampled under each env's held noise) equal those
    the update computes from each episode's stored noise, in batches and through the in-place view, so every step was
    sampled with its episode's noise; without the noise they differ. Every episode has its own noise.
    """
    env = make_vec_env("CartPole-v1", n_envs=3, seed=0)
    model = algo("MlpPolicy", env, logit_noise_std=3.0, n_episodes=6, seed=0, policy_kwargs=policy_kwargs)
    first, batch = collect_groups(model, 2)
    assert model.rollout_buffer.n_in_progress_steps > 0  # episodes run on past each group's end
    assert batch.episode_noise is not None and len(batch.episode_noise) == len(batch.lengths) >= 6
    # No noise is shared between the groups (nor within one)
    assert len(th.unique(th.cat([first.episode_noise, batch.episode_noise])[:, 0, 0])) == len(first.lengths) + len(
        batch.lengths
    )
    # Distinct episodes hold distinct noise
    assert len(th.unique(batch.episode_noise[:, 0, 0])) == len(batch.lengths)
    with th.no_grad():
        log_probs, _ = model._step_log_probs(model.policy, batch, 4)
        view_log_probs = th.cat(
            [chunk[1] for chunk in model._iter_step_log_probs(model.policy, GroupView(model.rollout_buffer), 4)]
        )
        obs = obs_as_tensor(step_observations(batch, slice(None)), model.device)
        unconditioned = model.policy.get_distribution(obs).log_prob(model._prepare_actions(batch.actions))
    assert th.allclose(log_probs, batch.behaviour_log_probs, atol=1e-5)
    assert th.allclose(view_log_probs, batch.behaviour_log_probs, atol=1e-5)
    assert (unconditioned - batch.behaviour_log_probs).abs().max() > 0.1


def test_noise_is_drawn_per_episode_and_reproducible():
    """The same seed gives the same noise and episodes; evaluation (predict) does not use the noise."""
    groups = [
        collect_groups(HAEPO("MlpPolicy", "CartPole-v1", logit_noise_std=1.0, n_episodes=3, seed=7))[0] for _ in range(2)
    ]
    assert th.equal(groups[0].episode_noise, groups[1].episode_noise)
    assert th.equal(groups[0].actions, groups[1].actions)
    model = HAEPO("MlpPolicy", "CartPole-v1", logit_noise_std=100.0, seed=0)
    obs = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    with th.no_grad():
        expected = model.policy.get_distribution(th.as_tensor(obs)).distribution.probs.argmax(-1).numpy()
    assert np.array_equal(model.predict(obs, deterministic=True)[0], expected)


def test_save_load_keeps_the_noise(tmp_path):
    model = HAEPO("MlpPolicy", "CartPole-v1", n_episodes=2, logit_noise_std=1.5, seed=0)
    model.learn(100)
    model.save(tmp_path / "model.zip")
    loaded = HAEPO.load(tmp_path / "model.zip", env=model.get_env())
    assert loaded.logit_noise_std == 1.5
    assert loaded.rollout_buffer.episode_noise_shape == (64, 2)
    loaded.learn(300, reset_num_timesteps=False)
    assert loaded.num_timesteps == 400


@pytest.mark.parametrize("value", [-1.0, float("inf"), float("nan"), "1", True])
def test_bad_logit_noise_std(value):
    with pytest.raises(ValueError, match=r"logit_noise_std must be a finite number >= 0 \(0 disables it\), got"):
        HAEPO("MlpPolicy", "CartPole-v1", logit_noise_std=value)


def test_noise_set_after_construction_is_refused():
    model = HAEPO("MlpPolicy", "CartPole-v1", n_episodes=2, seed=0)
    model.logit_noise_std = 1.0
    with pytest.raises(ValueError, match=r"logit_noise_std=1.0 was set after the model was built"):
        model.learn(100)


def test_logit_noise_needs_logits():
    with pytest.raises(ValueError, match=r"logit_noise_std=1.0 perturbs the logits of Discrete.*Box.*use_sde=True"):
        GRPO("MlpPolicy", "Pendulum-v1", logit_noise_std=1.0)
    with pytest.raises(ValueError, match=r"two kinds of held noise"):
        check_logit_noise_std(1.0, ACTION_SPACE, use_sde=True)
    # 0 is allowed everywhere; numpy scalars are accepted
    HAEPO("MlpPolicy", "Pendulum-v1", logit_noise_std=0.0, _init_setup_model=False)
    assert HAEPO("MlpPolicy", "CartPole-v1", logit_noise_std=np.float32(0.5), _init_setup_model=False).logit_noise_std == 0.5
