"""
Lab prototype, not part of the package (docs/LEARNING.md, entry 3): HAEPO's Plackett-Luce weights with per-step
credit from the discounted reward-to-go, on SB3's identity envs at 5k steps, seeds 0-2.

For step t of episode k: G_{k,t} = sum_{t' >= t} gamma_s^(t' - t) r_{k,t'} (SB3's per-step meaning of a discount
gamma_s), a time-indexed group baseline b_t = mean_k G_{k,t} (over the episodes that reach t), A = (G - b) / std,
and the surrogate's coefficient of log pi(a_t|s_t) is -w_k A_{k,t} / T_k (w = softmax of the mean log-prob scores,
or uniform with use_weights=False), in place of HAEPO's -w_k (Rn_k - sum_j w_j Rn_j) / T_k. No beta/lam terms.

Run from the repository root: PYTHONPATH=. python docs/lab/step_credit_prototype.py "{'step_gamma': 0.4}"
"""

import ast
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_haepo import HAEPO
from sb3_haepo.common.utils import trajectory_scores
from sb3_haepo.experiments.identity import ENVS


class StepCreditHAEPO(HAEPO):
    def __init__(self, *args: Any, step_gamma: float = 0.4, use_weights: bool = True, **kwargs: Any):
        self.step_gamma = step_gamma
        self.use_weights = use_weights
        super().__init__(*args, **kwargs)

    def train(self) -> None:
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        self._refresh_reference()
        buffer = self.rollout_buffer
        batch = buffer.get()
        positions, _ = buffer._completed_step_order()
        rewards = buffer.rewards[positions].astype(np.float64)
        index = batch.episode_index.cpu().numpy()
        n_episodes = len(batch.returns)
        reward_to_go = np.zeros_like(rewards)
        t = np.zeros(len(rewards), dtype=np.int64)
        for k in range(n_episodes):
            steps = np.flatnonzero(index == k)
            running = 0.0
            for i in range(len(steps) - 1, -1, -1):
                running = rewards[steps[i]] + self.step_gamma * running
                reward_to_go[steps[i]] = running
            t[steps] = np.arange(len(steps))
        baseline = np.bincount(t, weights=reward_to_go) / np.bincount(t)
        advantages = reward_to_go - baseline[t]
        advantages = th.as_tensor(advantages / (advantages.std() + 1e-8), dtype=th.float32)
        lengths = batch.lengths.float()
        for _ in range(self.n_epochs):
            with th.no_grad():
                log_probs, _ = self._step_log_probs(self.policy, batch, self.batch_size)
                scores = trajectory_scores(log_probs, batch.episode_index, batch.lengths, "mean")
                weights = th.softmax(scores, 0) if self.use_weights else th.full((n_episodes,), 1.0 / n_episodes)
            step_coef = -(weights[batch.episode_index] * advantages / lengths[batch.episode_index])
            self._score_gradient_step(batch, step_coef)
            self._n_updates += 1


def run(job: tuple[str, int, dict[str, Any]]) -> float:
    env_name, seed, hyperparams = job
    th.set_num_threads(1)
    model = StepCreditHAEPO("MlpPolicy", ENVS[env_name](), seed=seed, device="cpu", **hyperparams)
    model.learn(5000)
    eval_env = ENVS[env_name]()
    eval_env.action_space.seed(seed + 1000)
    eval_env.reset(seed=seed + 1000)
    return float(evaluate_policy(model, eval_env, n_eval_episodes=20)[0])


if __name__ == "__main__":
    hyperparams = ast.literal_eval(sys.argv[1]) if len(sys.argv) > 1 else {}
    jobs = [(env_name, seed, hyperparams) for env_name in ENVS for seed in (0, 1, 2)]
    with ProcessPoolExecutor(2) as pool:
        means = list(pool.map(run, jobs))
    for i, env_name in enumerate(ENVS):
        row = means[3 * i : 3 * i + 3]
        per_seed = ", ".join(f"{mean:.1f}" for mean in row)
        print(f"| {env_name} | {hyperparams} | {per_seed} | {np.mean(row):.1f} | {sum(m >= 90 for m in row)}/3 |")
