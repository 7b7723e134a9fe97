"""Peak memory and time of one HAEPO update for episodes of 10^2 to 10^5 steps: two-pass against one-pass autograd."""

from sb3_haepo.experiments.memory import main

if __name__ == "__main__":
    main()
