"""The language-model miniature: token-generation envs, the causal transformer, pretraining, KLPPO, the experiment."""

import json
import warnings
from dataclasses import asdict, replace

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import sb3_haepo.envs  # noqa: F401
from sb3_haepo import DPO, GRPO, HAEPO
from sb3_haepo.common.kl_ppo import KLPPO, kl_penalized_rewards
from sb3_haepo.common.pretrain import (
    actor_state_dict,
    demonstration_dataset,
    load_actor,
    load_actor_state,
    pretrain_policy,
    save_actor,
)
from sb3_haepo.common.transformer import CausalTransformerExtractor, transformer_policy_kwargs
from sb3_haepo.envs.sequence import (
    END_TOKEN,
    SEP_TOKEN,
    SEQUENCE_ENV_IDS,
    SHORTEST_PATH_ENV_ID,
    SUMMARIZE_ENV_ID,
    ShortestPathEnv,
    SummarizeEnv,
    path_reward,
    random_policy_reward,
    rouge_f1,
)
from sb3_haepo.experiments import lm

# One torch thread for every test of this file (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def play(env: gym.Env, tokens: list[int]) -> tuple[float, bool, dict]:
    """Emit ``tokens``; :return: the reward of the last step, whether the episode ended, its info"""
    reward, done, info = 0.0, False, {}
    for token in tokens:
        assert not done, "tokens after the end of the episode"
        _, reward, terminated, truncated, info = env.step(token)
        done = terminated or truncated
    return float(reward), done, info


# --- envs


@pytest.mark.parametrize("env_id", SEQUENCE_ENV_IDS)
def test_env_checkers(env_id):
    env = gym.make(env_id).unwrapped
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither checker may warn either
        gym_check_env(env)
        sb3_check_env(env)
    assert env.observation_space == gym.spaces.Box(0, env.vocab_size - 1, (env.length,), np.int64)
    assert env.action_space == gym.spaces.Discrete(env.vocab_size)


@pytest.mark.parametrize("env_id", SEQUENCE_ENV_IDS)
def test_observation_layout_and_end_reward(env_id):
    env = gym.make(env_id).unwrapped
    obs, _ = env.reset(seed=5)
    prompt = env.prompt
    assert list(obs[: env.prompt_length]) == prompt and obs[env.prompt_length] == SEP_TOKEN
    assert (obs[env.prompt_length + 1 :] == 0).all() and min(prompt) > 0
    answer = env.reference
    for i, token in enumerate(answer):
        obs, reward, terminated, truncated, _ = env.step(token)
        assert reward == 0.0 and not terminated and not truncated
        assert list(obs[env.prompt_length + 1 : env.prompt_length + 2 + i]) == answer[: i + 1]
        assert (obs[env.prompt_length + 2 + i :] == 0).all()
    _, reward, terminated, truncated, info = env.step(END_TOKEN)
    assert reward == env.optimal_reward == 1.0 and terminated and not truncated
    assert info == {"response": answer, "is_success": True}
    # Same seed, same prompt; the reference depends on the prompt only
    env.reset(seed=5)
    assert env.prompt == prompt and env.reference == answer


def test_length_limit_terminates_and_scores():
    env = SummarizeEnv(max_new_tokens=16)
    env.reset(seed=0)
    # 16 filler tokens: the limit ends the episode (terminated: the response is complete and scored), F1 0
    filler = 2 + env.n_key_tokens
    reward, done, info = play(env, [filler] * 16)
    assert done and reward == 0.0 and info["response"] == [filler] * 16
    # The reference followed by filler up to the limit: unigram P = k/16, R = 1; bigram P = (k-1)/15, R = 1
    env.reset(seed=0)
    k = len(env.reference)
    reward, done, _ = play(env, env.reference + [filler] * (16 - k))
    p1, p2 = k / 16, (k - 1) / 15
    assert done and reward == pytest.approx(0.5 * (2 * p1 / (p1 + 1) + 2 * p2 / (p2 + 1)))


