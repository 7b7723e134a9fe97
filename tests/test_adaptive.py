"""
Adaptive beta and lam (``weight_ent_coef="auto"``, ``ref_kl_coef="auto"``) and the frozen reference
(``ref_update_interval=None``): docs/METHOD.md section 10.
"""

import itertools
import math
import warnings

import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env

from sb3_haepo import DPO, GRPO, HAEPO
from sb3_haepo.common.utils import (
    ADAPTIVE_COEF_MAX,
    ADAPTIVE_COEF_MIN,
    ADAPTIVE_COEF_START,
    adapt_ref_kl_coef,
    adapt_weight_ent_coef,
    default_target_weight_entropy,
    parse_adaptive_coef,
    weight_diagnostics,
)

SMALL = dict(n_episodes=4, n_epochs=2, policy_kwargs=dict(net_arch=[16]), seed=0, device="cpu")
AUTO = dict(weight_ent_coef="auto", ref_kl_coef="auto")


def flat(module: th.nn.Module) -> th.Tensor:
    return th.nn.utils.parameters_to_vector(module.parameters()).detach().clone()


def record_updates(model) -> list[dict]:
    """
    Make ``model`` record, for every update, the values it logged, the policy before the update, and the weight
    entropy and KL of its group recomputed here from the updated policy and the reference.
    """
    records: list[dict] = []
    train = model.train

    def recording_train() -> None:
        batch = model.rollout_buffer.get()
        policy_before = flat(model.policy)
        train()
        score = getattr(model, "trajectory_score", "mean")  # GRPO has no trajectory score
        scores = model._episode_scores(model.policy, batch, score)
        ref_scores = model._episode_scores(model.ref_policy, batch, score)
        records.append(
            {
                "logged": dict(model.logger.name_to_value),
                "policy_before": policy_before,
                "ref": flat(model.ref_policy),
                "n_episodes": len(batch.returns),
                **weight_diagnostics(th.log_softmax(scores, dim=0), ref_scores),
            }
        )

    model.train = recording_train
    return records


# The pure functions, on hand-made numbers


@pytest.mark.parametrize(
    "value, expected",
    [
        (0.02, (0.02, False)),
        (0, (0.0, False)),
        ("auto", (ADAPTIVE_COEF_START, True)),
        ("auto_0.1", (0.1, True)),
        ("auto_1e-3", (1e-3, True)),
        (f"auto_{ADAPTIVE_COEF_MAX}", (ADAPTIVE_COEF_MAX, True)),
    ],
)
def test_parse_adaptive_coef(value, expected):
    assert parse_adaptive_coef("weight_ent_coef", value) == expected


@pytest.mark.parametrize(
    "value", ["autox", "auto_", "auto_abc", "auto_0", "auto_-0.1", "auto_1e3", "Auto", -0.1, float("nan"), True, None]
)
def test_parse_adaptive_coef_rejects(value):
    allowed = r"ref_kl_coef must be a finite number >= 0, 'auto' or 'auto_<start>' with a start in \[1e-06, 10\]"
    with pytest.raises(ValueError, match=allowed):
        parse_adaptive_coef("ref_kl_coef", value)


def test_default_target_weight_entropy():
    # log(M / 2): exp(H*) is half the group
    assert default_target_weight_entropy(8) == pytest.approx(math.log(4))
    assert default_target_weight_entropy(3) == pytest.approx(math.log(1.5))
    assert default_target_weight_entropy(2) == 0.0
    with pytest.raises(ValueError, match="n_episodes must be an integer >= 1, got 0"):
        default_target_weight_entropy(0)


def test_weight_entropy_and_kl_on_hand_made_weights():
    # w = (1/2, 1/4, 1/4), w_ref uniform over 3 episodes
    log_weights = th.log(th.tensor([0.5, 0.25, 0.25]))
    diagnostics = weight_diagnostics(log_weights, th.zeros(3))
    # H = 1/2 log 2 + 2 * 1/4 log 4 = 1.5 log 2
    assert diagnostics["weight_entropy"] == pytest.approx(1.5 * math.log(2), rel=1e-6)
    # KL(w || uniform) = log 3 - H
    assert diagnostics["ref_kl"] == pytest.approx(math.log(3) - 1.5 * math.log(2), rel=1e-5)
    # A reference that differs: w_ref = (1/4, 1/2, 1/4) from scores log w_ref (+ any constant)
    ref_scores = th.log(th.tensor([0.25, 0.5, 0.25])) + 3.0
    kl = 0.5 * math.log(0.5 / 0.25) + 0.25 * math.log(0.25 / 0.5) + 0.0
    assert weight_diagnostics(log_weights, ref_scores)["ref_kl"] == pytest.approx(kl, rel=1e-5)


