"""Save, load, and continue training: the reference policy, optimizer and counters round-trip."""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.utils import set_random_seed

from sb3_haepo import HAEPO

KWARGS = dict(n_episodes=4, n_epochs=3, ref_update_interval=3, policy_kwargs=dict(net_arch=[16]), seed=0)


def flat(module: th.nn.Module) -> th.Tensor:
    return th.nn.utils.parameters_to_vector(module.parameters()).detach().clone()


def test_save_load_roundtrip(tmp_path):
    model = HAEPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0), **KWARGS)
    model.learn(500)
    model.save(tmp_path / "haepo.zip")
    loaded = HAEPO.load(tmp_path / "haepo.zip", env=make_vec_env("CartPole-v1", n_envs=2, seed=0))
    assert th.equal(flat(model.policy), flat(loaded.policy))
    # The frozen reference is saved as its own state dict, not rebuilt from the untrained policy
    assert th.equal(flat(model.ref_policy), flat(loaded.ref_policy))
    assert not th.equal(flat(loaded.ref_policy), flat(loaded.policy))
    assert all(not p.requires_grad for p in loaded.ref_policy.parameters())
    assert loaded._n_train_calls == model._n_train_calls and loaded.num_timesteps == model.num_timesteps
    assert loaded.n_episodes == 4 and loaded.ref_update_interval == 3
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    # Adam's moments are restored too
    for group_a, group_b in zip(
        model.policy.optimizer.state_dict()["state"].values(),
        loaded.policy.optimizer.state_dict()["state"].values(),
        strict=True,
    ):
        assert th.equal(group_a["exp_avg"], group_b["exp_avg"])


@pytest.mark.parametrize(
    "extra",
    [
        {},
        # Adaptive beta and lam (their current values are saved) and a frozen reference (docs/METHOD.md section 10)
        dict(weight_ent_coef="auto", ref_kl_coef="auto", target_ref_kl=1e-3, ref_update_interval=None),
    ],
)
def test_continue_after_load_equals_not_stopping(tmp_path, extra):
    """Training on after save/load gives exactly what the same model gives without stopping, reference included."""
    # On the CPU, where runs are bitwise reproducible (CUDA's index_add_ uses atomics)
    model = HAEPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=1, seed=0), device="cpu", **{**KWARGS, **extra})
    model.learn(400)
    model.save(tmp_path / "haepo.zip")

    def continue_training(algo: HAEPO) -> tuple[th.Tensor, th.Tensor, float, float]:
        # Same env seed and RNG state for both runs: the only difference is the save/load round trip
        env = make_vec_env("CartPole-v1", n_envs=1, seed=123)
        algo.set_env(env, force_reset=True)
        set_random_seed(7)
        algo.learn(600, reset_num_timesteps=False)
        return flat(algo.policy), flat(algo.ref_policy), algo.weight_ent_coef, algo.ref_kl_coef

    loaded = HAEPO.load(tmp_path / "haepo.zip", device="cpu")
    assert (loaded.weight_ent_coef, loaded.ref_kl_coef) == (model.weight_ent_coef, model.ref_kl_coef)
    policy_loaded, ref_loaded, *coefs_loaded = continue_training(loaded)
    policy_straight, ref_straight, *coefs_straight = continue_training(model)
    assert th.equal(policy_loaded, policy_straight)
    assert th.equal(ref_loaded, ref_straight)
    assert coefs_loaded == coefs_straight
    if extra:
        # The coefficients did adapt, and the frozen reference is still the initial policy's copy
        assert coefs_straight != [0.01, 0.01]
        initial = HAEPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=1, seed=0), device="cpu", **{**KWARGS, **extra})
        assert th.equal(ref_straight, flat(initial.policy))


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_load_on_device(tmp_path, device):
    if device == "cuda" and not th.cuda.is_available():
        pytest.skip("CUDA not available")
    model = HAEPO("MlpPolicy", "CartPole-v1", **KWARGS)
    model.learn(200)
    model.save(tmp_path / "haepo.zip")
    loaded = HAEPO.load(tmp_path / "haepo.zip", device=device)
    assert next(loaded.ref_policy.parameters()).device.type == device
    loaded.set_env(make_vec_env("CartPole-v1", n_envs=1, seed=0))
    loaded.learn(200)