def test_rouge_f1_hand_computed():
    # 2 of 3 unigrams match (P = R = 2/3), 1 of 2 bigrams: (2/3 + 1/2) / 2 = 7/12
    assert rouge_f1([5, 3, 4], [3, 4, 6]) == pytest.approx(7 / 12)
    assert rouge_f1([3, 4, 6], [3, 4, 6]) == 1.0
    assert rouge_f1([], [3, 4]) == 0.0
    # One token: no bigram; unigram P = 1, R = 1/2 -> F1 2/3, halved
    assert rouge_f1([3], [3, 4]) == pytest.approx(1 / 3)
    # Clipped counts: [3, 3, 3] against [3, 4]: 1 unigram match (P 1/3, R 1/2, F1 2/5), no bigram
    assert rouge_f1([3, 3, 3], [3, 4]) == pytest.approx(0.2)
    # Order matters through the bigrams only: [4, 3] against [3, 4]: unigram F1 1, bigram 0
    assert rouge_f1([4, 3], [3, 4]) == pytest.approx(0.5)


def test_path_reward_hand_computed():
    # A square 0-1-2-3-0 with the diagonal 0-2
    edges = {(0, 1), (1, 2), (2, 3), (0, 3), (0, 2)}
    assert path_reward([0, 2], edges, 0, 2, 1) == 1.0
    assert path_reward([0, 1, 2], edges, 0, 2, 1) == 0.5
    assert path_reward([0, 3, 2, 1, 2], edges, 0, 2, 1) == 0.25  # a walk, revisits allowed
    assert path_reward([0, 1, 3, 2], edges, 0, 2, 1) == 0.0  # 1-3 is no edge
    assert path_reward([1, 2], edges, 0, 2, 1) == 0.0  # wrong source
    assert path_reward([0, 1], edges, 0, 2, 1) == 0.0  # wrong target
    assert path_reward([0], edges, 0, 2, 1) == 0.0


def test_shortest_path_env_scores_tokens():
    env = ShortestPathEnv(n_nodes=5, n_edges=4, max_new_tokens=16)
    env.reset(seed=3)
    # The prompt holds the graph: 4 edges as token pairs, SEP, source, target
    prompt = env.prompt
    assert prompt[8] == SEP_TOKEN and prompt[9] == 2 + env.source and prompt[10] == 2 + env.target
    assert {(min(u, v) - 2, max(u, v) - 2) for u, v in zip(prompt[0:8:2], prompt[1:8:2], strict=True)} == env.edges
    assert len(env.reference) == env.shortest + 1
    assert env.score(env.reference) == 1.0
    # Going to a neighbour of the source and back first: 2 more edges
    neighbour = next(v if u == env.source else u for u, v in sorted(env.edges) if env.source in (u, v))
    detour = [env.reference[0], 2 + neighbour, *env.reference]
    assert env.score(detour) == pytest.approx(env.shortest / (env.shortest + 2))
    assert env.score([SEP_TOKEN, *env.reference]) == 0.0


