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
   ``OUT/lm_TASK.json`` (every figure).

``--quick`` is a size for tests (a tiny transformer, a few hundred steps).
"""

import argparse
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
from stable_baselines3.common.policies import ActorCriticPolicy

import sb3_haepo.envs  # noqa: F401  (registers the token-generation envs)
from sb3_haepo import DPO, GRPO, HAEPO
from sb3_haepo.common.kl_ppo import KLPPO
from sb3_haepo.common.pretrain import actor_checkpoint_metadata, load_actor, pretrain_policy, save_actor
from sb3_haepo.common.transformer import transformer_policy_kwargs
from sb3_haepo.envs.sequence import SHORTEST_PATH_ENV_ID, SUMMARIZE_ENV_ID, random_policy_reward
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
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
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


def make_model(method: str, config: LMConfig, seed: int) -> BaseAlgorithm:
    """:return: a model of ``method`` on the task's env with the experiment's transformer policy (not pretrained)"""
    env = gym.make(config.env_id, **config.env_kwargs)
    policy_kwargs = transformer_policy_kwargs(
        config.d_model, config.n_layers, config.n_heads, value_net_arch=[64] if method == "PPO" else None
    )
    kwargs = {"seed": seed, "device": "cpu", "policy_kwargs": policy_kwargs, **method_kwargs(method, config)}
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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="summarize", choices=list(TASKS))
    parser.add_argument("--quick", action="store_true", help="the size for tests: a tiny transformer, 600 steps, 1 seed")
    parser.add_argument("--methods", nargs="+", choices=METHODS, help="default: all")
    parser.add_argument("--seeds", type=int, nargs="+", help="default: 0 1 2 (--quick: 0)")
    parser.add_argument("--timesteps", type=int, help="env steps per fine-tuning run (default 20,000; --quick 600)")
    parser.add_argument("--out", default="logs/lm", help="folder of the checkpoint and the report (default logs/lm)")
    parser.add_argument("--retrain", action="store_true", help="pretrain again even if the checkpoint exists")
    parser.add_argument("--n-jobs", type=int, default=1)
    args = parser.parse_args(argv)
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
    out = Path(args.out)
    published.write_report(out / f"lm_{config.task}.md", text)
    (out / f"lm_{config.task}.json").write_text(published.dump_json(results) + "\n", encoding="utf-8")
    print(text)
    print(f"Written to {out / f'lm_{config.task}.md'} and {out / f'lm_{config.task}.json'}")
    return results


if __name__ == "__main__":
    main()
