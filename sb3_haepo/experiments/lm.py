"""
The language-model miniature of the paper's RLHF experiment (TL;DR summarisation with human feedback): fine-tune a
small causal transformer, pretrained by supervised learning on noisy demonstrations, with HAEPO, GRPO, DPO and PPO
on a token-generation task whose reward arrives at the end of the response (:mod:`sb3_haepo.envs.sequence`).

One command (``python scripts/lm_experiment.py``):

1. pretrain once (:func:`~sb3_haepo.common.pretrain.pretrain_policy`) and save the actor to
   ``OUT/pretrained_TASK.pt``, or load that checkpoint if it exists (``--retrain`` pretrains again);
2. for each method and seed, build the model with the same transformer, load the pretrained actor (PPO's value head
   starts fresh) and fine-tune for the same number of env steps. The pretrained policy is every method's frozen
   reference: HAEPO, GRPO and DPO with ``ref_update_interval=None`` (the reference is the policy at the first update,
   i.e. the loaded weights), PPO as :class:`~sb3_haepo.common.kl_ppo.KLPPO` (RLHF's per-token KL penalty in the
   reward, towards the policy at the first rollout);
3. every ``eval_freq`` steps and at the end, evaluate on ``n_eval_episodes`` fixed prompts (sampled responses: the
   policy as it would be used): the mean reward, and the mean per-token ``KL(pi || pi_pretrained)`` over the states
   of those responses (exact, from the two categorical distributions); wall-clock time counts training only;
4. write ``OUT/lm_TASK.md`` (a markdown report: random, pretrained and each method, with its curve) and
   ``OUT/lm_TASK.json`` (every figure); ``--publish`` writes them to ``docs/results/`` instead (the checkpoint stays
   in ``OUT``).

``--quick`` is a size for tests (a tiny transformer, a few hundred steps).
"""

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import GymEnv

import sb3_haepo.envs  # noqa: F401  (registers the token-generation envs)
from sb3_haepo import DPO, GRPO, HAEPO
from sb3_haepo.common.buffers import EpisodeBuffer
from sb3_haepo.common.checks import check_int
from sb3_haepo.common.kl_ppo import KLPPO
from sb3_haepo.common.pretrain import actor_checkpoint_metadata, load_actor, pretrain_policy, save_actor
from sb3_haepo.common.transformer import transformer_policy_kwargs
from sb3_haepo.envs.sequence import END_TOKEN, SHORTEST_PATH_ENV_ID, SUMMARIZE_ENV_ID, random_policy_reward
from sb3_haepo.experiments import published

TASKS: dict[str, str] = {"summarize": SUMMARIZE_ENV_ID, "shortest_path": SHORTEST_PATH_ENV_ID}
METHODS: tuple[str, ...] = ("HAEPO", "GRPO", "DPO", "PPO")
# The prompts of the evaluation episodes are reset(seed=EVAL_SEED + i): disjoint from the pretraining prompts
# (reset(seed=pretrain_seed + i), i < n_demos) for n_demos < EVAL_SEED
EVAL_SEED = 1_000_000


@dataclass
class LMConfig:
    """The settings of one experiment (one task); :data:`QUICK` and :data:`FULL` are the two sizes."""

    task: str = "summarize"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    n_demos: int = 2000
    noise: float = 0.3
    pretrain_epochs: int = 5
    pretrain_learning_rate: float = 1e-3
    pretrain_batch_size: int = 256
    pretrain_seed: int = 0
    timesteps: int = 20_000
    seeds: tuple[int, ...] = (0, 1, 2)
    methods: tuple[str, ...] = METHODS
    n_eval_episodes: int = 200
    eval_freq: int = 5_000
    learning_rate: float = 1e-4
    group_size: int = 16

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"Unknown task {self.task!r}, allowed: {tuple(TASKS)}")
        unknown = [method for method in self.methods if method not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"methods must be a non-empty selection of {METHODS}, got {self.methods!r}")
        for name in (
            "timesteps",
            "n_eval_episodes",
            "eval_freq",
            "group_size",
            "n_demos",
            "pretrain_epochs",
            "pretrain_batch_size",
        ):
            # As Python ints: the config is written to JSON
            setattr(self, name, check_int(name, getattr(self, name), 1))
        if not self.seeds:
            raise ValueError("seeds must hold at least one seed")

    @property
    def env_id(self) -> str:
        return TASKS[self.task]


