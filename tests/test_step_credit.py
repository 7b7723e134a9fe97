"""Per-step credit (``credit="reward_to_go"``): hand-computed reward-to-go and advantages, the gradient against
autograd, its reduction to the episode-level update, and learning on SB3's identity envs."""

import itertools

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.envs import IdentityEnv, IdentityEnvMultiDiscrete
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from sb3_haepo import EPISODE_CREDIT_PRESET, HAEPO, PAPER_PRESET
from sb3_haepo.common.utils import (
    clipped_step_loss,
    discounted_reward_to_go,
    epoch_minibatch_size,
    haepo_score_gradient,
    normalize_returns,
    reward_to_go_advantages,
    reward_to_go_advantages_into,
    score_step_scale,
    step_credit_coefficients,
    step_credit_loss,
    step_times,
    trajectory_scores,
)

# Two episodes: rewards (1, 0, 2) and (3, 1)
REWARDS = th.tensor([1.0, 0.0, 2.0, 3.0, 1.0])
LENGTHS = th.tensor([3, 2])


def test_reward_to_go_by_hand():
    # gamma = 0.5: episode 0: G_2 = 2, G_1 = 0 + 0.5 * 2 = 1, G_0 = 1 + 0.5 * 1 = 1.5; episode 1: G_1 = 1, G_0 = 3.5
    assert discounted_reward_to_go(REWARDS, LENGTHS, 0.5).tolist() == [1.5, 1.0, 2.0, 3.5, 1.0]
    # gamma = 1: reversed cumulative sums
    assert discounted_reward_to_go(REWARDS, LENGTHS, 1.0).tolist() == [3.0, 2.0, 2.0, 4.0, 1.0]
    assert step_times(LENGTHS).tolist() == [0, 1, 2, 0, 1]


def test_reward_to_go_at_step_zero_is_the_buffer_return():
    """G_{k,0} is the episode return R_k = sum_t gamma^t r_t that the buffer accumulates."""
    model = HAEPO("MlpPolicy", "CartPole-v1", gamma=0.9, n_episodes=4, seed=0)
    model.learn(300)
    batch = model.rollout_buffer.get()
    reward_to_go = discounted_reward_to_go(batch.rewards, batch.lengths, 0.9)
    starts = th.cumsum(batch.lengths, 0) - batch.lengths
    assert th.allclose(reward_to_go[starts], batch.returns, rtol=1e-6)


@pytest.mark.parametrize("gamma", [1e-6, 0.999, 1.0])
def test_reward_to_go_finite_for_long_episodes(gamma):
    """A 200k-step episode of constant reward: G_t = (1 - gamma^(T - t)) / (1 - gamma), finite for any gamma."""
    length = 200_000
    reward_to_go = discounted_reward_to_go(th.ones(length), th.tensor([length]), gamma)
    assert th.isfinite(reward_to_go).all()
    remaining = th.arange(length, 0, -1, dtype=th.float64)
    expected = remaining if gamma == 1.0 else (1 - gamma**remaining) / (1 - gamma)
    assert th.allclose(reward_to_go.double(), expected, rtol=1e-5)


def test_reward_to_go_errors():
    with pytest.raises(ValueError, match=r"The episode lengths sum to 4 but there are 5 rewards"):
        discounted_reward_to_go(REWARDS, th.tensor([3, 1]), 0.5)
    with pytest.raises(ValueError, match=r"gamma must be a finite number in \(0, 1\], got 0.0"):
        discounted_reward_to_go(REWARDS, LENGTHS, 0.0)


def test_advantages_by_hand():
    # gamma = 0.5: G = (1.5, 1, 2 | 3.5, 1). Baselines: t=0: 2.5, t=1: 1, t=2: 2 (episode 0 alone)
    # G - b = (-1, 0, 0 | 1, 0), population std sqrt(2 / 5)
    advantages = reward_to_go_advantages(REWARDS, LENGTHS, 0.5)
    expected = th.tensor([-1.0, 0.0, 0.0, 1.0, 0.0]) / np.sqrt(2 / 5)
    assert th.allclose(advantages, expected, atol=1e-6)