@pytest.mark.parametrize(
    "entropy, target, expected",
    [
        (1.0, 1.2, 0.01 * math.exp(0.2)),  # below the target: beta grows by exp(H* - H)
        (1.3, 1.2, 0.01 * math.exp(-0.1)),  # above: beta shrinks
        (1.2, 1.2, 0.01),  # at the target: unchanged
        (0.0, math.log(4), 0.02),  # collapsed weights (M = 8): the step is clipped to a factor 2
        (math.log(8), math.log(4), 0.005),  # uniform weights of 8 episodes against the default target: halved
    ],
)
def test_adapt_weight_ent_coef(entropy, target, expected):
    assert adapt_weight_ent_coef(0.01, entropy, target) == pytest.approx(expected, rel=1e-12)


def test_adapt_weight_ent_coef_on_hand_made_groups():
    target = default_target_weight_entropy(4)  # log 2
    # One episode far more likely than the three others: H = 0.0015 < log 2, beta grows by exp(log 2 - H)
    collapsed = weight_diagnostics(th.log_softmax(th.tensor([0.0, -10.0, -10.0, -10.0]), 0), th.zeros(4))
    p = math.exp(-10) / (1 + 3 * math.exp(-10))
    entropy = -(1 - 3 * p) * math.log(1 - 3 * p) - 3 * p * math.log(p)
    assert collapsed["weight_entropy"] == pytest.approx(entropy, rel=1e-4)
    assert adapt_weight_ent_coef(0.01, collapsed["weight_entropy"], target) == pytest.approx(0.01 * 2 * math.exp(-entropy))
    # The same collapse in a group of 8: H* - H = log 4 - H > log 2, so the step is clipped to a factor of 2
    collapsed = weight_diagnostics(th.log_softmax(th.tensor([0.0] + [-10.0] * 7), 0), th.zeros(8))
    assert adapt_weight_ent_coef(0.01, collapsed["weight_entropy"], default_target_weight_entropy(8)) == pytest.approx(0.02)
    # Equal scores: H = log 4 = target + log 2, beta halves
    uniform = weight_diagnostics(th.log_softmax(th.zeros(4), 0), th.zeros(4))
    assert adapt_weight_ent_coef(0.01, uniform["weight_entropy"], target) == pytest.approx(0.005, rel=1e-6)
    # Two equally likely episodes out of four: H = log 2, exactly the target: unchanged
    half = weight_diagnostics(th.log_softmax(th.tensor([0.0, 0.0, -100.0, -100.0]), 0), th.zeros(4))
    assert adapt_weight_ent_coef(0.01, half["weight_entropy"], target) == pytest.approx(0.01, rel=1e-6)


def test_adapt_weight_ent_coef_bounds():
    assert adapt_weight_ent_coef(ADAPTIVE_COEF_MIN, 2.0, 1.0) == ADAPTIVE_COEF_MIN
    assert adapt_weight_ent_coef(8.0, 0.0, 1.0) == ADAPTIVE_COEF_MAX
    assert adapt_weight_ent_coef(0.01, 1.0, 2.0, max_log_step=0.1) == pytest.approx(0.01 * math.exp(0.1))
    with pytest.raises(ValueError, match="weight_entropy must be a finite number, got nan"):
        adapt_weight_ent_coef(0.01, float("nan"), 1.0)
    with pytest.raises(ValueError, match="Need 0 < min_coef <= coef <= max_coef"):
        adapt_weight_ent_coef(0.0, 1.0, 1.0)


@pytest.mark.parametrize(
    "kl, expected",
    [
        (0.02, 0.02),  # > 1.5 target: doubled
        (0.005, 0.005),  # < target / 1.5: halved
        (0.01, 0.01),  # within the band: kept
        (0.015, 0.01),  # the band's edges are kept
        (0.01 / 1.5, 0.01),
        (0.0, 0.005),
    ],
)
def test_adapt_ref_kl_coef(kl, expected):
    assert adapt_ref_kl_coef(0.01, kl, 0.01) == pytest.approx(expected, rel=1e-12)