def test_demonstration_noise():
    env = SummarizeEnv()
    env.reset(seed=1)
    assert env.demonstration(0.0) == [*env.reference, END_TOKEN]
    rng = np.random.default_rng(0)
    corrupted = [env.demonstration(1.0, rng) for _ in range(50)]
    assert all(demo[-1] == END_TOKEN and len(demo) == len(env.reference) + 1 for demo in corrupted)
    assert any(demo[:-1] != env.reference for demo in corrupted)
    assert all(min(demo[:-1]) >= 2 for demo in corrupted)
    with pytest.raises(ValueError, match=r"noise must be a finite number in \[0, 1\], got 1.5"):
        env.demonstration(1.5)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SummarizeEnv(max_new_tokens=8), r"max_new_tokens must be an integer in \[16, 1024\], got 8"),
        (lambda: SummarizeEnv(max_new_tokens=2048), r"max_new_tokens must be an integer in \[16, 1024\], got 2048"),
        (lambda: SummarizeEnv(min_summary_length=1), r"min_summary_length must be an integer >= 2, got 1"),
        (lambda: SummarizeEnv(source_length=4), r"source_length must be an integer >= 6, got 4"),
        (lambda: SummarizeEnv(n_key_tokens=0), r"n_key_tokens must be an integer >= 1, got 0"),
        (lambda: ShortestPathEnv(n_nodes=2), r"n_nodes must be an integer >= 3, got 2"),
        (lambda: ShortestPathEnv(n_nodes=5, n_edges=11), r"n_edges must be an integer in \[4, 10\], got 11"),
        (lambda: ShortestPathEnv(n_nodes=20, n_edges=30), r"max_new_tokens must be an integer in \[20, 1024\], got 16"),
    ],
)
def test_bad_env_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_long_responses():
    env = gym.make(SUMMARIZE_ENV_ID, max_new_tokens=1024, source_length=64).unwrapped
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64 + 1 + 1024,)
    reward, done, _ = play(env, [2] * 1024)
    assert done and 0.0 <= reward < 1.0


def test_random_policy_reward_is_low():
    assert random_policy_reward(SUMMARIZE_ENV_ID, n_episodes=300) < 0.15
    assert random_policy_reward(SHORTEST_PATH_ENV_ID, n_episodes=300) < 0.05


# --- the transformer


def test_extractor_is_causal_and_reads_the_last_filled_position():
    th.manual_seed(0)
    space = gym.spaces.Box(0, 9, (12,), np.int64)
    extractor = CausalTransformerExtractor(space, d_model=16, n_layers=2, n_heads=2)
    assert extractor.features_dim == 16
    tokens = th.tensor([[3, 4, 5, 1, 6, 7, 8, 9, 2, 2, 3, 4]])
    hidden = extractor.hidden_states(tokens)
    assert hidden.shape == (1, 12, 16)
    changed = tokens.clone()
    changed[0, 7:] = th.tensor([2, 2, 2, 2, 2])
    hidden_changed = extractor.hidden_states(changed)
    # Positions before the change are untouched, the changed ones are not
    assert th.allclose(hidden[0, :7], hidden_changed[0, :7], atol=1e-6)
    assert not th.allclose(hidden[0, 7:], hidden_changed[0, 7:])
    # An observation with a 5-token prefix and padding: the feature is the hidden state at position 4, whatever the
    # other observations of the batch (floats, as SB3 passes a Box)
    observations = th.zeros(2, 12)
    observations[0, :5] = tokens[0, :5].float()
    observations[1] = tokens[0].float()
    features = extractor(observations)
    assert features.shape == (2, 16)
    assert th.allclose(features[0], hidden[0, 4], atol=1e-6)
    assert th.allclose(features[1], hidden[0, 11], atol=1e-6)


def test_extractor_arguments():
    space = gym.spaces.Box(0, 9, (12,), np.int64)
    with pytest.raises(ValueError, match="d_model must be divisible by n_heads, got d_model=10 and n_heads=4"):
        CausalTransformerExtractor(space, d_model=10, n_heads=4)
    with pytest.raises(ValueError, match="n_layers must be an integer >= 1, got 0"):
        CausalTransformerExtractor(space, n_layers=0)
    with pytest.raises(ValueError, match="1-dimensional Box"):
        CausalTransformerExtractor(gym.spaces.Box(0, 9, (3, 4), np.int64))
    with pytest.raises(ValueError, match="dim_feedforward must be an integer >= 1 or None, got True"):
        CausalTransformerExtractor(space, dim_feedforward=True)
    # NumPy integers are taken, as Python ints
    extractor = CausalTransformerExtractor(space, d_model=np.int64(16), n_layers=np.int64(1), n_heads=np.int64(2))
    assert type(extractor.features_dim) is int and extractor.features_dim == 16
    # The LM experiment's config keeps Python ints (it is written to JSON)
    config = lm.LMConfig(timesteps=np.int64(600))
    assert type(config.timesteps) is int and json.loads(json.dumps(asdict(config)))["timesteps"] == 600