def test_advantages_equal_episodes_give_zero_not_nan():
    advantages = reward_to_go_advantages(th.ones(6), th.tensor([3, 3]), 0.99)
    assert advantages.tolist() == [0.0] * 6


def test_advantages_have_zero_mean_at_every_time():
    gen = th.Generator().manual_seed(0)
    lengths = th.tensor([5, 9, 2, 9, 1])
    advantages = reward_to_go_advantages(th.randn(int(lengths.sum()), generator=gen), lengths, 0.9)
    times = step_times(lengths)
    per_time = th.zeros(9).index_add_(0, times, advantages)
    assert th.allclose(per_time, th.zeros(9), atol=1e-5)
    assert abs(float(advantages.std(unbiased=False)) - 1.0) < 1e-5


@pytest.mark.parametrize("chunk", [1, 3, 7, 16384])
def test_advantages_do_not_depend_on_the_chunk(monkeypatch, chunk):
    """The step times are formed chunk by chunk (memory); any chunk size gives the same values, bitwise, as the whole
    group at once, with the baseline written out per time (empty episodes included)."""
    import sb3_haepo.common.utils as utils

    gen = th.Generator().manual_seed(3)
    lengths = th.tensor([5, 0, 9, 2, 9, 1, 0])
    rewards = th.randn(int(lengths.sum()), generator=gen)
    monkeypatch.setattr(utils, "ADVANTAGE_CHUNK_STEPS", chunk)
    advantages = reward_to_go_advantages(rewards, lengths, 0.9)
    reward_to_go = discounted_reward_to_go(rewards, lengths, 0.9).double()
    times = step_times(lengths)
    assert th.equal(step_times(lengths, 4, 20), times[4:20])
    assert th.equal(times, th.tensor([t for length in lengths.tolist() for t in range(length)]))
    baseline = th.stack([reward_to_go[times == t].mean() for t in range(9)])
    deviations = reward_to_go - baseline[times]
    expected = (deviations / (float(deviations.std(unbiased=False)) + 1e-8)).float()
    assert th.allclose(advantages, expected, atol=1e-6)
    monkeypatch.setattr(utils, "ADVANTAGE_CHUNK_STEPS", 10**6)
    assert th.equal(advantages, reward_to_go_advantages(rewards, lengths, 0.9))


def random_group(seed: int) -> tuple[th.Tensor, ...]:
    gen = th.Generator().manual_seed(seed)
    lengths = th.tensor([2, 9, 4, 5])
    episode_index = th.repeat_interleave(th.arange(4), lengths)
    log_probs = -th.rand(int(lengths.sum()), generator=gen, dtype=th.float64) * 3
    ref_scores = th.randn(4, generator=gen, dtype=th.float64)
    advantages = th.randn(int(lengths.sum()), generator=gen, dtype=th.float64)
    return lengths, episode_index, log_probs, ref_scores, advantages


@pytest.mark.parametrize("score", ["sum", "mean"])
@pytest.mark.parametrize("beta, lam", [(0.0, 0.0), (0.05, 0.0), (0.0, 0.3), (0.01, 0.02)])
def test_step_credit_coefficients_equal_autograd(score, beta, lam):
    lengths, episode_index, log_probs, ref_scores, advantages = random_group(1)
    log_probs.requires_grad_(True)
    step_credit_loss(log_probs, episode_index, lengths, ref_scores, advantages, score, beta, lam).loss.backward()
    scores = trajectory_scores(log_probs.detach(), episode_index, lengths, score)
    scale = score_step_scale(episode_index, lengths, score, th.float64)
    analytic = step_credit_coefficients(scores, ref_scores, advantages, episode_index, scale, beta, lam)
    assert th.allclose(analytic, log_probs.grad, atol=1e-12)


