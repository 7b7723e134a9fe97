"""Tests of the pure trajectory-level math: hand-computed values and gradients checked against autograd."""

import math

import numpy as np
import pytest
import torch as th

from sb3_haepo.common.utils import (
    grpo_step_advantages,
    haepo_loss,
    haepo_score_gradient,
    normalize_returns,
    segment_sum,
    trajectory_scores,
    weight_diagnostics,
)


def test_segment_sum_and_scores_by_hand():
    # Episode 0 has steps 0, 2 (log-probs -1, -3); episode 1 has steps 1, 3, 4 (-2, -0.5, -0.5)
    log_probs = th.tensor([-1.0, -2.0, -3.0, -0.5, -0.5])
    episode_index = th.tensor([0, 1, 0, 1, 1])
    lengths = th.tensor([2, 3])
    assert th.allclose(segment_sum(log_probs, episode_index, 2), th.tensor([-4.0, -3.0]))
    assert th.allclose(trajectory_scores(log_probs, episode_index, lengths, "sum"), th.tensor([-4.0, -3.0]))
    assert th.allclose(trajectory_scores(log_probs, episode_index, lengths, "mean"), th.tensor([-2.0, -1.0]))


def test_scores_errors():
    with pytest.raises(ValueError, match="Unknown trajectory score 'median'"):
        trajectory_scores(th.zeros(2), th.zeros(2, dtype=th.long), th.tensor([2]), "median")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="same shape"):
        segment_sum(th.zeros(3), th.zeros(2, dtype=th.long), 1)


def test_normalize_returns_by_hand():
    returns = th.tensor([1.0, 2.0, 3.0, 6.0])
    # sum: R / sum R = R / 12
    assert th.allclose(normalize_returns(returns, "sum"), returns / 12.0)
    # zscore: mean 3, population std sqrt((4 + 1 + 0 + 9) / 4) = sqrt(3.5)
    expected = (returns - 3.0) / math.sqrt(3.5)
    assert th.allclose(normalize_returns(returns, "zscore"), expected, atol=1e-6)


@pytest.mark.parametrize("scheme", ["sum", "zscore"])
@pytest.mark.parametrize("value", [0.0, 5.0, -3.0])
def test_equal_returns_give_zero_signal_not_nan(scheme, value):
    normed = normalize_returns(th.full((4,), value), scheme)
    assert th.isfinite(normed).all()
    if scheme == "zscore" or value == 0.0:
        assert th.equal(normed, th.zeros(4))


@pytest.mark.parametrize("value,size", [(0.99, 8), (0.9987, 8), (-0.003, 10), (0.99, 16)])
def test_equal_non_integer_returns_give_exactly_zero(value, size):
    # float32's mean of these groups is not exact (0.99 x 8: the plain z-score gave +0.92 at every k; METHOD.md
    # section 7, choice 3), so only the guard makes the signal 0, with or without a floor and for GRPO's advantages
    returns = th.full((size,), value)
    assert (returns - returns.mean()).abs().max() > 0  # the case the guard is for
    assert th.equal(normalize_returns(returns, "zscore"), th.zeros(size))
    assert th.equal(normalize_returns(returns, "zscore", min_std=1.0), th.zeros(size))
    episode_index = th.tensor([0, 0, size - 1])
    assert th.equal(grpo_step_advantages(returns, episode_index), th.zeros(3))


def test_zscore_guard_leaves_unequal_groups_alone():
    # One return differing by a single float32 step is not an equal group: the plain z-score's own arithmetic,
    # bitwise (so every published run whose groups were never all equal is unchanged)
    for last in (1.99, float(np.nextafter(np.float32(0.99), np.float32(1.0)))):
        returns = th.tensor([0.99] * 7 + [last])
        plain = (returns - returns.mean()) / (returns.std(unbiased=False) + 1e-8)
        assert th.equal(normalize_returns(returns, "zscore"), plain)
        assert plain.abs().max() > 0.5
    assert th.equal(normalize_returns(th.empty(0), "zscore"), th.empty(0))


