"""``credit_weighting="step"``: every step's advantage counts the same in the return term, whatever its episode's
length (docs/METHOD.md section 16). Hand-computed factors and coefficients, the model's update against the default's
with the advantages reweighted by hand, the streamed update against the one-chunk update, errors, save/load."""

import pytest
import torch as th
from stable_baselines3.common.envs import IdentityEnv
from test_step_credit import StopAfterFirstUpdate

from sb3_haepo import HAEPO
from sb3_haepo.common.utils import (
    episode_length_factors,
    reward_to_go_advantages,
    score_step_scale,
    step_credit_coefficients,
)
from sb3_haepo.haepo import haepo as haepo_module


def parameters(model: HAEPO) -> th.Tensor:
    return th.nn.utils.parameters_to_vector(model.policy.parameters()).detach()


def first_update(**kwargs) -> HAEPO:
    model = HAEPO("MlpPolicy", kwargs.pop("env", "CartPole-v1"), n_episodes=4, n_epochs=2, seed=0, **kwargs)
    model.learn(400, callback=StopAfterFirstUpdate())
    assert model._n_train_calls == 1
    return model


def test_episode_length_factors_by_hand():
    # Lengths 2 and 6: mean length 4, factors 2/4 and 6/4
    assert episode_length_factors(th.tensor([2, 6])).tolist() == [0.5, 1.5]
    # Lengths 1, 2, 3, 6: mean 3
    assert th.allclose(episode_length_factors(th.tensor([1, 2, 3, 6])), th.tensor([1 / 3, 2 / 3, 1.0, 2.0]))
    # Equal lengths: exactly 1
    assert episode_length_factors(th.tensor([7, 7, 7])).tolist() == [1.0, 1.0, 1.0]
    assert episode_length_factors(th.tensor([3, 5]), th.float64).dtype == th.float64


def test_episode_length_factors_errors():
    with pytest.raises(ValueError, match=r"shape \(M,\) with M >= 1, got \(0,\)"):
        episode_length_factors(th.tensor([], dtype=th.long))
    with pytest.raises(ValueError, match=r"shape \(M,\) with M >= 1, got \(1, 2\)"):
        episode_length_factors(th.tensor([[1, 2]]))
    with pytest.raises(ValueError, match=r"every episode length must be >= 1, got \[3, 0\]"):
        episode_length_factors(th.tensor([3, 0]))


def test_reweighted_advantages_push_every_step_equally():
    """Under the mean score the return term's coefficient of step t is -w_k A_{k,t} / T_k; with the advantages
    times T_k / Tbar it is -w_k A_{k,t} / Tbar = -w_k A_{k,t} M / N for every step."""
    lengths = th.tensor([1, 2, 5])
    episode_index = th.repeat_interleave(th.arange(3), lengths)
    advantages = th.tensor([0.5, -1.0, 2.0, 0.25, -0.75, 1.5, -2.0, 1.0])
    scores = th.tensor([-0.2, -1.1, -0.6])
    weights = th.softmax(scores, 0)
    scale = score_step_scale(episode_index, lengths, "mean")
    reweighted = advantages * episode_length_factors(lengths)[episode_index]
    coefficients = step_credit_coefficients(scores, scores, reweighted, episode_index, scale, 0.0, 0.0)
    # M / N = 3 / 8
    expected = -weights[episode_index] * advantages * 3 / 8
    assert th.allclose(coefficients, expected, atol=1e-7)
    # The default: each step of episode k gets 1 / T_k
    default = step_credit_coefficients(scores, scores, advantages, episode_index, scale, 0.0, 0.0)
    assert th.allclose(default, -weights[episode_index] * advantages / lengths[episode_index], atol=1e-7)


@pytest.mark.parametrize("mode", [{}, {"minibatch_size": None, "clip_range": None}])
def test_update_is_the_default_update_on_reweighted_advantages(monkeypatch, mode):
    """The option's update is the default's with each advantage multiplied by T_k / Tbar (CartPole: unequal lengths),
    bitwise, on the minibatch epochs and the one-chunk exact update; it differs from the default's update."""
    default = parameters(first_update(**mode))
    option = parameters(first_update(credit_weighting="step", **mode))
    assert not th.equal(default, option)

    def reweighted_advantages(rewards, lengths, gamma, **kwargs):
        advantages = reward_to_go_advantages(rewards, lengths, gamma, **kwargs)
        episode_index = th.repeat_interleave(th.arange(len(lengths)), lengths)
        return advantages * episode_length_factors(lengths, advantages.dtype)[episode_index]

    monkeypatch.setattr(haepo_module, "reward_to_go_advantages", reweighted_advantages)
    assert th.equal(parameters(first_update(**mode)), option)


def test_streamed_update_equals_the_one_chunk_update():
    """The exact update read in place over chunks of 7 steps (the advantages reweighted in the buffer's slot) is the
    one-chunk update, up to float rounding."""
    exact = {"minibatch_size": None, "clip_range": None, "credit_weighting": "step", "learning_rate": 0.03}
    one_chunk = parameters(first_update(**exact))
    streamed = parameters(first_update(batch_size=7, **exact))
    assert th.allclose(one_chunk, streamed, atol=1e-6)
    assert not th.equal(streamed, parameters(first_update(batch_size=7, **{**exact, "credit_weighting": "episode"})))


@pytest.mark.parametrize("mode", [{}, {"minibatch_size": None, "clip_range": None, "batch_size": 7}])
def test_equal_lengths_leave_the_update_unchanged(mode):
    """Episodes of equal length (IdentityEnv, 20 steps each): every factor is exactly 1, the same update bitwise."""
    updates = [
        parameters(first_update(env=IdentityEnv(4, ep_length=20), credit_weighting=weighting, **mode))
        for weighting in ("episode", "step")
    ]
    assert th.equal(updates[0], updates[1])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"credit_weighting": "steps"}, r"Unknown credit_weighting 'steps', allowed: \('episode', 'step'\)"),
        ({"credit_weighting": "step", "credit": "episode"}, r"got credit='episode' and trajectory_score='mean'"),
        ({"credit_weighting": "step", "trajectory_score": "sum"}, r"got credit='reward_to_go' and trajectory_score='sum'"),
    ],
)
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HAEPO("MlpPolicy", "CartPole-v1", **kwargs)


def test_save_load_keeps_the_option(tmp_path):
    model = first_update(credit_weighting="step")
    model.save(tmp_path / "model")
    loaded = HAEPO.load(tmp_path / "model", env=model.get_env())
    assert loaded.credit_weighting == "step"
    assert HAEPO("MlpPolicy", "CartPole-v1").credit_weighting == "episode"
