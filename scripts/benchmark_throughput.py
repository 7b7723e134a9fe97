"""Training throughput of HAEPO vs SB3 PPO on CartPole-v1 (same process, same VecEnv), and of a random policy."""

from sb3_haepo.experiments.throughput import main

if __name__ == "__main__":
    main()