def test_sum_normalisation_negative_returns_fallback():
    # The total is negative: the paper's R / sum(R) would flip every sign. Our fallback divides by sum |R|.
    returns = th.tensor([-1.0, -3.0])
    normed = normalize_returns(returns, "sum")
    assert th.allclose(normed, th.tensor([-0.25, -0.75]))
    # Ordering is preserved: the better episode keeps the larger normalised return
    assert normed[0] > normed[1]
    # Total exactly zero: no division by zero
    assert th.allclose(normalize_returns(th.tensor([-2.0, 2.0]), "sum"), th.tensor([-0.5, 0.5]))


def test_normalize_errors():
    with pytest.raises(ValueError, match="Unknown return normalisation 'minmax'"):
        normalize_returns(th.ones(3), "minmax")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape"):
        normalize_returns(th.ones(3, 1), "sum")


def test_haepo_loss_terms_by_hand():
    # Two episodes, scores log(1) and log(3): w = (0.25, 0.75); reference scores equal: w_ref = (0.5, 0.5)
    scores = th.log(th.tensor([1.0, 3.0]))
    ref_scores = th.zeros(2)
    norm_returns = th.tensor([1.0, -1.0])
    beta, lam = 0.1, 0.2
    out = haepo_loss(scores, ref_scores, norm_returns, beta, lam)
    w = th.tensor([0.25, 0.75])
    assert th.allclose(out.log_weights.exp(), w)
    # return term: -(0.25 * 1 + 0.75 * -1) = 0.5
    assert math.isclose(float(out.return_loss), 0.5, rel_tol=1e-6)
    # entropy term: beta * sum w log w = 0.1 * (0.25 ln 0.25 + 0.75 ln 0.75)
    expected_ent = 0.1 * (0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert math.isclose(float(out.entropy_loss), expected_ent, rel_tol=1e-6)
    # KL term: lam * sum w (log w - log 0.5)
    expected_kl = 0.2 * (0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5))
    assert math.isclose(float(out.kl_loss), expected_kl, rel_tol=1e-6)
    assert math.isclose(float(out.loss), 0.5 + expected_ent + expected_kl, rel_tol=1e-6)


def test_entropy_sign_pushes_towards_uniform():
    # With no return signal and no KL, a gradient step on the scores must make the weights more uniform
    scores = th.tensor([2.0, 0.0, -1.0], requires_grad=True)
    loss = haepo_loss(scores, scores.detach(), th.zeros(3), weight_ent_coef=1.0, ref_kl_coef=0.0).loss
    loss.backward()
    assert scores.grad is not None
    new_scores = scores.detach() - 0.5 * scores.grad
    entropy_before = weight_diagnostics(th.log_softmax(scores.detach(), 0), scores.detach())["weight_entropy"]
    entropy_after = weight_diagnostics(th.log_softmax(new_scores, 0), new_scores)["weight_entropy"]
    assert entropy_after > entropy_before


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("beta, lam", [(0.0, 0.0), (0.05, 0.0), (0.0, 0.3), (0.01, 0.02)])
def test_analytic_score_gradient_equals_autograd(seed, beta, lam):
    gen = th.Generator().manual_seed(seed)
    scores = th.randn(7, generator=gen, dtype=th.float64).requires_grad_(True)
    ref_scores = th.randn(7, generator=gen, dtype=th.float64)
    norm_returns = th.randn(7, generator=gen, dtype=th.float64)
    haepo_loss(scores, ref_scores, norm_returns, beta, lam).loss.backward()
    analytic = haepo_score_gradient(scores.detach(), ref_scores, norm_returns, beta, lam)
    assert th.allclose(analytic, scores.grad, atol=1e-12)