FULL = LMConfig()
QUICK = LMConfig(
    d_model=32,
    n_layers=2,
    n_heads=2,
    n_demos=600,
    pretrain_epochs=6,
    pretrain_learning_rate=3e-3,
    pretrain_batch_size=64,
    timesteps=600,
    seeds=(0,),
    n_eval_episodes=30,
    eval_freq=300,
    learning_rate=3e-4,
    group_size=8,
)


def method_kwargs(method: str, config: LMConfig) -> dict[str, Any]:
    """
    The fine-tuning hyperparameters of each method: the same learning rate, 4 epochs per batch, undiscounted returns
    and the frozen pretrained reference for all; a group of ``group_size`` episodes for HAEPO, GRPO and DPO, and PPO
    rollouts of ``16 * group_size`` steps (about the steps of such a group, responses being several tokens long).
    Otherwise each method's defaults (HAEPO's ``ref_kl_coef=0.01``, GRPO's ``kl_coef=0.04``, DPO's ``beta=0.1``) and
    KLPPO's ``kl_coef=0.05``.
    """
    common = {"learning_rate": config.learning_rate, "n_epochs": 4, "gamma": 1.0}
    if method == "PPO":
        return {**common, "n_steps": 16 * config.group_size, "batch_size": 64, "gae_lambda": 0.95, "kl_coef": 0.05}
    episodic = {**common, "n_episodes": config.group_size, "ref_update_interval": None}
    if method == "GRPO":
        return {**episodic, "batch_size": 64}
    return episodic


def make_model(
    method: str,
    config: LMConfig,
    seed: int,
    env: GymEnv | None = None,
    device: str = "cpu",
    **overrides: Any,
) -> BaseAlgorithm:
    """
    :param env: the env (None: one ``gym.make`` of the task's env with ``config.env_kwargs``)
    :param overrides: hyperparameters replacing :func:`method_kwargs`'s
    :return: a model of ``method`` on the task's env with the experiment's transformer policy (not pretrained)
    """
    env = gym.make(config.env_id, **config.env_kwargs) if env is None else env
    policy_kwargs = transformer_policy_kwargs(
        config.d_model, config.n_layers, config.n_heads, value_net_arch=[64] if method == "PPO" else None
    )
    kwargs = {"seed": seed, "device": device, "policy_kwargs": policy_kwargs, **method_kwargs(method, config), **overrides}
    if method == "PPO":
        return KLPPO("MlpPolicy", env, **kwargs)
    algorithm = {"HAEPO": HAEPO, "GRPO": GRPO, "DPO": DPO}[method]
    return algorithm("MlpPolicy", env, **kwargs)


def actor_critic(model: BaseAlgorithm) -> ActorCriticPolicy:
    """:return: the model's policy (an ``ActorCriticPolicy`` for every method here)"""
    assert isinstance(model.policy, ActorCriticPolicy), f"expected an ActorCriticPolicy, got {model.policy}"
    return model.policy


@dataclass
class Evaluation:
    """Mean reward and mean per-token KL to the reference over the evaluation episodes"""

    reward: float
    ref_kl: float
    mean_length: float


def evaluate_policy_kl(
    policy: ActorCriticPolicy,
    env_id: str,
    env_kwargs: dict[str, Any] | None = None,
    n_episodes: int = 100,
    seed: int = EVAL_SEED,
    ref_policy: ActorCriticPolicy | None = None,
) -> Evaluation:
    """
    Sample one response per prompt ``reset(seed=seed + i)``, ``i < n_episodes``, all prompts as one batch.

    The sampling uses its own torch generator state (seeded by ``seed``), so an evaluation during training does not
    change the training's random numbers. The KL is the exact ``KL(pi(.|s) || pi_ref(.|s))`` of the two categorical
    distributions, averaged over every state at which a token was emitted (0 without ``ref_policy``).

    :return: the mean reward, the mean per-token KL and the mean number of emitted tokens (the end token included)
    """
    envs = [gym.make(env_id, **(env_kwargs or {})) for _ in range(n_episodes)]
    observations = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    active = np.ones(n_episodes, dtype=bool)
    rewards = np.zeros(n_episodes)
    kl_sum, n_tokens = 0.0, 0
    was_training = policy.training
    policy.set_training_mode(False)
    cuda_devices = [policy.device] if policy.device.type == "cuda" else []
    with th.random.fork_rng(devices=cuda_devices), th.no_grad():
        th.manual_seed(seed)
        while active.any():
            indices = np.flatnonzero(active)
            obs = th.as_tensor(observations[indices], device=policy.device).float()
            distribution = policy.get_distribution(obs).distribution
            assert isinstance(distribution, th.distributions.Categorical), "a token policy has a Discrete action space"
            tokens = distribution.sample().cpu().numpy()
            if ref_policy is not None:
                ref_distribution = ref_policy.get_distribution(obs).distribution
                assert isinstance(ref_distribution, th.distributions.Categorical)
                kl_sum += float(th.distributions.kl_divergence(distribution, ref_distribution).sum())
            n_tokens += len(indices)
            for index, token in zip(indices, tokens, strict=True):
                obs_i, reward, terminated, truncated, _ = envs[index].step(int(token))
                observations[index] = obs_i
                if terminated or truncated:
                    rewards[index] = reward
                    active[index] = False
    policy.set_training_mode(was_training)
    for env in envs:
        env.close()
    return Evaluation(float(rewards.mean()), kl_sum / n_tokens, n_tokens / n_episodes)