def test_adapt_ref_kl_coef_on_hand_made_groups():
    log_weights = th.log_softmax(th.log(th.tensor([0.5, 0.25, 0.25])), 0)
    # KL to the uniform reference: log 3 - 1.5 log 2 = 0.0589 > 1.5 * 0.01: doubled; < 0.1 / 1.5: halved
    kl = weight_diagnostics(log_weights, th.zeros(3))["ref_kl"]
    assert adapt_ref_kl_coef(0.1, kl, 0.01) == pytest.approx(0.2)
    assert adapt_ref_kl_coef(0.1, kl, 0.1) == pytest.approx(0.05)
    # The reference equals the policy: KL = 0, halved
    assert weight_diagnostics(log_weights, log_weights)["ref_kl"] == pytest.approx(0.0, abs=1e-7)
    assert adapt_ref_kl_coef(0.1, 0.0, 0.01) == pytest.approx(0.05)
    # Bounds
    assert adapt_ref_kl_coef(ADAPTIVE_COEF_MAX, 1.0, 0.01) == ADAPTIVE_COEF_MAX
    assert adapt_ref_kl_coef(ADAPTIVE_COEF_MIN, 0.0, 0.01) == ADAPTIVE_COEF_MIN
    with pytest.raises(ValueError, match="target > 0"):
        adapt_ref_kl_coef(0.1, 0.0, 0.0)
    with pytest.raises(ValueError, match="kl must be a finite number, got inf"):
        adapt_ref_kl_coef(0.1, float("inf"), 0.01)


# The algorithm


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(weight_ent_coef="autox"), r"weight_ent_coef must be a finite number >= 0, 'auto' or 'auto_<start>'.*'autox'"),
        (dict(ref_kl_coef="auto_-1"), r"ref_kl_coef must be a finite number >= 0, 'auto' or 'auto_<start>'.*'auto_-1'"),
        (
            dict(weight_ent_coef="auto", target_weight_entropy=-0.5),
            r"target_weight_entropy must be a finite number >= 0 or None \(the default\), got -0.5",
        ),
        (
            dict(ref_kl_coef="auto", target_ref_kl=0.0),
            r"target_ref_kl must be a finite number > 0 or None \(the default\), got 0.0",
        ),
        (dict(ref_kl_coef="auto", target_ref_kl=float("inf")), r"target_ref_kl must be a finite number > 0 .*got inf"),
        (
            dict(target_ref_kl=0.02),
            r"target_ref_kl=0.02 is only used with ref_kl_coef='auto' \(or 'auto_<start>'\), but ref_kl_coef=0.01 is fixed",
        ),
        (
            dict(weight_ent_coef=0.1, target_weight_entropy=1.0),
            r"target_weight_entropy=1.0 is only used with weight_ent_coef='auto'",
        ),
        (dict(ref_update_interval=0), r"ref_update_interval must be an integer >= 1 \(.*\) or None \(.*\), got 0"),
        (dict(ref_update_interval=1.5), r"ref_update_interval must be an integer >= 1 .* or None .*, got 1.5"),
        (dict(ref_update_interval="none"), r"ref_update_interval must be an integer >= 1 .* or None .*, got 'none'"),
        (dict(ref_update_interval=True), r"ref_update_interval must be an integer >= 1 .* or None .*, got True"),
    ],
)
def test_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HAEPO("MlpPolicy", "CartPole-v1", _init_setup_model=False, **kwargs)


@pytest.mark.parametrize("algo", [GRPO, DPO])
def test_baselines_take_a_frozen_reference(algo):
    assert algo("MlpPolicy", "CartPole-v1", ref_update_interval=None, _init_setup_model=False).ref_update_interval is None
    with pytest.raises(ValueError, match=r"ref_update_interval must be an integer >= 1 .* or None .*, got -1"):
        algo("MlpPolicy", "CartPole-v1", ref_update_interval=-1, _init_setup_model=False)


def test_constructor_values():
    model = HAEPO("MlpPolicy", "CartPole-v1", weight_ent_coef="auto", ref_kl_coef="auto_0.5", target_ref_kl=0.02, **SMALL)
    assert (model.weight_ent_coef, model.weight_ent_coef_auto, model.target_weight_entropy) == (0.01, True, None)
    assert (model.ref_kl_coef, model.ref_kl_coef_auto, model.target_ref_kl) == (0.5, True, 0.02)
    fixed = HAEPO("MlpPolicy", "CartPole-v1", weight_ent_coef=0.2, **SMALL)
    assert (fixed.weight_ent_coef, fixed.weight_ent_coef_auto, fixed.ref_kl_coef_auto) == (0.2, False, False)


