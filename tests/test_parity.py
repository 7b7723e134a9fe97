"""
What a user porting PPO code expects of HAEPO, GRPO and DPO (issue 7): multi-dimensional Box actions, loading onto
running envs without training on episode fragments, ``learn()`` keeping its budget, and PPO's arguments explained.
"""

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from sb3_haepo import DPO, GRPO, HAEPO
from sb3_haepo.common.type_aliases import EpisodeBatch

ALGOS = [HAEPO, GRPO, DPO]
SMALL = dict(n_episodes=4, n_epochs=2, policy_kwargs=dict(net_arch=[16]), seed=0, device="cpu")


def flat(module: th.nn.Module) -> th.Tensor:
    return th.cat([p.detach().flatten() for p in module.parameters()])


def record_groups(model) -> list[EpisodeBatch]:
    """Make ``model`` keep every group it trains on (the same for the three algorithms)."""
    groups: list[EpisodeBatch] = []
    train = model.train

    def recording_train() -> None:
        groups.append(model.rollout_buffer.get())
        train()

    model.train = recording_train
    return groups


class ShapedBoxEnv(gym.Env):
    """Box actions of any shape; reward ``-sum(a^2)``; 5-step episodes. Fails if an action has the wrong shape."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.observation_space = spaces.Box(-1, 1, (3,), np.float32)
        self.action_space = spaces.Box(-1, 1, shape, np.float32)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(3, np.float32), {}

    def step(self, action):
        assert action.shape == self.action_space.shape, f"action of shape {action.shape} for {self.action_space}"
        self.t += 1
        return np.full(3, self.t / 5, np.float32), float(-np.sum(np.square(action))), self.t >= 5, False, {}


class NeverEndingEnv(gym.Env):
    observation_space = spaces.Box(-1, 1, (2,), np.float32)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 1.0, False, False, {}


# 1. Box action spaces with more than one dimension


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("shape", [(2, 2), (3, 1, 2)])
def test_multidimensional_box_actions(algo, shape, tmp_path):
    env = ShapedBoxEnv(shape)
    model = algo("MlpPolicy", env, **SMALL)
    model.learn(100)
    assert model._n_updates > 0
    # The buffer stores the flat actions the distribution sampled
    assert model.rollout_buffer.actions.shape[-1] == int(np.prod(shape))
    obs = np.full(3, 0.4, np.float32)
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == shape and env.action_space.contains(action)
    actions, _ = model.predict(np.stack([obs, obs]), deterministic=True)
    assert actions.shape == (2, *shape)
    model.save(tmp_path / "model.zip")
    loaded = algo.load(tmp_path / "model.zip", env=env, device="cpu")
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], action)
    loaded.learn(50)


# 2. Loading onto a running env


def monitored_cartpole(n_envs: int) -> DummyVecEnv:
    return DummyVecEnv([lambda i=i: Monitor(gym.make("CartPole-v1")) for i in range(n_envs)])


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("via", ["load", "set_env"])
def test_load_onto_running_env_drops_fragments(algo, via, tmp_path):
    env = monitored_cartpole(2)
    env.seed(0)
    model = algo("MlpPolicy", env, **SMALL)
    model.learn(301)  # 151 vector steps: CartPole episodes are in progress in both envs
    in_progress = model.rollout_buffer.current_lengths.copy()
    assert np.all(in_progress > 0)
    n_done_at_save = [len(monitor.get_episode_lengths()) for monitor in env.envs]
    model.save(tmp_path / "model.zip")

    if via == "load":
        loaded = algo.load(tmp_path / "model.zip", env=env, force_reset=False, device="cpu")
    else:
        loaded = algo.load(tmp_path / "model.zip", device="cpu")
        loaded.set_env(env, force_reset=False)
    discarded_before = loaded._n_discarded_steps
    groups = record_groups(loaded)
    loaded.learn(1500, reset_num_timesteps=False)
    assert len(groups) >= 2

    monitor_lengths = [monitor.get_episode_lengths() for monitor in env.envs]
    for env_idx in range(2):
        # The episodes of env_idx that the groups trained on, in completion order
        trained = [
            int(batch.lengths[k]) for batch in groups for k in range(len(batch.returns)) if batch.env_indices[k] == env_idx
        ]
        # They are the Monitor's episodes after the one that was running at the save: that one is a fragment here
        first = n_done_at_save[env_idx] + 1
        assert trained == monitor_lengths[env_idx][first : first + len(trained)]
    # The fragments' steps (the rest of each running episode) were dropped and counted
    fragment_steps = sum(monitor_lengths[i][n_done_at_save[i]] - in_progress[i] for i in range(2))
    assert loaded._n_discarded_steps - discarded_before == fragment_steps


def test_set_env_force_reset_drops_held_steps():
    model = HAEPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0), **SMALL)
    model.learn(301)
    held = model.rollout_buffer.size
    assert held > 0
    model.set_env(make_vec_env("CartPole-v1", n_envs=2, seed=1))
    assert model.rollout_buffer.size == 0 and model._n_discarded_steps == held

    # Right after an update, the trained group is still in the buffer: it was used, so it is not counted
    model = HAEPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0), **SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        while model._n_train_calls == 0:
            model.learn(1, reset_num_timesteps=False)
    assert model._group_ready and model.rollout_buffer.n_completed_steps > 0
    running = model.rollout_buffer.n_in_progress_steps
    model.set_env(make_vec_env("CartPole-v1", n_envs=2, seed=1))
    assert model.rollout_buffer.size == 0 and model._n_discarded_steps == running


# 3. learn() keeps its budget


@pytest.mark.parametrize("algo", ALGOS)
def test_learn_keeps_budget(algo):
    # Pendulum's 200-step episodes, groups of 8: 1000 steps complete 5 episodes, no group
    model = algo("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=1, seed=0), n_episodes=8, seed=0, device="cpu")
    with pytest.warns(UserWarning, match=r"made no update: only 5 of the n_episodes=8 episodes"):
        model.learn(1000)
    assert model.num_timesteps == 1000 and model._n_updates == 0
    # The 5 completed episodes are kept, not trained on, not lost: 3 more complete the group in the next learn()
    assert model.rollout_buffer.n_completed == 5
    model.learn(600, reset_num_timesteps=False)
    assert model.num_timesteps == 1600 and model._n_train_calls == 1

    # CartPole, 3 envs: at most n_envs - 1 steps past the budget, also when continuing
    model = algo("MlpPolicy", make_vec_env("CartPole-v1", n_envs=3, seed=0), **SMALL)
    model.learn(1000)
    assert model.num_timesteps == 1002
    model.learn(3000, reset_num_timesteps=False)
    assert model.num_timesteps == 4002


@pytest.mark.parametrize("algo", ALGOS)
def test_never_ending_env_returns_promptly_with_a_warning(algo):
    model = algo("MlpPolicy", NeverEndingEnv(), **SMALL)
    with pytest.warns(UserWarning, match=r"made no update: only 0 of the n_episodes=4 episodes.*64 steps are in episodes"):
        model.learn(64)
    assert model.num_timesteps == 64
    assert model.rollout_buffer.n_in_progress_steps == 64


@pytest.mark.parametrize(
    "algo, extra",
    [
        *[(algo, {}) for algo in ALGOS],
        # Adaptive beta and lam, frozen reference (docs/METHOD.md section 10)
        (HAEPO, dict(weight_ent_coef="auto", ref_kl_coef="auto", target_ref_kl=1e-3, ref_update_interval=None)),
    ],
)
def test_learn_in_two_calls_equals_one_call(algo, extra):
    """learn(a) then learn(b, reset_num_timesteps=False) trains exactly as learn(a + b) (bitwise, on the CPU)."""

    def train(budgets: list[int]) -> tuple[th.Tensor, th.Tensor, int, int, tuple]:
        model = algo("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0), **SMALL, **extra)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            for i, budget in enumerate(budgets):
                model.learn(budget, reset_num_timesteps=i == 0)
        coefs = (getattr(model, "weight_ent_coef", None), getattr(model, "ref_kl_coef", None))
        return flat(model.policy), flat(model.ref_policy), model.num_timesteps, model._n_train_calls, coefs

    # 700 is not a group boundary: the first call stops with a group in progress
    policy_split, ref_split, steps_split, updates_split, coefs_split = train([700, 900])
    policy_once, ref_once, steps_once, updates_once, coefs_once = train([1600])
    assert steps_split == steps_once == 1600 and updates_split == updates_once > 2
    assert coefs_split == coefs_once
    assert th.equal(policy_split, policy_once)
    assert th.equal(ref_split, ref_once)


def test_eval_callback_with_vec_normalize_ends_in_sync(tmp_path):
    """The last evaluation is at the last step, so the training and evaluation statistics agree at the end."""
    env = VecNormalize(make_vec_env("CartPole-v1", n_envs=2, seed=0))
    eval_env = VecNormalize(make_vec_env("CartPole-v1", n_envs=1, seed=1), training=False, norm_reward=False)
    callback = EvalCallback(eval_env, eval_freq=250, n_eval_episodes=1, log_path=str(tmp_path), verbose=0)
    model = HAEPO("MlpPolicy", env, **SMALL)
    model.learn(1000, callback=callback)
    assert model.num_timesteps == 1000 and callback.evaluations_timesteps[-1] == 1000
    np.testing.assert_array_equal(env.obs_rms.mean, eval_env.obs_rms.mean)
    np.testing.assert_array_equal(env.obs_rms.var, eval_env.obs_rms.var)


# 4. PPO's arguments


@pytest.mark.parametrize(
    "algo, name, counterpart",
    [
        (HAEPO, "n_steps", "n_episodes"),
        (GRPO, "n_steps", "n_episodes"),
        (DPO, "n_steps", "n_episodes"),
        (GRPO, "ent_coef", None),
        (DPO, "ent_coef", None),
        (DPO, "clip_range", None),
        (GRPO, "normalize_advantage", None),
        (HAEPO, "normalize_advantage", "normalize_returns"),
        (GRPO, "gae_lambda", None),
        (DPO, "gae_lambda", None),
        (GRPO, "vf_coef", None),
        (DPO, "clip_range_vf", None),
    ],
)
def test_ppo_arguments_name_their_counterpart(algo, name, counterpart):
    with pytest.raises(TypeError, match=rf"{algo.__name__} does not take PPO's argument '{name}'") as error:
        algo("MlpPolicy", "CartPole-v1", **{name: 1})
    message = str(error.value)
    if counterpart is None:
        assert "nearest counterpart" not in message
    else:
        assert f"The nearest counterpart is '{counterpart}'" in message


def test_unknown_arguments_keep_python_error():
    with pytest.raises(TypeError, match=r"__init__\(\) got an unexpected keyword argument 'not_an_argument'"):
        HAEPO("MlpPolicy", "CartPole-v1", not_an_argument=1)
    # GRPO's own clip_range and HAEPO's own ent_coef (its policy-entropy bonus), vf_coef and gae_lambda (its value
    # baseline's) are accepted
    assert GRPO("MlpPolicy", "CartPole-v1", clip_range=0.1, _init_setup_model=False).clip_range == 0.1
    assert HAEPO("MlpPolicy", "CartPole-v1", ent_coef=0.1, _init_setup_model=False).ent_coef == 0.1
    model = HAEPO("MlpPolicy", "CartPole-v1", baseline="value", vf_coef=0.1, gae_lambda=0.9, _init_setup_model=False)
    assert (model.vf_coef, model.gae_lambda) == (0.1, 0.9)


@pytest.mark.parametrize("algo", ALGOS)
def test_tensorboard_run_is_named_after_the_algorithm(algo, tmp_path):
    model = algo("MlpPolicy", "CartPole-v1", tensorboard_log=str(tmp_path), **SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model.learn(50)
        model.learn(50, tb_log_name="mine")
    assert list(tmp_path.glob(f"{algo.__name__}_1/events.out.tfevents.*"))
    assert list(tmp_path.glob("mine_1/events.out.tfevents.*"))