class CurveCallback(BaseCallback):
    """Evaluates at the start, then every ``eval_freq`` env steps; records (steps, training seconds, reward, KL).
    Evaluation time is not counted in the training seconds."""

    def __init__(self, config: LMConfig, ref_policy: ActorCriticPolicy):
        super().__init__()
        self.config = config
        self.ref_policy = ref_policy
        self.curve: list[dict[str, float]] = []
        self._start = 0.0
        self._eval_seconds = 0.0
        self._next_eval = config.eval_freq

    def _on_training_start(self) -> None:
        self._start = time.perf_counter()
        if not self.curve:
            self.record()  # step 0: the pretrained policy

    def train_seconds(self) -> float:
        return time.perf_counter() - self._start - self._eval_seconds

    def record(self) -> Evaluation:
        started = time.perf_counter()
        result = evaluate_policy_kl(
            self.model.policy,  # type: ignore[arg-type]
            self.config.env_id,
            self.config.env_kwargs,
            self.config.n_eval_episodes,
            ref_policy=self.ref_policy,
        )
        seconds = self.train_seconds()
        self._eval_seconds += time.perf_counter() - started
        self.curve.append({"steps": self.num_timesteps, "seconds": seconds, "reward": result.reward, "ref_kl": result.ref_kl})
        return result

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next_eval and self.num_timesteps < self.config.timesteps:
            self.record()
            self._next_eval += self.config.eval_freq
        return True


def checkpoint_path(out_dir: str | Path, config: LMConfig) -> Path:
    return Path(out_dir) / f"pretrained_{config.task}.pt"


def pretrain(config: LMConfig, path: str | Path) -> dict[str, Any]:
    """Pretrain the transformer on the task's noisy demonstrations and save its actor; :return: the metadata saved"""
    model = make_model("HAEPO", config, config.pretrain_seed)
    started = time.perf_counter()
    losses = pretrain_policy(
        model,
        config.env_id,
        n_demos=config.n_demos,
        noise=config.noise,
        epochs=config.pretrain_epochs,
        batch_size=config.pretrain_batch_size,
        learning_rate=config.pretrain_learning_rate,
        seed=config.pretrain_seed,
        env_kwargs=config.env_kwargs,
    )
    metadata = {
        "task": config.task,
        "env_kwargs": dict(config.env_kwargs),
        "d_model": config.d_model,
        "n_layers": config.n_layers,
        "n_heads": config.n_heads,
        "n_demos": config.n_demos,
        "noise": config.noise,
        "epochs": config.pretrain_epochs,
        "learning_rate": config.pretrain_learning_rate,
        "batch_size": config.pretrain_batch_size,
        "seed": config.pretrain_seed,
        "losses": losses,
        "seconds": time.perf_counter() - started,
    }
    save_actor(actor_critic(model), path, metadata)
    return metadata