def train_updates(model, n_updates: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        while model._n_train_calls < n_updates:
            model.learn(200, reset_num_timesteps=False)


@pytest.mark.parametrize("algo", [HAEPO, GRPO, DPO])
def test_frozen_reference_stays_the_initial_policy(algo):
    model = algo("MlpPolicy", "CartPole-v1", ref_update_interval=None, **SMALL)
    # The reference is the policy as it was at the first update, here weights put into the policy before learn()
    with th.no_grad():
        for param in model.policy.parameters():
            param.add_(0.05)
    initial = flat(model.policy)
    assert not th.equal(flat(model.ref_policy), initial)
    records = record_updates(model)
    train_updates(model, 4)
    for record in records:
        assert th.equal(record["ref"], initial)
    # ... while the policy moved at every update
    policies = [record["policy_before"] for record in records] + [flat(model.policy)]
    assert all(not th.equal(a, b) for a, b in itertools.pairwise(policies))


@pytest.mark.parametrize(
    "interval, refreshed", [(1, [True] * 7), (3, [True, False, False] * 2 + [True]), (None, [True] + [False] * 6)]
)
def test_reference_refreshed_exactly_as_documented(interval, refreshed):
    """The reference becomes the policy at the start of updates 1, 1 + interval, 1 + 2 interval, ... (None: 1 only)."""
    model = HAEPO("MlpPolicy", "CartPole-v1", ref_update_interval=interval, **SMALL)
    records = record_updates(model)
    train_updates(model, 7)
    assert [th.equal(record["ref"], record["policy_before"]) for record in records[:7]] == refreshed


def test_coefficients_logged_and_adapted_by_the_rule():
    """Each update logs the coefficients it used; the next update uses the rule's output on what it measured."""
    model = HAEPO("MlpPolicy", "CartPole-v1", weight_ent_coef="auto_0.05", ref_kl_coef="auto", target_ref_kl=1e-3, **SMALL)
    records = record_updates(model)
    train_updates(model, 5)
    for record in records:
        logged = record["logged"]
        # The measured quantities are those of the group under the updated policy and the reference
        assert logged["train/post_update_weight_entropy"] == pytest.approx(record["weight_entropy"], abs=1e-5)
        assert logged["train/post_update_ref_kl"] == pytest.approx(record["ref_kl"], abs=1e-6)
        assert logged["train/target_weight_entropy"] == pytest.approx(default_target_weight_entropy(record["n_episodes"]))
        assert logged["train/target_ref_kl"] == 1e-3
    assert records[0]["logged"]["train/weight_ent_coef"] == 0.05
    assert records[0]["logged"]["train/ref_kl_coef"] == ADAPTIVE_COEF_START
    for before, after in itertools.pairwise(records):
        logged = before["logged"]
        beta = adapt_weight_ent_coef(
            logged["train/weight_ent_coef"], logged["train/post_update_weight_entropy"], logged["train/target_weight_entropy"]
        )
        lam = adapt_ref_kl_coef(logged["train/ref_kl_coef"], logged["train/post_update_ref_kl"], logged["train/target_ref_kl"])
        assert after["logged"]["train/weight_ent_coef"] == pytest.approx(beta, rel=1e-12)
        assert after["logged"]["train/ref_kl_coef"] == pytest.approx(lam, rel=1e-12)
    # The mean score keeps the weights of CartPole's episodes near uniform, above the target: beta went down
    assert model.weight_ent_coef < 0.05


def test_fixed_coefficients_are_logged():
    model = HAEPO("MlpPolicy", "CartPole-v1", weight_ent_coef=0.03, **SMALL)
    records = record_updates(model)
    train_updates(model, 2)
    for record in records:
        assert record["logged"]["train/weight_ent_coef"] == 0.03
        assert record["logged"]["train/ref_kl_coef"] == 0.01
        assert "train/post_update_weight_entropy" not in record["logged"]
        assert "train/post_update_ref_kl" not in record["logged"]
    assert (model.weight_ent_coef, model.ref_kl_coef) == (0.03, 0.01)


def test_sum_score_collapse_raises_beta():
    """The sum score collapses the weights onto the shortest episodes (docs/METHOD.md section 3): beta grows."""
    model = HAEPO("MlpPolicy", "CartPole-v1", weight_ent_coef="auto", trajectory_score="sum", **SMALL)
    records = record_updates(model)
    train_updates(model, 4)
    logged = [record["logged"] for record in records]
    assert any(log["train/post_update_weight_entropy"] < log["train/target_weight_entropy"] for log in logged)
    assert model.weight_ent_coef > ADAPTIVE_COEF_START


def test_adaptive_save_load_round_trip(tmp_path):
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = HAEPO("MlpPolicy", env, ref_update_interval=None, target_ref_kl=1e-3, **AUTO, **SMALL)
    train_updates(model, 3)
    assert model.weight_ent_coef != ADAPTIVE_COEF_START and model.ref_kl_coef != ADAPTIVE_COEF_START
    model.save(tmp_path / "haepo.zip")
    loaded = HAEPO.load(tmp_path / "haepo.zip", device="cpu")
    for name in [
        "weight_ent_coef",
        "ref_kl_coef",
        "weight_ent_coef_auto",
        "ref_kl_coef_auto",
        "target_weight_entropy",
        "target_ref_kl",
        "ref_update_interval",
    ]:
        assert getattr(loaded, name) == getattr(model, name), name
    assert th.equal(flat(loaded.ref_policy), flat(model.ref_policy))