@pytest.mark.parametrize("score", ["sum", "mean"])
def test_step_credit_reduces_to_episode_credit(score):
    """With A_{k,t} = Rn_k - sum_j w_j Rn_j at every step, the coefficients are the episode-level update's."""
    lengths, episode_index, log_probs, ref_scores, _ = random_group(2)
    norm_returns = normalize_returns(th.tensor([1.0, 5.0, 2.0, 0.0], dtype=th.float64))
    scores = trajectory_scores(log_probs, episode_index, lengths, score)
    weights = th.softmax(scores, 0)
    advantages = (norm_returns - (weights * norm_returns).sum())[episode_index]
    scale = score_step_scale(episode_index, lengths, score, th.float64)
    step_credit = step_credit_coefficients(scores, ref_scores, advantages, episode_index, scale, 0.03, 0.07)
    episode = haepo_score_gradient(scores, ref_scores, norm_returns, 0.03, 0.07)[episode_index] * scale
    assert th.allclose(step_credit, episode, atol=1e-12)


def test_step_credit_coefficient_by_hand():
    """beta = lam = 0, equal scores (w = 1/2), mean score: coefficient = -A_{k,t} / (2 T_k)."""
    lengths = th.tensor([2, 1])
    episode_index = th.tensor([0, 0, 1])
    scores = th.zeros(2)
    advantages = th.tensor([1.0, -2.0, 4.0])
    scale = score_step_scale(episode_index, lengths, "mean")
    coefficients = step_credit_coefficients(scores, scores, advantages, episode_index, scale, 0.0, 0.0)
    assert th.allclose(coefficients, th.tensor([-0.25, 0.5, -2.0]))


def test_step_credit_shape_errors():
    with pytest.raises(ValueError, match=r"must have the same shape \(n_steps,\), got \(3,\), \(2,\) and \(2,\)"):
        step_credit_coefficients(th.zeros(2), th.zeros(2), th.zeros(3), th.zeros(2, dtype=th.long), th.ones(2), 0, 0)


@pytest.mark.parametrize("env_class", [IdentityEnv, IdentityEnvMultiDiscrete])
def test_reward_to_go_learns_identity_envs(env_class):
    """SB3's identity envs with the tests' per-step discount gamma=0.4, 5k steps, seed 0: reach 90 of 100."""
    env = Monitor(env_class(4))
    model = HAEPO("MlpPolicy", env, credit="reward_to_go", gamma=0.4, seed=0, device="cpu")
    model.learn(5000)
    env.reset(seed=1000)
    env.action_space.seed(1000)
    mean, _ = evaluate_policy(model, env, n_eval_episodes=20)
    assert mean >= 90


def test_presets():
    model = HAEPO("MlpPolicy", "CartPole-v1", **PAPER_PRESET)
    assert (model.credit, model.trajectory_score, model.gamma) == ("episode", "sum", 1.0)
    assert (model.minibatch_size, model.clip_range) == (None, None)
    model = HAEPO("MlpPolicy", "CartPole-v1", **EPISODE_CREDIT_PRESET)
    assert (model.credit, model.trajectory_score, model.gamma, model.n_epochs) == ("episode", "mean", 1.0, 4)
    assert (model.minibatch_size, model.clip_range, model.learning_rate) == (None, None, 3e-3)


@pytest.mark.parametrize("clip_range", [None, 0.2])
def test_clipped_surrogate_gradient_at_ratio_one_is_exact(clip_range):
    """At rho = 1 the clipped surrogate's gradient is the exact per-step coefficient c_t (step_credit_coefficients)."""
    lengths, episode_index, log_probs, ref_scores, advantages = random_group(4)
    scores = trajectory_scores(log_probs, episode_index, lengths, "mean")
    scale = score_step_scale(episode_index, lengths, "mean", th.float64)
    coef = step_credit_coefficients(scores, ref_scores, advantages, episode_index, scale, 0.03, 0.07)
    return_coef = th.softmax(scores, 0)[episode_index] * scale * advantages
    current = log_probs.clone().requires_grad_(True)
    terms = clipped_step_loss(current, log_probs, coef, return_coef, clip_range)
    terms.loss.backward()
    assert th.allclose(current.grad, coef, atol=1e-12)
    assert float(terms.clip_fraction) == 0.0