def load_pretrained(model: BaseAlgorithm, path: str | Path, config: LMConfig) -> dict[str, Any]:
    """Load the pretrained actor into ``model.policy``, after checking that it was pretrained for this config"""
    metadata = actor_checkpoint_metadata(path)
    # Checkpoint metadata key -> the config's field (the pretraining settings are stored under shorter names)
    fields = {
        **{key: key for key in ("task", "env_kwargs", "d_model", "n_layers", "n_heads", "n_demos", "noise")},
        "epochs": "pretrain_epochs",
        "learning_rate": "pretrain_learning_rate",
        "batch_size": "pretrain_batch_size",
        "seed": "pretrain_seed",
    }
    for key, name in fields.items():
        expected = dict(config.env_kwargs) if key == "env_kwargs" else getattr(config, name)
        if metadata.get(key) != expected:
            raise ValueError(
                f"The checkpoint {path} was pretrained with {key}={metadata.get(key)!r}, the experiment uses "
                f"{expected!r}: remove it or pass --retrain"
            )
    return load_actor(actor_critic(model), path)


def run_one(job: tuple[LMConfig, str, int, str]) -> dict[str, Any]:
    """Fine-tune one method on one seed from the checkpoint; :return: its final evaluation and curve"""
    config, method, seed, path = job
    th.set_num_threads(1)
    model = make_model(method, config, seed)
    load_pretrained(model, path, config)
    reference = actor_critic(make_model("HAEPO", config, seed))  # the pretrained policy, for the KL of the evaluations
    load_actor(reference, path)
    callback = CurveCallback(config, reference)
    callback.init_callback(model)
    model.learn(config.timesteps, callback=callback)
    final = callback.record()
    return {
        "method": method,
        "seed": seed,
        "reward": final.reward,
        "ref_kl": final.ref_kl,
        "mean_length": final.mean_length,
        "steps": model.num_timesteps,
        "seconds": callback.curve[-1]["seconds"],
        "curve": callback.curve,
    }


def run_experiment(config: LMConfig, out_dir: str | Path, n_jobs: int = 1, retrain: bool = False) -> dict[str, Any]:
    """
    Pretrain (or load the checkpoint), evaluate random and pretrained policies, fine-tune every method and seed.

    :return: every figure (also what :func:`report` formats)
    """
    th.set_num_threads(1)
    path = checkpoint_path(out_dir, config)
    if retrain or not path.exists():
        metadata = pretrain(config, path)
    else:
        metadata = load_pretrained(make_model("HAEPO", config, config.pretrain_seed), path, config)
    pretrained = make_model("HAEPO", config, config.pretrain_seed)
    load_pretrained(pretrained, path, config)
    pretrained_eval = evaluate_policy_kl(actor_critic(pretrained), config.env_id, config.env_kwargs, config.n_eval_episodes)
    random_reward = random_policy_reward(config.env_id, config.n_eval_episodes, seed=EVAL_SEED, **config.env_kwargs)
    jobs = [(config, method, seed, str(path)) for method in config.methods for seed in config.seeds]
    if n_jobs > 1:
        with ProcessPoolExecutor(n_jobs) as pool:
            runs = list(pool.map(run_one, jobs))
    else:
        runs = [run_one(job) for job in jobs]
    return {
        "config": asdict(config),
        "pretraining": metadata,
        "random_reward": random_reward,
        "pretrained": asdict(pretrained_eval),
        "runs": runs,
        "machine": published.machine_note(),
    }


