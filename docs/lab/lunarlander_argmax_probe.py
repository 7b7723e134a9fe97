"""
Lab probe (docs/LEARNING.md entry 28): why do HAEPO's deterministic evaluations on LunarLander-v3 collapse far below
its sampled training episodes?

Trains HAEPO with the settings of the yml entry of entry 25 (its defaults on 16 envs, replaced in entry 46;
``make_vec_env`` as the zoo builds them), or with ``--algo ppo`` the zoo's PPO entry (16 envs), and,
every ``--eval-freq`` env steps, plays ``--episodes`` evaluation episodes twice from the same start states: with the
arg-max action (``deterministic=True``, what the benchmark's evaluations use) and with sampled actions. For each it
prints the mean return, the mean length, the share of each action (0 noop, 1 left engine, 2 main, 3 right engine),
the mean absolute hull angle at the end (radians; a lander that spins ends far from 0) and, for the arg-max
episodes, the policy's mean probability of the action it took (how sure the arg-max is).

The sampled evaluations draw from torch's global generator, so a probed run's training differs from an unprobed run
with the same seed.

Usage: ``PYTHONPATH=. python docs/lab/lunarlander_argmax_probe.py --seed 100 [--timesteps 300000]
[--eval-freq 20000] [--episodes 10] [--algo ppo] [--set n_epochs=4 ...]`` (about 5 CPU-minutes per 300k steps)
"""

import argparse
import ast

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

from sb3_haepo import HAEPO

# The zoo's PPO entry for LunarLander-v3 (rl_zoo3's hyperparams/ppo.yml), for --algo ppo
ZOO_PPO = {"n_steps": 1024, "batch_size": 64, "gae_lambda": 0.98, "gamma": 0.999, "n_epochs": 4, "ent_coef": 0.01}


def play(model: HAEPO | PPO, deterministic: bool, episodes: int, seed: int) -> dict[str, float]:
    env = gym.make("LunarLander-v3")
    returns, lengths, angles, confidence = [], [], [], []
    actions = np.zeros(4)
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done, total, steps = False, 0.0, 0
        while not done:
            action, _ = model.predict(obs, deterministic=deterministic)
            if deterministic:
                obs_tensor = model.policy.obs_to_tensor(obs)[0]  # as predict() builds it, on the model's device
                with th.no_grad():
                    probs = model.policy.get_distribution(obs_tensor).distribution.probs[0]
                confidence.append(float(probs[int(action)]))
            actions[int(action)] += 1
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            steps += 1
            done = terminated or truncated
        returns.append(total)
        lengths.append(steps)
        angles.append(abs(float(obs[4])))
    env.close()
    result = {
        "return": float(np.mean(returns)),
        "min": float(np.min(returns)),
        "length": float(np.mean(lengths)),
        "end |angle|": float(np.mean(angles)),
    }
    result.update({f"a{a}": actions[a] / actions.sum() for a in range(4)})
    if deterministic:
        result["p(arg-max)"] = float(np.mean(confidence))
    return result


class Probe(BaseCallback):
    def __init__(self, eval_freq: int, episodes: int) -> None:
        super().__init__()
        self.eval_freq, self.episodes, self.next_eval = eval_freq, episodes, eval_freq

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.next_eval:
            self.next_eval += self.eval_freq
            for deterministic in (True, False):
                result = play(self.model, deterministic, self.episodes, seed=10_000)  # type: ignore[arg-type]
                cells = " ".join(
                    f"{key}={value:.2f}" if abs(value) < 10 else f"{key}={value:.0f}" for key, value in result.items()
                )
                print(f"{self.num_timesteps:>8} {'arg-max' if deterministic else 'sampled':>8} {cells}", flush=True)
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--timesteps", type=int, default=300_000)
    parser.add_argument("--eval-freq", type=int, default=20_000)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--algo", choices=["haepo", "ppo"], default="haepo", help="ppo: the zoo's PPO entry")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="constructor overrides of the trained model (HAEPO, or PPO with --algo ppo)",
    )
    args = parser.parse_args()
    kwargs = {key: ast.literal_eval(value) for key, value in (item.split("=", 1) for item in args.set)}
    th.set_num_threads(1)
    env = make_vec_env("LunarLander-v3", n_envs=16, seed=args.seed)
    if args.algo == "ppo":
        model: HAEPO | PPO = PPO("MlpPolicy", env, seed=args.seed, **{**ZOO_PPO, **kwargs})
    else:
        model = HAEPO("MlpPolicy", env, seed=args.seed, **kwargs)
    model.learn(args.timesteps, callback=Probe(args.eval_freq, args.episodes))


if __name__ == "__main__":
    main()
