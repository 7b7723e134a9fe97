"""The language-model miniature: pretrain a small transformer, fine-tune it with HAEPO, GRPO, DPO and PPO (KL)."""

from sb3_haepo.experiments.lm import main

if __name__ == "__main__":
    main()