def report(results: dict[str, Any], command: str) -> str:
    """:return: the markdown report of :func:`run_experiment`'s results"""
    config = results["config"]
    pretraining = results["pretraining"]
    lines = [
        published.generated_by(command),
        f"# Language-model miniature: {TASKS[config['task']]}",
        "",
        f"`{command}`. Policy: causal transformer, d_model {config['d_model']}, {config['n_layers']} layer(s), "
        f"{config['n_heads']} head(s). Pretrained on {pretraining['n_demos']} demonstrations with token noise "
        f"{pretraining['noise']}, {pretraining['epochs']} epochs (final loss {pretraining['losses'][-1]:.3f} nats per "
        f"token). Fine-tuning: {config['timesteps']:,} env steps per run, seeds {', '.join(map(str, config['seeds']))}, "
        f"learning rate {config['learning_rate']:g}; every method's reference is the pretrained policy. Evaluation: "
        f"{config['n_eval_episodes']} fixed prompts, one sampled response each; KL: mean per-token "
        f"KL(pi || pi_pretrained). Run on {published.format_machine_note(results['machine'])}.",
        "",
        "| policy | reward (mean +- std over seeds) | per seed | KL to pretrained | tokens per response | "
        "training seconds |",
        "|---|---|---|---|---|---|",
        f"| random | {results['random_reward']:.3f} | | | | |",
        f"| pretrained | {results['pretrained']['reward']:.3f} | | 0 | {results['pretrained']['mean_length']:.1f} | |",
    ]
    for method in config["methods"]:
        runs = [run for run in results["runs"] if run["method"] == method]
        rewards = [run["reward"] for run in runs]
        lines.append(
            f"| {method} | {np.mean(rewards):.3f} +- {np.std(rewards):.3f} | "
            f"{', '.join(f'{reward:.3f}' for reward in rewards)} | {np.mean([run['ref_kl'] for run in runs]):.4f} | "
            f"{np.mean([run['mean_length'] for run in runs]):.1f} | {np.mean([run['seconds'] for run in runs]):.0f} |"
        )
    lines += ["", "Reward against env steps (mean over seeds; training seconds in brackets):", ""]
    steps = [point["steps"] for point in results["runs"][0]["curve"]]
    lines += ["| method | " + " | ".join(f"{step:,}" for step in steps) + " |", "|---|" + "---|" * len(steps)]
    for method in config["methods"]:
        curves = [run["curve"] for run in results["runs"] if run["method"] == method]
        cells = []
        for i in range(len(steps)):
            points = [curve[i] for curve in curves if i < len(curve)]
            cells.append(f"{np.mean([p['reward'] for p in points]):.3f} ({np.mean([p['seconds'] for p in points]):.0f} s)")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --- Peak memory of one update against the response length (python scripts/lm_experiment.py --memory)

MEMORY_LENGTHS: tuple[int, ...] = (16, 64, 256, 1024)
MEMORY_REPORT = "lm_memory.md"
PUBLISHED_MEMORY_REPORT = published.RESULTS_DIR / MEMORY_REPORT
# The end token's logit bias in the measured policies: exp(-100) relative odds, so no response ends before the limit
NEVER_END_BIAS = -100.0


@dataclass(frozen=True)
class LMMemoryCase:
    """
    One update of ``method`` on a group of ``n_episodes`` Summarize-v0 responses of exactly ``max_new_tokens`` tokens
    (the prompt of the env's default size), with the experiment's transformer (``config_name``: ``full`` or ``quick``).
    ``batch_size`` steps are evaluated (and back-propagated) at a time by every method.
    """

    method: str
    max_new_tokens: int
    n_episodes: int = 8
    batch_size: int = 64
    config_name: str = "full"
    seed: int = 0
    threads: int = 1
    device: str = "cpu"

    @property
    def n_steps(self) -> int:
        """The steps of the group: ``n_episodes * max_new_tokens``"""
        return self.n_episodes * self.max_new_tokens


def memory_overrides(case: LMMemoryCase) -> dict[str, Any]:
    """
    The hyperparameters of the measured update, over :func:`method_kwargs` (the experiment's): one epoch for every
    method, and ``batch_size`` steps evaluated at a time everywhere (so that no method's figure comes from a larger
    chunk than another's):

    - HAEPO: its default clipped surrogate on minibatches of ``minibatch_size=64`` shuffled steps (one optimizer step
      each), ``batch_size`` steps per chunk of the reference policy's pass (no gradient);
    - GRPO: the reference policy's pass in chunks of ``batch_size`` (no gradient), then minibatches of ``batch_size``
      shuffled steps (one optimizer step each);
    - DPO: the reference's and the policy's episode scores in chunks of ``batch_size`` (no gradient), then the exact
      gradient accumulated over chunks of ``batch_size`` steps (one optimizer step);
    - PPO (:class:`~sb3_haepo.common.kl_ppo.KLPPO`, with its value head): ``n_envs = n_episodes`` envs and
      ``n_steps = max_new_tokens``, so a rollout is the same ``n_episodes`` responses; minibatches of ``batch_size``
      shuffled steps (one optimizer step each). Its reference policy's pass (for the KL penalty) happens in the
      rollout, not in the update.
    """
    common: dict[str, Any] = {"n_epochs": 1, "batch_size": case.batch_size, "n_episodes": case.n_episodes}
    if case.method == "PPO":
        return {"n_epochs": 1, "batch_size": case.batch_size, "n_steps": case.max_new_tokens}
    if case.method == "HAEPO":
        return {**common, "minibatch_size": 64}
    return common


