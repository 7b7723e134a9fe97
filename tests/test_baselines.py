import math

import gymnasium as gym
import numpy as np
import pytest
import torch as th

import sb3_haepo.envs  # noqa: F401  (registers the envs)
from sb3_haepo import DPO, GRPO
from sb3_haepo.common.utils import dpo_loss, grpo_loss, grpo_step_advantages, pair_episodes_by_return


def test_grpo_step_advantages():
    # returns 1, 3: mean 2, population std 1 -> -1, +1, broadcast to the steps of each episode
    advantages = grpo_step_advantages(th.tensor([1.0, 3.0]), th.tensor([0, 0, 1]))
    th.testing.assert_close(advantages, th.tensor([-1.0, -1.0, 1.0]))
    # Equal returns: no signal, no NaN
    th.testing.assert_close(grpo_step_advantages(th.tensor([2.0, 2.0]), th.tensor([0, 1])), th.zeros(2))


def test_grpo_loss_hand_computed():
    log_probs = th.log(th.tensor([0.5, 0.5, 0.5])).requires_grad_(True)
    behaviour = th.log(th.tensor([0.25, 0.5, 1.0]))
    ref = th.log(th.tensor([0.25, 0.5, 0.5]))
    advantages = th.tensor([1.0, -1.0, -1.0])
    terms = grpo_loss(log_probs, behaviour, ref, advantages, clip_range=0.2, kl_coef=0.5)
    # ratios 2, 1, 0.5. min(2 * 1, 1.2 * 1) = 1.2; min(-1, -1) = -1; min(0.5 * -1, 0.8 * -1) = -0.8
    assert float(terms.policy_loss.detach()) == pytest.approx(-(1.2 - 1.0 - 0.8) / 3)
    # k3 with x = pi_ref / pi = 0.5, 1, 1: x - log x - 1 = 0.5 + log 2 - 1, 0, 0
    expected_kl = (0.5 + math.log(2) - 1) / 3
    assert float(terms.kl) == pytest.approx(expected_kl)
    assert float(terms.kl_loss.detach()) == pytest.approx(0.5 * expected_kl)
    assert float(terms.loss.detach()) == pytest.approx(0.6 / 3 + 0.5 * expected_kl)
    assert float(terms.clip_fraction) == pytest.approx(2 / 3)
    terms.loss.backward()
    assert log_probs.grad is not None
    # Step 0 and 2 are clipped (no policy gradient); KL gradient is kl_coef / N * (1 - x)
    # Step 1: -(1 / N) * A * ratio = 1 / 3
    th.testing.assert_close(log_probs.grad, th.tensor([0.5 / 3 * 0.5, 1 / 3, 0.0]))


def test_grpo_loss_bad_values():
    x = th.zeros(3)
    with pytest.raises(ValueError, match="shape"):
        grpo_loss(x, x, x, th.zeros(2), 0.2, 0.0)
    with pytest.raises(ValueError, match="clip_range"):
        grpo_loss(x, x, x, x, 0.0, 0.0)


def test_pair_episodes_by_return():
    winners, losers = pair_episodes_by_return(th.tensor([3.0, 1.0, 2.0, 5.0, 0.0]))
    # Sorted: 3 (5), 0 (3), 2 (2), 1 (1), 4 (0) -> (3, 4), (0, 1); the median episode 2 is left out
    assert winners.tolist() == [3, 0] and losers.tolist() == [4, 1]
    # Ties within a pair are dropped
    winners, losers = pair_episodes_by_return(th.tensor([1.0, 2.0, 1.0, 1.0]))
    assert winners.tolist() == [1] and losers.tolist() == [3]
    winners, losers = pair_episodes_by_return(th.ones(4))
    assert len(winners) == 0 and len(losers) == 0
    with pytest.raises(ValueError, match="shape"):
        pair_episodes_by_return(th.ones(2, 2))


