"""
HAEPO's policy-entropy bonus ``ent_coef`` (docs/METHOD.md section 12): hand-computed values, the update's gradient
against autograd through the whole loss in each update mode, its direction, and bad input.
"""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.utils import obs_as_tensor

from sb3_haepo import GRPO, HAEPO
from sb3_haepo.common.buffers import step_observations
from sb3_haepo.common.utils import (
    haepo_loss,
    normalize_returns,
    policy_entropy_loss,
    reward_to_go_advantages,
    step_credit_loss,
    trajectory_scores,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_policy_entropy_loss_by_hand():
    entropies = th.tensor([1.0, 2.0, 3.0])
    # -0.5 * (1 + 2 + 3) / 3
    assert float(policy_entropy_loss(entropies, 0.5)) == pytest.approx(-1.0)
    # Three of six steps: -0.5 * 6 / 6
    assert float(policy_entropy_loss(entropies, 0.5, n_steps=6)) == pytest.approx(-0.5)
    # Chunks of a group add up to the group's term
    whole = policy_entropy_loss(th.tensor([1.0, 2.0, 3.0, 4.0]), 0.2)
    parts = policy_entropy_loss(th.tensor([1.0, 2.0]), 0.2, 4) + policy_entropy_loss(th.tensor([3.0, 4.0]), 0.2, 4)
    assert float(parts) == pytest.approx(float(whole)) == pytest.approx(-0.5)
    assert float(policy_entropy_loss(entropies, 0.0)) == 0.0


def test_policy_entropy_loss_errors():
    with pytest.raises(ValueError, match=r"ent_coef must be a finite number >= 0, got -0.1"):
        policy_entropy_loss(th.ones(2), -0.1)
    with pytest.raises(ValueError, match=r"ent_coef must be a finite number >= 0, got True"):
        policy_entropy_loss(th.ones(2), True)
    with pytest.raises(ValueError, match=r"ent_coef must be a finite number >= 0, got nan"):
        policy_entropy_loss(th.ones(2), float("nan"))
    with pytest.raises(ValueError, match=r"Expected a 1D tensor of entropies, got shape \(2, 2\)"):
        policy_entropy_loss(th.ones(2, 2), 0.1)
    with pytest.raises(
        ValueError, match=r"n_steps must be an integer >= 3 \(the group's steps: at least these entropies and 1\), got 2"
    ):
        policy_entropy_loss(th.ones(3), 0.1, n_steps=2)


@pytest.mark.parametrize("value", [-1.0, float("inf"), "0.1", True])
def test_bad_ent_coef(value):
    with pytest.raises(ValueError, match=r"ent_coef must be a finite number >= 0, got"):
        HAEPO("MlpPolicy", "CartPole-v1", ent_coef=value)


def test_squashed_gsde_is_refused():
    """gSDE with squash_output has no closed-form entropy: the bonus would only add noise, so it is refused."""
    with pytest.raises(ValueError, match=r"ent_coef=0.1 needs the policy's entropy in closed form"):
        HAEPO("MlpPolicy", "Pendulum-v1", ent_coef=0.1, use_sde=True, policy_kwargs={"squash_output": True})
    # numpy scalars are accepted; without the bonus, squashed gSDE is fine
    assert HAEPO("MlpPolicy", "CartPole-v1", ent_coef=np.float32(0.5), _init_setup_model=False).ent_coef == 0.5
    HAEPO("MlpPolicy", "Pendulum-v1", use_sde=True, policy_kwargs={"squash_output": True})


def test_save_load_keeps_the_options(tmp_path):
    model = HAEPO("MlpPolicy", "CartPole-v1", n_episodes=2, ent_coef=0.1, min_return_std=0.5, seed=0)
    model.learn(100)
    model.save(tmp_path / "model.zip")
    loaded = HAEPO.load(tmp_path / "model.zip", env=model.get_env())
    assert (loaded.ent_coef, loaded.min_return_std) == (0.1, 0.5)
    loaded.learn(200, reset_num_timesteps=False)
    assert loaded.num_timesteps == 300


def test_grpo_and_ppo_users_still_get_the_explanation():
    """GRPO has no policy-entropy bonus: PPO's argument is refused with the reason (the TypeError of the base)."""
    with pytest.raises(TypeError, match=r"GRPO does not take PPO's argument 'ent_coef'"):
        GRPO("MlpPolicy", "CartPole-v1", ent_coef=0.01)


def expected_gradient(model: HAEPO) -> dict[str, th.Tensor]:
    """
    Autograd through HAEPO's whole loss on the buffer's group, at the parameters before the update: J (per-step or
    episode credit) plus the policy-entropy bonus over every step. The reference equals the policy at the first
    update (``ref_update_interval=1``), so its scores are the policy's own, detached. With held logit noise, the
    log-probabilities are those of the perturbed policy with each step's episode noise (docs/METHOD.md section 14).
    """
    batch = model.rollout_buffer.get()
    observations = obs_as_tensor(step_observations(batch, slice(None)), model.device)
    if batch.episode_noise is None:
        distribution = model.policy.get_distribution(observations)
    else:
        # Each step's own matrix, multiplied by hand (the package's einsum is checked against this)
        latent = model.policy.mlp_extractor.forward_actor(model.policy.extract_features(observations))
        noise = batch.episode_noise[batch.episode_index]
        logits = model.policy.action_net(latent) + model.logit_noise_std * (latent.unsqueeze(1) @ noise).squeeze(1)
        distribution = model.policy.action_dist.proba_distribution(action_logits=logits)
    log_probs = distribution.log_prob(model._prepare_actions(batch.actions))
    entropies = distribution.entropy()
    score = model.trajectory_score
    ref_scores = trajectory_scores(log_probs.detach(), batch.episode_index, batch.lengths, score)
    beta, lam = model.weight_ent_coef, model.ref_kl_coef
    if model.credit == "episode":
        scores = trajectory_scores(log_probs, batch.episode_index, batch.lengths, score)
        terms = haepo_loss(scores, ref_scores, normalize_returns(batch.returns, model.normalize_returns), beta, lam)
    else:
        advantages = reward_to_go_advantages(batch.rewards, batch.lengths, model.gamma)
        terms = step_credit_loss(log_probs, batch.episode_index, batch.lengths, ref_scores, advantages, score, beta, lam)
    loss = terms.loss + policy_entropy_loss(entropies, model.ent_coef)
    model.policy.optimizer.zero_grad()
    loss.backward()
    gradient = {name: p.grad.clone() for name, p in model.policy.named_parameters() if p.grad is not None}
    model.policy.optimizer.zero_grad()
    return gradient


def first_update_gradients(model: HAEPO) -> tuple[dict[str, th.Tensor], list[dict[str, th.Tensor]], int]:
    """
    Learn until the first update; at its start compute :func:`expected_gradient`, then run it with every optimizer
    step replaced by a capture of the gradient (so the parameters never move: every capture is at the start).

    :return: autograd's gradient, the captured gradients (one per step the update would take), the group's N
    """
    expected: list[dict[str, th.Tensor]] = []
    captured: list[dict[str, th.Tensor]] = []
    n_steps: list[int] = []
    train = model.train

    def capture_gradient() -> float:
        captured.append({name: p.grad.clone() for name, p in model.policy.named_parameters() if p.grad is not None})
        return 0.0

    def checked_train() -> None:
        if not expected:
            expected.append(expected_gradient(model))
            n_steps.append(len(model.rollout_buffer.get().episode_index))
            model._clip_and_step = capture_gradient  # type: ignore[method-assign]
            train()

    model.train = checked_train  # type: ignore[method-assign]
    model.learn(700)
    assert len(expected) == 1
    return expected[0], captured, n_steps[0]


@pytest.mark.parametrize(
    "env_id, kwargs",
    [
        ("CartPole-v1", {"batch_size": 16, "minibatch_size": None, "clip_range": None}),
        ("CartPole-v1", {"batch_size": 4096, "minibatch_size": None, "clip_range": None}),
        ("CartPole-v1", {"batch_size": 16, "minibatch_size": None, "clip_range": None, "credit": "episode"}),
        ("CartPole-v1", {"minibatch_size": 100_000, "clip_range": 0.2}),
        ("Pendulum-v1", {"batch_size": 64, "minibatch_size": None, "clip_range": None}),
        ("CartPole-v1", {"batch_size": 16, "minibatch_size": None, "clip_range": None, "logit_noise_std": 2.0}),
        (
            "CartPole-v1",
            {"batch_size": 16, "minibatch_size": None, "clip_range": None, "credit": "episode", "logit_noise_std": 2.0},
        ),
        ("CartPole-v1", {"minibatch_size": 100_000, "clip_range": 0.2, "logit_noise_std": 2.0}),
    ],
    ids=[
        "chunks",
        "one-chunk",
        "episode-credit",
        "one-minibatch",
        "pendulum",
        "noise-chunks",
        "noise-episode",
        "noise-minibatch",
    ],
)
def test_update_gradient_equals_autograd(env_id, kwargs):
    """
    The first update's gradient (captured before clipping and the step) equals autograd through J plus the bonus:
    accumulated over chunks, in one chunk, and as the minibatch update's single full minibatch at ratio 1.
    """
    model = HAEPO(
        "MlpPolicy", env_id, n_episodes=3, n_epochs=1, ent_coef=0.3, weight_ent_coef=0.05, ref_kl_coef=0.1, seed=0, **kwargs
    )
    expected, captured, _ = first_update_gradients(model)
    assert len(captured) == 1
    assert expected.keys() == captured[0].keys()
    for name, gradient in expected.items():
        assert th.allclose(captured[0][name], gradient, rtol=1e-4, atol=1e-6), name


def test_minibatch_gradients_add_up_to_the_exact_gradient():
    """
    Several minibatches of the first epoch, each captured without a step (so all at the starting parameters, ratio
    1): their gradients weighted by minibatch / N add up to autograd's gradient of J plus the bonus, which checks
    the scaling of each minibatch's share of the bonus.
    """
    model = HAEPO(
        "MlpPolicy", "CartPole-v1", n_episodes=3, n_epochs=1, minibatch_size=16, clip_range=0.2, ent_coef=0.3, seed=0
    )
    expected, captured, n = first_update_gradients(model)
    sizes = [16] * (n // 16) + ([n % 16] if n % 16 else [])
    assert len(captured) == len(sizes) > 2
    for name, gradient in expected.items():
        total = sum(size / n * grads[name] for size, grads in zip(sizes, captured, strict=True))
        assert th.allclose(total, gradient, rtol=1e-4, atol=1e-6), name


def test_bonus_raises_the_policy_entropy():
    """On Pendulum, the same seed and budget: a strong bonus ends with a higher policy entropy than none."""
    entropies = []
    for ent_coef in (0.0, 1.0):
        model = HAEPO("MlpPolicy", "Pendulum-v1", n_episodes=2, ent_coef=ent_coef, seed=0)
        model.learn(2000)
        entropies.append(model.logger.name_to_value["train/policy_entropy"])
        assert model.logger.name_to_value["train/policy_entropy_loss"] == pytest.approx(-ent_coef * entropies[-1])
    assert entropies[1] > entropies[0] + 0.1, entropies