def memory_config(case: LMMemoryCase) -> LMConfig:
    """:return: the experiment's configuration (its transformer) with responses of ``case.max_new_tokens`` tokens"""
    base = {"full": FULL, "quick": QUICK}[case.config_name]
    return replace(base, task="summarize", env_kwargs={"max_new_tokens": case.max_new_tokens}, group_size=case.n_episodes)


def measure_lm_memory_case(case: LMMemoryCase) -> dict[str, Any]:
    """
    Measure one update of ``case`` in this process (call it in a fresh one: :func:`run_lm_memory` does).

    The model (the experiment's transformer, randomly initialised: the weights change neither the memory nor the time
    of an update) gets its end token's logit bias set to :data:`NEVER_END_BIAS`, so that every response lasts exactly
    ``max_new_tokens`` tokens. ``learn`` then runs two rollouts of ``n_episodes`` responses on ``n_episodes`` envs (the
    same prompts for every method: the envs are seeded by ``seed``), each followed by ``train()``: the first is a
    warm-up (torch's and the optimizer's one-time allocations, the reference policy's copy), the second is measured by
    :func:`~sb3_haepo.experiments.memory.measure_update` (peak RSS above the RSS before it, seconds, CUDA peak).

    :return: the case, the update's figures (bytes, seconds), the number of steps of the measured batch
    """
    from sb3_haepo.experiments.memory import measure_update

    th.set_num_threads(case.threads)
    config = memory_config(case)
    env = make_vec_env(config.env_id, n_envs=case.n_episodes, seed=case.seed, env_kwargs=config.env_kwargs)
    model = make_model(case.method, config, case.seed, env=env, device=case.device, **memory_overrides(case))
    assert isinstance(model, OnPolicyAlgorithm)
    model.set_logger(Logger(None, []))
    token_head = actor_critic(model).action_net
    assert isinstance(token_head, th.nn.Linear)
    with th.no_grad():
        token_head.bias[END_TOKEN] = NEVER_END_BIAS
    cuda = model.device.type == "cuda"
    original_train = model.train
    records: list[dict[str, Any]] = []

    def train() -> None:
        if not records:
            original_train()  # the warm-up update
            records.append({})
            return
        buffer = model.rollout_buffer
        # The episodic methods: the completed episodes of the group; PPO: a rollout of n_steps x n_envs
        if isinstance(buffer, EpisodeBuffer):
            steps = buffer.n_completed_steps
        else:
            steps = buffer.buffer_size * buffer.n_envs
        measurement, peak_reset = measure_update(original_train, cuda)
        records.append({**asdict(measurement), "peak_reset": peak_reset, "steps": int(steps)})

    setattr(model, "train", train)  # noqa: B010  (an instance attribute: learn() calls it)
    model.learn(2 * case.n_steps)
    if len(records) != 2:
        raise RuntimeError(f"{case}: expected a warm-up and a measured update, got {len(records)} update(s)")
    result = records[1]
    if result["steps"] != case.n_steps:
        raise RuntimeError(f"{case}: the measured batch holds {result['steps']} steps, expected {case.n_steps}")
    return {"case": asdict(case), **result}


def _update_peak(record: dict[str, Any], key: str = "rss") -> float | None:
    """:return: the update's peak above the level before it, in bytes (``key``: ``rss`` or ``cuda``)"""
    if key == "rss":
        return float(record["peak_rss"] - record["rss_before"])
    if record["cuda_peak"] is None or record["cuda_before"] is None:
        return None
    return float(record["cuda_peak"] - record["cuda_before"])


def run_lm_memory(
    lengths: tuple[int, ...] = MEMORY_LENGTHS,
    methods: tuple[str, ...] = METHODS,
    n_episodes: int = 8,
    batch_size: int = 64,
    config_name: str = "full",
    seed: int = 0,
    threads: int = 1,
    device: str = "cpu",
    verbose: bool = True,
) -> list[dict[str, Any]]:
    """Measure every method at every response length, each case in a fresh process; :return: the records"""
    from sb3_haepo.experiments.memory import run_in_subprocess

    unknown = [method for method in methods if method not in METHODS]
    if unknown or not methods or not lengths:
        raise ValueError(f"methods must be a non-empty selection of {METHODS} and lengths non-empty, got {methods!r}")
    records = []
    for length in lengths:
        for method in methods:
            case = LMMemoryCase(method, int(length), n_episodes, batch_size, config_name, seed, threads, device)
            record = run_in_subprocess("sb3_haepo.experiments.lm", "--memory-case", asdict(case))
            if verbose:
                print(
                    f"{method:>5} T={length:>5}: update peak {_update_peak(record) / 2**20:8.1f} MiB, "  # type: ignore[operator]
                    f"{record['seconds']:.2f} s",
                    file=sys.stderr,
                )
            records.append(record)
    return records


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or denominator is None or denominator <= 0:
        return "-"
    return f"{numerator / denominator:.2f}"