def test_dpo_loss_hand_computed():
    scores = th.tensor([-1.0, -2.0, -3.0]).requires_grad_(True)
    ref_scores = th.tensor([-1.5, -1.5, -3.0])
    terms = dpo_loss(scores, ref_scores, th.tensor([0]), th.tensor([1]), beta=0.5)
    # margin = (-1 + 1.5) - (-2 + 1.5) = 1, logit 0.5, loss = log(1 + exp(-0.5))
    assert float(terms.loss.detach()) == pytest.approx(math.log(1 + math.exp(-0.5)))
    assert float(terms.accuracy) == 1.0
    terms.loss.backward()
    assert scores.grad is not None
    sig = 1 / (1 + math.exp(0.5))  # sigmoid(-0.5)
    th.testing.assert_close(scores.grad, th.tensor([-0.5 * sig, 0.5 * sig, 0.0]))
    # Two pairs: the mean of the two losses; a wrong-way pair has accuracy 0
    terms = dpo_loss(scores.detach(), ref_scores, th.tensor([0, 2]), th.tensor([1, 0]), beta=1.0)
    # pair 2: (0) - (0.5) = -0.5
    expected = (math.log(1 + math.exp(-1.0)) + math.log(1 + math.exp(0.5))) / 2
    assert float(terms.loss) == pytest.approx(expected)
    assert float(terms.accuracy) == 0.5
    # No pair: zero loss
    empty = th.zeros(0, dtype=th.long)
    assert float(dpo_loss(scores.detach(), ref_scores, empty, empty, beta=0.1).loss) == 0.0
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(scores, ref_scores, th.tensor([0]), th.tensor([1]), beta=0.0)


@pytest.mark.parametrize("model_class", [GRPO, DPO])
def test_smoke_save_load(model_class, tmp_path):
    model = model_class("MlpPolicy", "CartPole-v1", n_episodes=4, seed=0)
    model.learn(300)
    assert model.num_timesteps >= 300
    assert model.ref_policy is not model.policy
    obs = np.array([[0.01, 0.02, -0.03, 0.04]], dtype=np.float32)
    expected = model.predict(obs, deterministic=True)[0]
    model.save(tmp_path / "model.zip")
    loaded = model_class.load(tmp_path / "model.zip")
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], expected)
    for param, loaded_param in zip(model.ref_policy.parameters(), loaded.ref_policy.parameters(), strict=True):
        th.testing.assert_close(param, loaded_param)
    loaded.set_env(gym.make("CartPole-v1"))
    loaded.learn(100, reset_num_timesteps=False)


def test_continuous_actions():
    for model_class in (GRPO, DPO):
        model_class("MlpPolicy", "Pendulum-v1", n_episodes=2, seed=0).learn(400)


def test_bad_hyperparameters():
    with pytest.raises(ValueError, match="clip_range"):
        GRPO("MlpPolicy", "CartPole-v1", clip_range=0.0)
    with pytest.raises(ValueError, match="kl_coef"):
        GRPO("MlpPolicy", "CartPole-v1", kl_coef=-1.0)
    with pytest.raises(ValueError, match="beta"):
        DPO("MlpPolicy", "CartPole-v1", beta=0.0)
    with pytest.raises(ValueError, match="trajectory_score"):
        DPO("MlpPolicy", "CartPole-v1", trajectory_score="max")  # type: ignore[arg-type]


def test_dpo_gradient_does_not_depend_on_chunks():
    # The two-pass gradient accumulated over chunks of 7 steps equals the full-batch one
    params = []
    for batch_size in (4096, 7):
        model = DPO("MlpPolicy", "CartPole-v1", n_episodes=4, batch_size=batch_size, seed=3)
        model.learn(200)
        assert model._n_train_calls >= 1
        params.append(th.nn.utils.parameters_to_vector(model.policy.parameters()).detach())
    th.testing.assert_close(params[0], params[1], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("model_class,kwargs", [(GRPO, {"learning_rate": 3e-3}), (DPO, {"learning_rate": 3e-3, "beta": 1.0})])
def test_learns_easy_bandit(model_class, kwargs):
    # Gaussian arms with tiny noise: the best arm (arm 5, mean 0.9128; the next is 0.8133) is easy to find
    env = gym.make("sb3_haepo/Bandit-v0", n_arms=6, reward_distribution="gaussian", reward_std=0.01)
    best_arm = env.unwrapped.optimal_arm
    model = model_class("MlpPolicy", env, n_episodes=16, seed=0, **kwargs).learn(3000)
    obs = np.zeros((1, 1), dtype=np.float32)
    probs = model.policy.get_distribution(th.as_tensor(obs, device=model.device)).distribution.probs[0]
    assert int(probs.argmax()) == best_arm
    assert float(probs[best_arm]) > 0.5
