"""
Check HAEPO end to end on a CUDA device: training (Mlp and Cnn policies), save/load onto the GPU, and evaluation.

Prints the throughput on CUDA next to the CPU's on the same machine (small MLPs are usually faster on the CPU).
Exits non-zero if CUDA is unavailable or a check fails.
"""

import sys
import tempfile
import time

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import FakeImageEnv
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_haepo import HAEPO


def timed_learn(device: str, total_timesteps: int) -> tuple[HAEPO, float]:
    model = HAEPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=8, seed=0), seed=0, device=device)
    start = time.perf_counter()
    model.learn(total_timesteps)
    return model, model.num_timesteps / (time.perf_counter() - start)


def main() -> int:
    if not th.cuda.is_available():
        print("CUDA not available")
        return 1
    print(f"torch {th.__version__}, device {th.cuda.get_device_name(0)}")
    model, cuda_speed = timed_learn("cuda", 50_000)
    assert all(p.is_cuda for p in model.policy.parameters()) and all(p.is_cuda for p in model.ref_policy.parameters())
    mean_return, std_return = evaluate_policy(model, model.get_env(), n_eval_episodes=10)
    print(f"CartPole-v1 on cuda, 50k steps: eval return {mean_return:.1f} +/- {std_return:.1f}, {cuda_speed:,.0f} steps/s")
    _, cpu_speed = timed_learn("cpu", 50_000)
    print(f"same run on cpu: {cpu_speed:,.0f} steps/s (cuda/cpu = {cuda_speed / cpu_speed:.2f})")

    with tempfile.TemporaryDirectory() as folder:
        model.save(f"{folder}/haepo")
        loaded = HAEPO.load(f"{folder}/haepo", device="cuda")
        obs = np.zeros((1, 4), dtype=np.float32)
        assert np.array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
        assert all(p.is_cuda for p in loaded.ref_policy.parameters())
    print("save/load onto cuda: ok")

    image_env = gym.wrappers.TimeLimit(FakeImageEnv(screen_height=84, screen_width=84, n_channels=4, discrete=True), 200)
    cnn = HAEPO("CnnPolicy", image_env, n_episodes=4, n_epochs=2, batch_size=256, seed=0, device="cuda")
    cnn.learn(2000)
    print(f"CnnPolicy on cuda (84x84x4 images, chunks of 256 steps): {cnn._n_updates} updates, ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