def memory_report(records: list[dict[str, Any]], command: str, machine: dict[str, str]) -> str:
    """:return: the markdown report of :func:`run_lm_memory`'s records"""
    if not records:
        raise ValueError("No result to report")
    first = LMMemoryCase(**records[0]["case"])
    config = memory_config(first)
    lengths = sorted({r["case"]["max_new_tokens"] for r in records})
    methods = [m for m in METHODS if any(r["case"]["method"] == m for r in records)]
    by_key = {(r["case"]["method"], r["case"]["max_new_tokens"]): r for r in records}
    cuda = any(_update_peak(r, "cuda") is not None for r in records)
    prompt = gym.make(config.env_id, **config.env_kwargs).unwrapped.prompt_length  # type: ignore[attr-defined]
    lines = [
        published.generated_by(command),
        "# Language-model miniature: peak memory of one update against the response length",
        "",
        f"`{command}`: one `train()` per method on a group of {first.n_episodes} `{config.env_id}` responses of "
        f"exactly T tokens (prompt of {prompt} tokens, the end token's logit bias at {NEVER_END_BIAS:g} so that no "
        f"response ends early; N = {first.n_episodes} T steps), the experiment's transformer ({config.d_model} wide, "
        f"{config.n_layers} layers, {config.n_heads} heads, randomly initialised), device `{first.device}`, "
        f"{first.threads} torch thread(s), each case in a fresh process after a warm-up update on a first group. "
        f"Every method trains one epoch and evaluates {first.batch_size} steps at a time: HAEPO its default clipped "
        f"surrogate on minibatches of 64 steps; GRPO minibatches of {first.batch_size}; DPO the exact two-pass "
        f"gradient in chunks of {first.batch_size} (one optimizer step); PPO = KLPPO (value head [64] on the shared "
        f"transformer) with {first.n_episodes} envs x n_steps = T, minibatches of {first.batch_size}. Run on "
        f"{published.format_machine_note(machine)}.",
        "",
        "- **update peak**: the process's peak RSS during `train()` (reset just before it through "
        "`/proc/self/clear_refs`, read with `getrusage`) minus its RSS just before it.",
        "- **s**: wall-clock seconds of `train()`.",
    ]
    if cuda:
        lines.append("- **CUDA**: `torch.cuda.max_memory_allocated()` during `train()` minus `memory_allocated()` before it.")
    if not all(r["peak_reset"] for r in records):
        lines.append("- The peak RSS could not be reset on this machine: the peaks include the rollouts.")
    header = "| method | " + " | ".join(f"T = {t:,}: update peak MiB (s)" for t in lengths) + " |"
    lines += ["", header, "|---|" + "---|" * len(lengths)]
    for method in methods:
        cells = []
        for t in lengths:
            record = by_key.get((method, t))
            if record is None:
                cells.append("-")
                continue
            cell = f"{_update_peak(record) / 2**20:,.1f} ({record['seconds']:.2f} s)"  # type: ignore[operator]
            if cuda:
                cell += f", CUDA {(_update_peak(record, 'cuda') or 0) / 2**20:,.1f}"
            cells.append(cell)
        lines.append(f"| {'PPO (KLPPO)' if method == 'PPO' else method} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Ratio of HAEPO's update peak to the other method's (the paper claims -26.4% against PPO, a ratio of 0.74):",
        "",
        "| ratio | " + " | ".join(f"T = {t:,}" for t in lengths) + " |",
        "|---|" + "---|" * len(lengths),
    ]
    keys = ["rss", "cuda"] if cuda else ["rss"]
    for other in ("PPO", "GRPO"):
        for key in keys:
            cells = []
            for t in lengths:
                haepo, rival = by_key.get(("HAEPO", t)), by_key.get((other, t))
                cells.append(
                    "-" if haepo is None or rival is None else _ratio(_update_peak(haepo, key), _update_peak(rival, key))
                )
            label = f"HAEPO / {other}" + (" (CUDA)" if key == "cuda" else "")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def memory_main(args: argparse.Namespace, argv: list[str] | None) -> str:
    """``--memory``: measure, print and write the report (``--out``/lm_memory.md, or the published one)"""
    load = published.load_average()
    lengths = tuple(args.lengths or (MEMORY_LENGTHS if not args.quick else (16, 32)))
    methods = tuple(args.methods or METHODS)
    records = run_lm_memory(
        lengths, methods, args.memory_episodes, 64, "quick" if args.quick else "full", 0, args.threads, args.device
    )
    given = sys.argv[1:] if argv is None else argv
    command = ("python scripts/lm_experiment.py " + " ".join(given)).strip()
    text = memory_report(records, command, {**published.machine_note(), "load_average": load})
    path = PUBLISHED_MEMORY_REPORT if args.publish else Path(args.out) / MEMORY_REPORT
    published.write_report(path, text)
    print(text)
    print(f"Written to {path}")
    return text