def test_clipped_surrogate_by_hand():
    """Ratios e^0.5 (outside 1 +- 0.2) and e^-0.5: the clip removes the return term's push only where the ratio has
    moved in the direction of its advantage; the regulariser part (c + a) log pi always acts."""
    log_probs = th.tensor([0.5, -0.5, 0.5, -0.5], dtype=th.float64, requires_grad=True)
    old = th.zeros(4, dtype=th.float64)
    return_coef = th.tensor([1.0, 1.0, -1.0, -1.0], dtype=th.float64)
    step_coef = -return_coef + 0.1  # c_t = -a_t + (regulariser part 0.1)
    terms = clipped_step_loss(log_probs, old, step_coef, return_coef, 0.2)
    terms.loss.backward()
    ratio = th.exp(log_probs.detach())
    # step 0: a > 0, rho > 1.2: clipped, no return-term gradient; step 1: a > 0, rho < 0.8: unclipped, -a rho
    # step 2: a < 0, rho > 1.2: unclipped (min picks rho * a), -a rho; step 3: a < 0, rho < 0.8: clipped
    expected = th.tensor([0.0, -ratio[1], ratio[2], 0.0], dtype=th.float64) + 0.1
    assert th.allclose(log_probs.grad, expected, atol=1e-12)
    assert float(terms.clip_fraction) == 1.0


def test_clipped_surrogate_errors():
    with pytest.raises(ValueError, match=r"clip_range must be a finite number > 0 or None \(no clipping\), got 0.0"):
        clipped_step_loss(th.zeros(2), th.zeros(2), th.zeros(2), th.zeros(2), 0.0)
    with pytest.raises(ValueError, match=r"Expected 1D tensors of the same shape"):
        clipped_step_loss(th.zeros(2), th.zeros(3), th.zeros(2), th.zeros(2), 0.2)


class StopAfterFirstUpdate(BaseCallback):
    """Stop learn() once the first update is done."""

    def _on_step(self) -> bool:
        return self.model._n_train_calls == 0


@pytest.mark.parametrize("credit", ["episode", "reward_to_go"])
def test_one_full_minibatch_unclipped_equals_exact_update(credit):
    """minibatch_size >= N with one epoch: the clipped update's single step is the exact update's step."""

    params = []
    for kwargs in ({"minibatch_size": None, "clip_range": None}, {"minibatch_size": 100_000, "clip_range": 0.2}):
        model = HAEPO("MlpPolicy", "CartPole-v1", n_episodes=4, n_epochs=1, credit=credit, seed=0, **kwargs)
        model.learn(300, callback=StopAfterFirstUpdate())
        assert model._n_train_calls == 1
        params.append(th.nn.utils.parameters_to_vector(model.policy.parameters()).detach())
    assert th.allclose(params[0], params[1], atol=1e-6)


def test_epoch_minibatch_size_by_hand():
    # No cap: the minibatch as given, or the whole group
    assert epoch_minibatch_size(100, 64) == 64
    assert epoch_minibatch_size(100, None) == 100
    assert epoch_minibatch_size(10, 64) == 10
    # A cap that does not bind: ceil(200 / 64) = 4 minibatches <= 4
    assert epoch_minibatch_size(200, 64, 4) == 64
    # A cap that binds: ceil(1000 / 4) = 250 steps, 4 minibatches; ceil(1001 / 4) = 251, and ceil(1001 / 251) = 4
    assert epoch_minibatch_size(1000, 64, 4) == 250
    assert epoch_minibatch_size(1001, 64, 4) == 251
    assert epoch_minibatch_size(1001, 64, 1) == 1001
    # The 10^5-step walk's first group (LEARNING.md entry 38): 674,262 steps, 16 minibatches of 42,142 steps
    assert epoch_minibatch_size(674_262, 64, 16) == 42_142
    with pytest.raises(ValueError, match=r"n_steps must be an integer >= 1, got 0"):
        epoch_minibatch_size(0, 64)
    with pytest.raises(ValueError, match=r"minibatch_size must be an integer >= 1 or None, got 0"):
        epoch_minibatch_size(10, 0)
    with pytest.raises(ValueError, match=r"max_minibatches must be an integer >= 1 or None, got 0"):
        epoch_minibatch_size(10, 64, 0)