@pytest.mark.parametrize("score", ["sum", "mean"])
def test_surrogate_gradient_equals_autograd_through_policy(score):
    """The two-pass surrogate sum_t c_k(t) dL/dlogp_t * logp_t has the gradient of J w.r.t. parameters."""
    gen = th.Generator().manual_seed(3)
    n_steps, n_episodes = 20, 4
    logits_param = th.randn(n_steps, 3, generator=gen, dtype=th.float64, requires_grad=True)
    actions = th.randint(0, 3, (n_steps,), generator=gen)
    episode_index = th.tensor([0] * 2 + [1] * 9 + [2] * 4 + [3] * 5)
    lengths = th.tensor([2, 9, 4, 5])
    norm_returns = th.randn(n_episodes, generator=gen, dtype=th.float64)
    ref_scores = th.randn(n_episodes, generator=gen, dtype=th.float64)

    def step_log_probs() -> th.Tensor:
        return th.distributions.Categorical(logits=logits_param).log_prob(actions)

    # Direct autograd through the loss
    scores = trajectory_scores(step_log_probs(), episode_index, lengths, score)
    haepo_loss(scores, ref_scores, norm_returns, 0.03, 0.07).loss.backward()
    direct = logits_param.grad.clone()
    logits_param.grad = None

    # Two passes: scores without a graph, then the surrogate
    with th.no_grad():
        detached_scores = trajectory_scores(step_log_probs(), episode_index, lengths, score)
    c = haepo_score_gradient(detached_scores, ref_scores, norm_returns, 0.03, 0.07)
    scale = 1.0 / lengths.double()[episode_index] if score == "mean" else th.ones(n_steps, dtype=th.float64)
    (c[episode_index] * scale * step_log_probs()).sum().backward()
    assert th.allclose(logits_param.grad, direct, atol=1e-12)


def test_weights_finite_and_sum_to_one_for_extreme_scores():
    scores = th.tensor([-1e5, -1e5 + 3.0, -2e5, 0.0, -1e5])
    out = haepo_loss(scores, scores, th.randn(5), 0.01, 0.01)
    weights = out.log_weights.exp()
    assert th.isfinite(out.log_weights[weights > 0]).all()
    assert th.isfinite(out.loss)
    assert math.isclose(float(weights.sum()), 1.0, rel_tol=1e-6)
    # Same-scale extreme scores: the softmax is computed in log space, so no underflow to 0/0
    extreme = th.tensor([-1e5, -1e5 - 1.0])
    weights = haepo_loss(extreme, extreme, th.zeros(2), 0.0, 0.0).log_weights.exp()
    assert th.allclose(weights, th.softmax(th.tensor([0.0, -1.0]), 0))
    grad = haepo_score_gradient(extreme, extreme, th.tensor([1.0, -1.0]), 0.01, 0.01)
    assert th.isfinite(grad).all()


def test_shift_invariance():
    gen = th.Generator().manual_seed(0)
    scores, ref_scores, norm_returns = th.randn(6, generator=gen), th.randn(6, generator=gen), th.randn(6, generator=gen)
    out = haepo_loss(scores, ref_scores, norm_returns, 0.02, 0.05)
    shifted = haepo_loss(scores + 123.0, ref_scores - 50.0, norm_returns, 0.02, 0.05)
    assert th.allclose(out.loss, shifted.loss, atol=1e-5)
    assert th.allclose(
        haepo_score_gradient(scores, ref_scores, norm_returns, 0.02, 0.05),
        haepo_score_gradient(scores + 123.0, ref_scores - 50.0, norm_returns, 0.02, 0.05),
        atol=1e-5,
    )


def test_kl_term_vanishes_when_reference_equals_policy():
    scores = th.tensor([0.3, -1.2, 2.0])
    c_with = haepo_score_gradient(scores, scores, th.zeros(3), 0.0, 0.5)
    assert th.allclose(c_with, th.zeros(3), atol=1e-7)


def test_weight_diagnostics_by_hand():
    uniform = weight_diagnostics(th.log(th.full((4,), 0.25)), th.zeros(4))
    assert math.isclose(uniform["weight_entropy"], math.log(4), rel_tol=1e-6)
    assert math.isclose(uniform["effective_n_episodes"], 4.0, rel_tol=1e-6)
    assert math.isclose(uniform["max_weight"], 0.25, rel_tol=1e-6)
    assert abs(uniform["ref_kl"]) < 1e-6
    # w = (0.5, 0.5, 0, 0)-like: effective number 2
    two = weight_diagnostics(th.log(th.tensor([0.5, 0.5, 1e-12, 1e-12])), th.zeros(4))
    assert math.isclose(two["effective_n_episodes"], 2.0, rel_tol=1e-4)
    assert math.isclose(two["ref_kl"], math.log(2.0), rel_tol=1e-4)


def test_loss_shape_errors():
    with pytest.raises(ValueError, match="same shape"):
        haepo_loss(th.zeros(3), th.zeros(2), th.zeros(3), 0.0, 0.0)