def main(argv: list[str] | None = None) -> Any:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="summarize", choices=list(TASKS))
    parser.add_argument("--quick", action="store_true", help="the size for tests: a tiny transformer, 600 steps, 1 seed")
    parser.add_argument("--methods", nargs="+", choices=METHODS, help="default: all")
    parser.add_argument("--seeds", type=int, nargs="+", help="default: 0 1 2 (--quick: 0)")
    parser.add_argument("--timesteps", type=int, help="env steps per fine-tuning run (default 20,000; --quick 600)")
    parser.add_argument("--out", default="logs/lm", help="folder of the checkpoint and the report (default logs/lm)")
    parser.add_argument("--retrain", action="store_true", help="pretrain again even if the checkpoint exists")
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument(
        "--publish",
        action="store_true",
        help=f"write the report to {published.RESULTS_DIR}/lm_TASK.md and .json (with --memory: {PUBLISHED_MEMORY_REPORT})",
    )
    memory = parser.add_argument_group("--memory: peak memory of one update against the response length")
    memory.add_argument("--memory", action="store_true", help="measure one update per method and length instead")
    memory.add_argument("--lengths", type=int, nargs="+", help="max_new_tokens (default 16 64 256 1024; --quick 16 32)")
    memory.add_argument("--memory-episodes", type=int, default=8, help="responses per measured batch (default 8)")
    memory.add_argument("--threads", type=int, default=1, help="torch CPU threads of each case (default 1)")
    memory.add_argument("--device", default="cpu", help="cpu or cuda (the CUDA peak is reported on a GPU)")
    memory.add_argument("--memory-case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_case:
        # One case, in this (fresh) process: its record as one JSON line
        line = json.dumps(measure_lm_memory_case(LMMemoryCase(**json.loads(args.memory_case))))
        print(line)
        return line
    if args.publish and args.quick:
        parser.error("--publish publishes the full size only, not --quick")
    if args.memory:
        return memory_main(args, argv)
    if args.publish and (
        (args.methods and sorted(args.methods) != sorted(METHODS)) or args.timesteps not in (None, FULL.timesteps)
    ):
        parser.error(
            f"--publish publishes every method at the full budget ({FULL.timesteps:,} steps); only --seeds may change"
        )
    config = replace(QUICK if args.quick else FULL, task=args.task)
    overrides: dict[str, Any] = {}
    if args.methods:
        overrides["methods"] = tuple(args.methods)
    if args.seeds:
        overrides["seeds"] = tuple(args.seeds)
    if args.timesteps:
        overrides["timesteps"] = args.timesteps
    config = replace(config, **overrides)
    results = run_experiment(config, args.out, args.n_jobs, args.retrain)
    given = sys.argv[1:] if argv is None else argv
    text = report(results, ("python scripts/lm_experiment.py " + " ".join(given)).strip())
    out = published.RESULTS_DIR if args.publish else Path(args.out)
    published.write_report(out / f"lm_{config.task}.md", text)
    (out / f"lm_{config.task}.json").write_text(published.dump_json(results) + "\n", encoding="utf-8")
    print(text)
    print(f"Written to {out / f'lm_{config.task}.md'} and {out / f'lm_{config.task}.json'}")
    return results


if __name__ == "__main__":
    main()