@pytest.mark.parametrize("algorithm", [HAEPO, GRPO, DPO, KLPPO])
def test_each_method_learns_with_the_transformer(algorithm):
    kwargs = dict(n_steps=64, batch_size=32, n_epochs=2) if algorithm is KLPPO else dict(n_episodes=4, n_epochs=2)
    policy_kwargs = transformer_policy_kwargs(16, 1, 2, value_net_arch=[16] if algorithm is KLPPO else None)
    # Summarize: random responses score differently, so DPO has pairs (on ShortestPath they all score 0)
    model = algorithm("MlpPolicy", SUMMARIZE_ENV_ID, policy_kwargs=policy_kwargs, seed=0, device="cpu", **kwargs)
    assert isinstance(model.policy.features_extractor, CausalTransformerExtractor)
    before = {key: value.clone() for key, value in actor_state_dict(model.policy).items()}
    model.learn(300)
    assert model.num_timesteps >= 300
    after = actor_state_dict(model.policy)
    assert any(not th.equal(before[key], after[key]) for key in before), "the actor did not change"
    assert all(th.isfinite(value).all() for value in after.values())


# --- pretraining and the shared checkpoint


def test_demonstration_dataset():
    observations, actions = demonstration_dataset(SUMMARIZE_ENV_ID, 3, noise=0.0, seed=7)
    env = SummarizeEnv()
    expected_actions: list[int] = []
    for i in range(3):
        env.reset(seed=7 + i)
        expected_actions += env.demonstration(0.0)
    assert actions.tolist() == expected_actions
    assert observations.shape == (len(expected_actions), env.length)
    # The first step of each demonstration sees the bare prompt, the next one the first token appended
    env.reset(seed=7)
    assert observations[0, env.prompt_length + 1] == 0 and observations[1, env.prompt_length + 1] == actions[0]
    with pytest.raises(ValueError, match="not a token-generation env"):
        demonstration_dataset("CartPole-v1", 1, noise=0.0)


def test_pretrained_policy_beats_random_and_is_shared(tmp_path):
    config = lm.QUICK
    model = lm.make_model("HAEPO", config, seed=0)
    untrained = lm.evaluate_policy_kl(model.policy, SUMMARIZE_ENV_ID, n_episodes=100)
    losses = pretrain_policy(model, SUMMARIZE_ENV_ID, n_demos=600, noise=0.3, epochs=6, batch_size=64, learning_rate=3e-3)
    assert losses[-1] < losses[0] - 0.5 and np.isfinite(losses).all()
    pretrained = lm.evaluate_policy_kl(model.policy, SUMMARIZE_ENV_ID, n_episodes=100, ref_policy=model.policy)
    random_reward = random_policy_reward(SUMMARIZE_ENV_ID, n_episodes=100, seed=lm.EVAL_SEED)
    assert pretrained.reward > random_reward + 0.15, (pretrained, random_reward)
    assert pretrained.reward > untrained.reward + 0.15
    assert pretrained.reward < 0.9  # noisy demonstrations: far from the optimum 1
    assert pretrained.ref_kl == pytest.approx(0.0, abs=1e-6)
    # The checkpoint loads into every method; the actor is identical, PPO's value head is its own
    path = save_actor(model.policy, tmp_path / "actor.pt", {"noise": 0.3})
    obs = th.as_tensor(demonstration_dataset(SUMMARIZE_ENV_ID, 2, 0.0)[0]).float()
    expected = model.policy.get_distribution(obs).distribution.logits
    for method in lm.METHODS:
        other = lm.make_model(method, config, seed=1)
        assert load_actor(other.policy, path) == {"noise": 0.3}
        assert th.allclose(other.policy.get_distribution(obs).distribution.logits, expected, atol=1e-6)
    # An actor of another size does not load
    small = lm.make_model("HAEPO", lm.LMConfig(d_model=16, n_layers=1, n_heads=2), seed=0)
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_actor(small.policy, path)
    # A value-head key or an unknown key is refused
    with pytest.raises(ValueError, match="unexpected"):
        load_actor_state(model.policy, {**actor_state_dict(model.policy), "extra.weight": th.zeros(1)})


