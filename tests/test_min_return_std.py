"""
The floor of the z-score's divisor, ``min_return_std`` (docs/METHOD.md section 13): hand-computed values for both
normalisations and GRPO's advantages, the unchanged default, bad input, and the first update's size in HAEPO and GRPO.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium.wrappers import TransformReward

from sb3_haepo import GRPO, HAEPO
from sb3_haepo.common.episodic import EpisodicOnPolicyAlgorithm
from sb3_haepo.common.utils import grpo_step_advantages, normalize_returns, reward_to_go_advantages

# DeepSea without the treasure: returns that differ only by a move cost of 0.001
COSTS = th.tensor([0.0, -0.001, -0.002, -0.001])


def test_normalize_returns_floor_by_hand():
    # mean -0.001; population std sqrt(0.5e-6) ~ 7.07e-4 < 0.1: divided by the floor
    expected = th.tensor([0.001, 0.0, -0.001, 0.0]) / 0.1
    assert th.allclose(normalize_returns(COSTS, "zscore", min_std=0.1), expected, atol=1e-6)
    # Without the floor the same returns become a unit-size signal
    plain = normalize_returns(COSTS, "zscore")
    assert float(plain.std(unbiased=False)) == pytest.approx(1.0, abs=1e-4)
    # A std above the floor: the plain z-score, bitwise
    returns = th.tensor([1.0, 3.0, -2.0, 0.5])
    assert th.equal(normalize_returns(returns, "zscore", min_std=0.1), normalize_returns(returns, "zscore"))
    # "sum" ignores it
    assert th.equal(normalize_returns(returns, "sum", min_std=5.0), normalize_returns(returns, "sum"))


def test_reward_to_go_advantages_floor_by_hand():
    # Two episodes of 2 steps, gamma 1: G = (0, -0.001) and (-0.002, -0.002); b_0 = -0.001, b_1 = -0.0015;
    # deviations (0.001, 0.0005, -0.001, -0.0005), std ~ 7.9e-4 < 0.01: divided by the floor
    rewards = th.tensor([0.001, -0.001, 0.0, -0.002])
    lengths = th.tensor([2, 2])
    floored = reward_to_go_advantages(rewards, lengths, 1.0, min_std=0.01)
    assert th.allclose(floored, th.tensor([0.1, 0.05, -0.1, -0.05]), atol=1e-5)
    plain = reward_to_go_advantages(rewards, lengths, 1.0)
    assert float(plain.std(unbiased=False)) == pytest.approx(1.0, abs=1e-4)
    assert th.equal(reward_to_go_advantages(rewards, lengths, 1.0, min_std=1e-6), plain)


def test_grpo_step_advantages_floor_by_hand():
    # Episodes 0-3 with COSTS' returns, of 2, 1, 1 and 1 steps: each step gets its episode's floored z-score
    episode_index = th.tensor([0, 0, 1, 2, 3])
    floored = grpo_step_advantages(COSTS, episode_index, min_std=0.1)
    assert th.allclose(floored, th.tensor([0.01, 0.01, 0.0, -0.01, 0.0]), atol=1e-6)
    # The default is GRPO's plain z-score, bitwise
    plain = grpo_step_advantages(COSTS, episode_index)
    assert th.equal(plain, normalize_returns(COSTS, "zscore")[episode_index])
    assert float(plain[0]) == pytest.approx(0.001 / np.sqrt(0.5e-6), rel=1e-4)


@pytest.mark.parametrize("value", [-0.1, float("nan"), float("inf"), "0.1", True])
def test_bad_min_return_std(value):
    with pytest.raises(ValueError, match=r"min_return_std must be a finite number >= 0, got"):
        HAEPO("MlpPolicy", "CartPole-v1", min_return_std=value)
    with pytest.raises(ValueError, match=r"min_return_std must be a finite number >= 0, got"):
        GRPO("MlpPolicy", "CartPole-v1", min_return_std=value)
    with pytest.raises(ValueError, match=r"min_std must be a finite number >= 0, got"):
        normalize_returns(COSTS, "zscore", min_std=value)


def test_min_return_std_needs_the_zscore():
    message = r"min_return_std=0.5 is a floor of the z-score's divisor: it needs normalize_returns='zscore', got 'sum'"
    with pytest.raises(ValueError, match=message):
        HAEPO("MlpPolicy", "CartPole-v1", credit="episode", normalize_returns="sum", min_return_std=0.5)
    # numpy scalars are numbers too
    assert HAEPO("MlpPolicy", "CartPole-v1", min_return_std=np.float32(0.5), _init_setup_model=False).min_return_std == 0.5


def _first_update_move(model: EpisodicOnPolicyAlgorithm) -> float:
    """:return: how far (L2) the model's first update moves its parameters (learning stops after it)"""
    before = th.nn.utils.parameters_to_vector(model.policy.parameters()).detach().clone()
    train, calls = model.train, []

    def train_once(train=train, calls=calls) -> None:
        if not calls:
            calls.append(1)
            train()

    model.train = train_once  # type: ignore[method-assign]
    model.learn(300)
    assert calls == [1]
    return float((th.nn.utils.parameters_to_vector(model.policy.parameters()).detach() - before).norm())


def _small_reward_cartpole() -> gym.Env:
    """CartPole with its rewards scaled by 1e-4: a group's returns then differ by about 1e-3"""
    return TransformReward(gym.make("CartPole-v1"), lambda reward: 1e-4 * reward)


# One exact plain-SGD step with no regulariser, per algorithm: HAEPO's full-batch update without beta and lam; GRPO's
# first minibatch holds the whole group, where every ratio is exactly 1 (no clipping), without its KL term
FIRST_UPDATE_SETTINGS = {
    HAEPO: dict(minibatch_size=None, clip_range=None, weight_ent_coef=0.0, ref_kl_coef=0.0),
    GRPO: dict(batch_size=100_000, kl_coef=0.0, max_grad_norm=1e9),
}


@pytest.mark.parametrize("algo", [HAEPO, GRPO])
def test_the_floor_shrinks_the_first_update_on_small_returns(algo):
    """
    On small returns, with a floor of 1 the first update (plain SGD, one exact step, no regularisers, so linear in the
    normalised returns) moves the parameters about 1e-3 times as far as with the plain z-score, which rescales any
    difference to unit size.
    """
    moves = []
    for min_return_std in (0.0, 1.0):
        model = algo(
            "MlpPolicy",
            _small_reward_cartpole(),
            n_episodes=4,
            n_epochs=1,
            min_return_std=min_return_std,
            learning_rate=0.01,
            policy_kwargs={"optimizer_class": th.optim.SGD},
            seed=0,
            **FIRST_UPDATE_SETTINGS[algo],
        )
        assert model.min_return_std == min_return_std
        moves.append(_first_update_move(model))
    assert moves[0] > 0
    assert moves[1] / moves[0] < 0.05, moves
