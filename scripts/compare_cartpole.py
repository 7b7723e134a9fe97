"""HAEPO vs PPO on CartPole-v1: a short real training run that prints and plots the comparison."""

from sb3_haepo.experiments.cartpole import main

if __name__ == "__main__":
    main()
