"""Steps HAEPO needs to solve CartPole-v1 per seed, for a set of hyperparameters (how the defaults were chosen)."""

from sb3_haepo.experiments.steps_to_solve import main

if __name__ == "__main__":
    main()