def test_epoch_minibatch_size_caps_the_steps_of_an_epoch():
    """For any group, minibatch and cap: at most K minibatches, never smaller than asked, the fewest such."""
    for n_steps, minibatch_size, cap in itertools.product([1, 7, 64, 1000, 12_345], [1, 5, 64, 4096], [1, 2, 3, 16]):
        size = epoch_minibatch_size(n_steps, minibatch_size, cap)
        assert -(-n_steps // size) <= cap
        assert size >= min(minibatch_size, n_steps)
        assert size == min(minibatch_size, n_steps) or -(-n_steps // (size - 1)) > cap


def count_optimizer_steps(model: HAEPO) -> list[list[int]]:
    """Wrap the model's optimizer step and train(): one [group steps, optimizer steps] pair per update."""
    counts: list[list[int]] = []
    optimizer_step, train = model.policy.optimizer.step, model.train

    def counting_step(*args, **kwargs):
        counts[-1][1] += 1
        return optimizer_step(*args, **kwargs)

    def counting_train():
        counts.append([len(model.rollout_buffer.get().episode_index), 0])
        train()

    model.policy.optimizer.step = counting_step
    model.train = counting_train
    return counts


def test_minibatch_steps_per_epoch():
    """One optimizer step per minibatch: 3 epochs of ceil(N / 16) steps on a group of N steps."""
    model = HAEPO("MlpPolicy", "CartPole-v1", n_episodes=4, n_epochs=3, minibatch_size=16, clip_range=0.2, seed=0)
    counts = count_optimizer_steps(model)
    model.learn(300)
    assert len(counts) >= 1
    assert all(n_optimizer_steps == 3 * -(-n_steps // 16) for n_steps, n_optimizer_steps in counts)


def test_max_minibatches_caps_the_optimizer_steps_of_an_update():
    """
    With max_minibatches=3 every epoch takes 3 steps on groups of more than 48 steps (4 random CartPole episodes:
    about 90), where minibatch_size=16 alone takes ceil(N / 16), and the steps of an update stay at n_epochs * 3.
    """
    model = HAEPO(
        "MlpPolicy", "CartPole-v1", n_episodes=4, n_epochs=3, minibatch_size=16, max_minibatches=3, clip_range=0.2, seed=0
    )
    counts = count_optimizer_steps(model)
    model.learn(300)
    assert len(counts) >= 2 and all(n_steps > 48 for n_steps, _ in counts)
    assert all(n_optimizer_steps == 3 * 3 for _, n_optimizer_steps in counts)


def test_max_minibatches_never_binds_on_full_batch_epochs():
    """With minibatch_size=None an epoch is one step: any cap leaves the update as it is, step for step."""
    counts = []
    for kwargs in ({}, {"max_minibatches": 1}):
        model = HAEPO("MlpPolicy", "CartPole-v1", n_episodes=4, n_epochs=3, minibatch_size=None, seed=0, **kwargs)
        counts.append(count_optimizer_steps(model))
        model.learn(300)
    assert counts[0] == counts[1] and all(n_optimizer_steps == 3 for _, n_optimizer_steps in counts[0])


@pytest.mark.parametrize("ent_coef", [0.0, 0.05])
def test_large_minibatch_accumulated_over_chunks_equals_one_chunk(ent_coef):
    """
    A minibatch larger than batch_size (max_minibatches) is accumulated over chunks of batch_size steps: the same
    update as evaluating it at once, up to float rounding, with the same clip fraction.
    """

    params, clip_fractions, chunk_sizes = [], [], []
    for batch_size in (4096, 7):
        model = HAEPO(
            "MlpPolicy",
            "CartPole-v1",
            n_episodes=4,
            n_epochs=2,
            minibatch_size=16,
            max_minibatches=2,
            batch_size=batch_size,
            ent_coef=ent_coef,
            learning_rate=0.03,
            seed=0,
        )
        step_log_probs = model._step_log_probs

        def recording_step_log_probs(policy, batch, size, step_log_probs=step_log_probs, batch_size=batch_size):
            if th.is_grad_enabled():
                chunk_sizes.append((batch_size, len(batch.episode_index)))
            return step_log_probs(policy, batch, size)

        model._step_log_probs = recording_step_log_probs
        model.learn(300, callback=StopAfterFirstUpdate())
        assert model._n_train_calls == 1
        params.append(th.nn.utils.parameters_to_vector(model.policy.parameters()).detach())
        clip_fractions.append(model.logger.name_to_value["train/clip_fraction"])
    assert not th.equal(
        params[0], th.nn.utils.parameters_to_vector(HAEPO("MlpPolicy", "CartPole-v1", seed=0).policy.parameters())
    )
    assert th.allclose(params[0], params[1], atol=1e-6)
    assert clip_fractions[0] == pytest.approx(clip_fractions[1], abs=1e-6)
    assert clip_fractions[0] > 0
    # With batch_size=7 the graph is built 7 steps at a time (the minibatches hold about 45 steps), with 4096 whole
    assert max(size for batch_size, size in chunk_sizes if batch_size == 7) == 7
    assert max(size for batch_size, size in chunk_sizes if batch_size == 4096) > 7


@pytest.mark.parametrize("chunk", [1, 3, 7, 1024])
@pytest.mark.parametrize("gamma, min_std", [(0.9, 0.0), (1.0, 0.0), (0.99, 5.0)])
def test_advantages_into_episode_arrays_equal_the_batch_advantages(chunk, gamma, min_std):
    """
    reward_to_go_advantages_into (the streamed update's: episodes as separate arrays, written in place, a chunk of
    steps and a window of times at a time) gives reward_to_go_advantages's values up to float32 rounding, for any
    chunk, with empty and one-step episodes, and also when it overwrites the rewards themselves.
    """
    lengths = [5, 0, 9, 2, 9, 1, 30]
    rewards = th.randn(sum(lengths), generator=th.Generator().manual_seed(4))
    expected = reward_to_go_advantages(rewards, th.tensor(lengths), gamma, min_std=min_std).numpy()
    bounds = np.cumsum([0, *lengths]).tolist()
    spans = list(itertools.pairwise(bounds))
    out = np.full(sum(lengths), np.nan, np.float32)
    episode_rewards = [rewards.numpy()[start:stop] for start, stop in spans]
    reward_to_go_advantages_into(episode_rewards, [out[start:stop] for start, stop in spans], gamma, chunk, min_std=min_std)
    np.testing.assert_allclose(out, expected, atol=2e-6, rtol=0)
    # In place: the rewards' own arrays receive the advantages
    in_place = rewards.numpy().copy()
    views = [in_place[start:stop] for start, stop in spans]
    reward_to_go_advantages_into(views, views, gamma, chunk, min_std=min_std)
    np.testing.assert_allclose(in_place, expected, atol=2e-6, rtol=0)


def test_advantages_into_errors():
    episode = [np.ones(3, np.float32)]
    with pytest.raises(ValueError, match=r"chunk_steps must be an integer >= 1, got 0"):
        reward_to_go_advantages_into(episode, [np.zeros(3, np.float32)], 0.9, chunk_steps=0)
    with pytest.raises(ValueError, match=r"gamma must be a finite number in \(0, 1\], got 1.5"):
        reward_to_go_advantages_into(episode, [np.zeros(3, np.float32)], 1.5)
    with pytest.raises(ValueError, match=r"the same number of episodes, of the same lengths"):
        reward_to_go_advantages_into(episode, [np.zeros(2, np.float32)], 0.9)
    with pytest.raises(ValueError, match=r"min_std must be a finite number >= 0, got -1"):
        reward_to_go_advantages_into(episode, [np.zeros(3, np.float32)], 0.9, min_std=-1)
