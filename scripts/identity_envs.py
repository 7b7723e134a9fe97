"""HAEPO vs PPO on SB3's identity envs at a 5k-step budget (the learning-strength target)."""

from sb3_haepo.experiments.identity import main

if __name__ == "__main__":
    main()