def test_frozen_reference_is_the_loaded_policy():
    config = lm.LMConfig(d_model=16, n_layers=1, n_heads=2, group_size=4)
    for method in ("HAEPO", "PPO"):
        model = lm.make_model(method, config, seed=0)
        th.manual_seed(1)
        loaded = {key: th.randn_like(value) * 0.1 for key, value in actor_state_dict(model.policy).items()}
        load_actor_state(model.policy, loaded)
        # features_extractor and pi_features_extractor are one module: read back what was loaded
        loaded = actor_state_dict(model.policy)
        model.learn(400)
        reference = actor_state_dict(model.ref_policy)
        assert all(th.equal(reference[key], loaded[key]) for key in loaded)
        assert any(not th.equal(actor_state_dict(model.policy)[key], loaded[key]) for key in loaded)


# --- KLPPO


def test_kl_penalized_rewards():
    rewards = np.array([[0.0], [1.0]])
    log_probs = np.array([[-1.0], [-0.5]])
    ref_log_probs = np.array([[-2.0], [-0.5]])
    assert kl_penalized_rewards(rewards, log_probs, ref_log_probs, 0.1).tolist() == [[-0.1], [1.0]]


def test_klppo_penalises_the_buffer_rewards():
    model = KLPPO(
        "MlpPolicy",
        SUMMARIZE_ENV_ID,
        n_steps=64,
        batch_size=32,
        n_epochs=2,
        gamma=1.0,
        kl_coef=0.5,
        policy_kwargs=transformer_policy_kwargs(16, 1, 2, value_net_arch=[16]),
        seed=0,
        device="cpu",
    )
    _, callback = model._setup_learn(64)
    buffer = model.rollout_buffer

    def collect_and_check(expect_penalty: bool) -> None:
        assert model.collect_rollouts(model.env, callback, buffer, model.n_steps)
        penalty = 0.5 * (buffer.log_probs - model._reference_log_probs(buffer))
        assert (np.abs(penalty).max() > 1e-3) == expect_penalty
        # Steps that do not end a response pay 0 before the penalty, so their reward is minus the penalty
        not_last = buffer.episode_starts[1:] == 0
        assert not_last.sum() > 10
        assert np.allclose(buffer.rewards[:-1][not_last], -penalty[:-1][not_last], atol=1e-5)
        assert np.isfinite(buffer.returns).all() and np.isfinite(buffer.advantages).all()

    collect_and_check(expect_penalty=False)  # the first rollout: the policy is the reference
    model.train()
    collect_and_check(expect_penalty=True)  # after an update the policy has moved from the frozen reference
    with pytest.raises(ValueError, match="kl_coef must be a finite number >= 0, got -1"):
        KLPPO("MlpPolicy", SUMMARIZE_ENV_ID, kl_coef=-1)


def test_klppo_save_load_keeps_the_reference(tmp_path):
    model = KLPPO("MlpPolicy", SUMMARIZE_ENV_ID, n_steps=32, batch_size=32, n_epochs=1, kl_coef=0.1,
                  policy_kwargs=transformer_policy_kwargs(16, 1, 2), seed=0, device="cpu")  # fmt: skip
    model.learn(64)
    model.save(tmp_path / "model.zip")
    loaded = KLPPO.load(tmp_path / "model.zip", device="cpu")
    assert loaded.kl_coef == 0.1 and loaded.reference_frozen
    reference, loaded_reference = actor_state_dict(model.ref_policy), actor_state_dict(loaded.ref_policy)
    assert all(th.equal(reference[key], loaded_reference[key]) for key in reference)


# --- the experiment


def test_quick_experiment_writes_a_report(tmp_path):
    results = lm.main(["--quick", "--out", str(tmp_path), "--timesteps", "200", "--methods", "HAEPO", "PPO"])
    text = (tmp_path / "lm_summarize.md").read_text()
    assert "| HAEPO |" in text and "| PPO |" in text and "| pretrained |" in text
    assert (tmp_path / "pretrained_summarize.pt").exists() and (tmp_path / "lm_summarize.json").exists()
    for run in results["runs"]:
        assert run["steps"] >= 200 and np.isfinite(run["reward"]) and run["ref_kl"] >= 0
    # A second run loads the checkpoint instead of pretraining again
    again = lm.main(["--quick", "--out", str(tmp_path), "--timesteps", "200", "--methods", "DPO"])
    assert again["pretraining"] == results["pretraining"]
    with pytest.raises(ValueError, match="pretrained with n_layers=2"):
        lm.run_experiment(replace(lm.QUICK, n_layers=1, methods=("DPO",)), tmp_path)
    # ... and one pretrained with other demonstrations (the pretraining settings are checked too)
    with pytest.raises(ValueError, match=f"pretrained with noise={lm.QUICK.noise!r}"):
        lm.run_experiment(replace(lm.QUICK, noise=lm.QUICK.noise / 2, methods=("DPO",)), tmp_path)


@pytest.mark.slow
def test_fine_tuning_improves_on_the_pretrained_policy(tmp_path):
    config = replace(lm.QUICK, timesteps=6000, methods=("HAEPO",), n_eval_episodes=200, eval_freq=3000)
    results = lm.run_experiment(config, tmp_path)
    (run,) = results["runs"]
    assert run["reward"] > results["pretrained"]["reward"] + 0.05, (run["reward"], results["pretrained"])
    assert run["ref_kl"] > 0


def test_lm_memory_case_fields():
    """One measured update per method in this process: the fields, a full-length batch, one epoch for every method."""
    for method in lm.METHODS:
        case = lm.LMMemoryCase(method, max_new_tokens=16, n_episodes=2, batch_size=16, config_name="quick")
        assert lm.memory_overrides(case)["n_epochs"] == 1
        record = lm.measure_lm_memory_case(case)
        assert record["case"]["method"] == method
        # Every response lasted max_new_tokens tokens: the batch holds n_episodes * max_new_tokens steps
        assert record["steps"] == case.n_steps == 32
        assert record["seconds"] > 0 and record["peak_rss"] >= record["rss_before"] > 0
        assert record["cuda_peak"] is None and record["cuda_before"] is None


def test_lm_memory_report(tmp_path):
    """--memory --quick: each case in a fresh process, every method in the table, the ratios to PPO and GRPO."""
    text = lm.main(["--memory", "--quick", "--lengths", "16", "--memory-episodes", "2", "--out", str(tmp_path)])
    assert (tmp_path / lm.MEMORY_REPORT).read_text(encoding="utf-8") == text
    for label in ("| HAEPO |", "| GRPO |", "| DPO |", "| PPO (KLPPO) |", "| HAEPO / PPO |", "| HAEPO / GRPO |"):
        assert label in text
    assert "T = 16" in text and "CUDA" not in text.split("| method |")[1]
    with pytest.raises(ValueError, match="methods"):
        lm.run_lm_memory((16,), ("SAC",), verbose=False)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--quick", "--publish"], "--publish publishes the full size only, not --quick"),
        (["--quick", "--memory", "--publish"], "--publish publishes the full size only, not --quick"),
        (["--methods", "HAEPO", "--publish"], "--publish publishes every method at the full budget"),
        (["--timesteps", "500", "--publish"], "--publish publishes every method at the full budget"),
    ],
)
def test_publish_only_the_full_experiment(argv, message, capsys):
    """The published reports are never overwritten by a smaller run."""
    with pytest.raises(SystemExit):
        lm.main(argv)
    assert message in capsys.readouterr().err
