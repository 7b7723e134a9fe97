"""
Token-generation environments: a miniature of fine-tuning a language model with a sequence-level reward.

The agent is a language model. An episode is one response: it emits one token per step (``Discrete(vocab_size)``)
after a prompt drawn from the env's generator (``reset(seed=...)``), the episode ends when it emits the end token or
when ``max_new_tokens`` tokens have been emitted, and the whole response is scored once, at the end: every step
before the last one pays 0.

**Tokens.** ``0`` is the end token, and doubles as padding (as GPT-2's tokenizer does); ``1`` is the separator
``SEP``; the task's own tokens start at ``2``.

**Observation.** A fixed-length token array ``[prompt, SEP, response so far, 0, 0, ...]`` of length
``prompt_length + 1 + max_new_tokens``, as ``Box(0, vocab_size - 1, (length,), int64)``. A ``Box`` because SB3 passes
its values through unchanged (as floats: :class:`~sb3_haepo.common.transformer.CausalTransformerExtractor` turns them
back into token ids), where a ``MultiDiscrete`` space would be one-hot encoded into ``length * vocab_size`` floats.
The prompt and the response hold no 0 (a 0 ends the episode), so the number of non-zero tokens is the filled prefix,
and the next token is generated after its last position. Gymnasium's and SB3's ``check_env`` pass (tested).

**Reward.** In ``[0, 1]``, at the last step only (also when the length limit cuts the response: the response is
complete and scored as it is, so the episode is *terminated*, not truncated, and PPO does not bootstrap a value
there). The optimum is 1 on every prompt: :meth:`TokenSequenceEnv.demonstration` with ``noise=0`` reaches it. The
info of the last step holds ``response`` (the emitted tokens without the end token) and ``is_success`` (reward 1).

Two tasks, registered when :mod:`sb3_haepo.envs` is imported (sizes as kwargs of ``gym.make``):

- ``sb3_haepo/Summarize-v0`` (:class:`SummarizeEnv`): the prompt is a "document" of ``source_length`` tokens; the
  tokens ``2 .. 2 + n_key_tokens - 1`` are key words, the others filler. The reference summary is the document's key
  words in their order. Reward: ROUGE-like F1, the mean of the unigram and bigram F1 of the response against the
  reference (:func:`rouge_f1`).
- ``sb3_haepo/ShortestPath-v0`` (:class:`ShortestPathEnv`): the prompt is a random connected undirected graph on
  ``n_nodes`` nodes (its ``n_edges`` edges as token pairs), ``SEP``, then a source and a target node. The response
  is a walk from the source to the target (node tokens). Reward (:func:`path_reward`): ``shortest / length`` (edges)
  for a valid walk, 1 for a shortest path, 0 for an invalid one.

Mean reward of the uniformly random policy (every token equally likely, the end token included;
:func:`random_policy_reward`, prompts ``reset(seed=0..)``) with the default sizes, measured: Summarize 0.103 over
2,000 episodes (random tokens hit some key words), ShortestPath 0.0005 over 20,000 episodes (0 over 2,000: a random
response is almost never a walk from the source to the target). The optimum is 1 on both.
"""

import abc
import itertools
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sb3_haepo.common.checks import check_int, check_real

END_TOKEN = 0
PAD_TOKEN = END_TOKEN
SEP_TOKEN = 1
FIRST_TASK_TOKEN = 2
MIN_NEW_TOKENS = 16
MAX_NEW_TOKENS = 1024

SUMMARIZE_ENV_ID = "sb3_haepo/Summarize-v0"
SHORTEST_PATH_ENV_ID = "sb3_haepo/ShortestPath-v0"
SEQUENCE_ENV_IDS: tuple[str, ...] = (SUMMARIZE_ENV_ID, SHORTEST_PATH_ENV_ID)


def _ngram_f1(response: list[int], reference: list[int], n: int) -> float:
    """F1 of the clipped n-gram counts (ROUGE-N's precision and recall); 0 when either side has no n-gram."""
    response_ngrams = [tuple(response[i : i + n]) for i in range(len(response) - n + 1)]
    reference_ngrams = [tuple(reference[i : i + n]) for i in range(len(reference) - n + 1)]
    if not response_ngrams or not reference_ngrams:
        return 0.0
    counts: dict[tuple[int, ...], int] = {}
    for ngram in reference_ngrams:
        counts[ngram] = counts.get(ngram, 0) + 1
    overlap = 0
    for ngram in response_ngrams:
        if counts.get(ngram, 0) > 0:
            counts[ngram] -= 1
            overlap += 1
    if overlap == 0:
        return 0.0
    precision = overlap / len(response_ngrams)
    recall = overlap / len(reference_ngrams)
    return 2 * precision * recall / (precision + recall)


def rouge_f1(response: list[int], reference: list[int]) -> float:
    """
    ROUGE-like score of a response against a reference: ``(F1_1 + F1_2) / 2``, the mean of the unigram and bigram F1.

    ``F1_n`` is the harmonic mean of precision (matched n-grams / n-grams of the response) and recall (matched /
    n-grams of the reference), with clipped counts: an n-gram matches at most as often as it occurs in the reference.
    A side without n-grams (an empty response; one token for bigrams) gives ``F1_n = 0``. E.g. response ``[5, 3, 4]``
    against reference ``[3, 4, 6]``: 2 of 3 unigrams match (F1 2/3), 1 of 2 bigrams (``(3, 4)``, F1 1/2): 7/12.

    :return: a score in [0, 1], 1 exactly when the response equals a reference of two tokens or more
    """
    return 0.5 * (_ngram_f1(response, reference, 1) + _ngram_f1(response, reference, 2))


def shortest_distances(adjacency: list[list[int]], source: int) -> list[int]:
    """:return: the number of edges of a shortest path from ``source`` to each node (-1: unreachable), by BFS"""
    distances = [-1] * len(adjacency)
    distances[source] = 0
    queue = deque([source])
    while queue:
        node = queue.popleft()
        for neighbour in adjacency[node]:
            if distances[neighbour] < 0:
                distances[neighbour] = distances[node] + 1
                queue.append(neighbour)
    return distances


def path_reward(path: list[int], edges: set[tuple[int, int]], source: int, target: int, shortest: int) -> float:
    """
    Optimality of a walk in an undirected graph: ``shortest / (len(path) - 1)`` if ``path`` is a walk from ``source``
    to ``target`` (its first node is ``source``, its last ``target``, each consecutive pair an edge), else 0.

    A shortest path scores 1; a valid walk twice as long as the shortest scores 1/2.

    :param path: the nodes of the walk (node indices, not tokens)
    :param edges: the edges, each as ``(u, v)`` with ``u < v``
    :param source: the source node
    :param target: the target node (``!= source``)
    :param shortest: the number of edges of a shortest path (>= 1)
    """
    if len(path) < 2 or path[0] != source or path[-1] != target:
        return 0.0
    for u, v in itertools.pairwise(path):
        if (min(u, v), max(u, v)) not in edges:
            return 0.0
    return shortest / (len(path) - 1)


class TokenSequenceEnv(gym.Env[np.ndarray, np.int64], abc.ABC):
    """
    Abstract base of the token-generation tasks (see the module docstring for the token layout, the observation and
    the reward). A task defines :meth:`_new_prompt` (draw a prompt and its reference answer from ``self.np_random``)
    and :meth:`score` (the reward of a response).

    :param vocab_size: Number of tokens (the action space and the observation's values), ``>= 3``
    :param prompt_length: Length of every prompt (the separator excluded), ``>= 1``
    :param max_new_tokens: Length limit of a response, in ``[16, 1024]``; an episode lasts at most this many steps
    :param render_mode: ``"ansi"`` renders the prompt and the response as text; other modes render nothing
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"], "render_fps": 1}  # noqa: RUF012
    # The reward of the reference answer, the best on every prompt (the mean reward of the random policy is measured
    # by random_policy_reward, and given in the module docstring for the default sizes)
    optimal_reward: float = 1.0

    def __init__(self, vocab_size: int, prompt_length: int, max_new_tokens: int, render_mode: str | None = None):
        self.vocab_size = check_int("vocab_size", vocab_size, FIRST_TASK_TOKEN + 1)
        self.prompt_length = check_int("prompt_length", prompt_length, 1)
        self.max_new_tokens = check_int("max_new_tokens", max_new_tokens, MIN_NEW_TOKENS, MAX_NEW_TOKENS)
        # SB3 makes envs from an id with render_mode="rgb_array": accepted, and only "ansi" renders
        self.render_mode = render_mode
        self.length = self.prompt_length + 1 + self.max_new_tokens
        self.observation_space = spaces.Box(low=0, high=self.vocab_size - 1, shape=(self.length,), dtype=np.int64)
        self.action_space = spaces.Discrete(self.vocab_size)
        self._tokens = np.zeros(self.length, dtype=np.int64)
        self._prompt: list[int] = []
        self._response: list[int] = []
        self._reference: list[int] = []

    # --- what a task defines
    @abc.abstractmethod
    def _new_prompt(self) -> tuple[list[int], list[int]]:
        """:return: a prompt (``prompt_length`` tokens, none of them 0) and its reference answer, from ``np_random``"""

    @abc.abstractmethod
    def score(self, response: list[int]) -> float:
        """:return: the reward in [0, 1] of ``response`` (tokens without the end token) for the current prompt"""

    # --- the episode
    @property
    def prompt(self) -> list[int]:
        """The current prompt (a copy)"""
        return list(self._prompt)

    @property
    def reference(self) -> list[int]:
        """The reference answer to the current prompt, without the end token (a copy); it scores 1"""
        return list(self._reference)

    def demonstration(self, noise: float = 0.0, rng: np.random.Generator | None = None) -> list[int]:
        """
        A demonstration for the current prompt: the reference answer followed by the end token, with each token of
        the answer replaced, with probability ``noise``, by a task token drawn uniformly (a noisy demonstrator, for
        supervised pretraining). The end token is never corrupted.

        :param noise: probability of corrupting each token, in [0, 1]
        :param rng: the generator of the corruption (None: the env's ``np_random``)
        :return: the tokens to emit, the end token included (unless the answer fills ``max_new_tokens``)
        """
        noise = check_real("noise", noise, 0.0, 1.0)
        rng = self.np_random if rng is None else rng
        tokens = list(self._reference)
        for i in range(len(tokens)):
            if rng.random() < noise:
                tokens[i] = int(rng.integers(FIRST_TASK_TOKEN, self.vocab_size))
        # A response of max_new_tokens tokens ends the episode without the end token
        return tokens if len(tokens) >= self.max_new_tokens else [*tokens, END_TOKEN]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        prompt, reference = self._new_prompt()
        assert len(prompt) == self.prompt_length and min(prompt) > END_TOKEN, "a prompt has prompt_length tokens > 0"
        self._prompt, self._reference, self._response = prompt, reference, []
        self._tokens[:] = PAD_TOKEN
        self._tokens[: self.prompt_length] = prompt
        self._tokens[self.prompt_length] = SEP_TOKEN
        return self._tokens.copy(), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        token = int(action)
        if not 0 <= token < self.vocab_size:
            raise ValueError(f"action must be a token in [0, {self.vocab_size}), got {action!r}")
        if token != END_TOKEN:
            self._tokens[self.prompt_length + 1 + len(self._response)] = token
            self._response.append(token)
        if token == END_TOKEN or len(self._response) >= self.max_new_tokens:
            reward = float(self.score(self._response))
            info = {"response": list(self._response), "is_success": reward >= 1.0}
            return self._tokens.copy(), reward, True, False, info
        return self._tokens.copy(), 0.0, False, False, {}

    def render(self) -> str | None:  # type: ignore[override]
        if self.render_mode != "ansi":
            return None
        return f"prompt: {self._prompt}\nresponse: {self._response}\nreference: {self._reference}"


class SummarizeEnv(TokenSequenceEnv):
    """
    Summarisation analogue: copy the key words of a document, in order.

    The tokens ``2 .. 2 + n_key_tokens - 1`` are key words, the other task tokens filler. A prompt is a document of
    ``source_length`` tokens holding between ``min_summary_length`` and ``max_summary_length`` key words (each drawn
    uniformly from the key words, at uniformly drawn positions) and filler elsewhere. The reference summary is the
    document's key words in their order; the reward is :func:`rouge_f1` of the response against it.

    The vocabulary has ``2 + n_key_tokens + n_filler_tokens`` tokens.

    :param source_length: Length of a document (the prompt), ``>= max_summary_length``
    :param n_key_tokens: Number of key words, ``>= 1``
    :param n_filler_tokens: Number of filler words, ``>= 1``
    :param min_summary_length: Fewest key words in a document, ``>= 2`` (so that the reference has a bigram)
    :param max_summary_length: Most key words in a document, in ``[min_summary_length, max_new_tokens]``
    :param max_new_tokens: Length limit of a response, in [16, 1024]
    """

    def __init__(
        self,
        source_length: int = 24,
        n_key_tokens: int = 6,
        n_filler_tokens: int = 10,
        min_summary_length: int = 3,
        max_summary_length: int = 6,
        max_new_tokens: int = 16,
        render_mode: str | None = None,
    ):
        self.n_key_tokens = check_int("n_key_tokens", n_key_tokens, 1)
        self.n_filler_tokens = check_int("n_filler_tokens", n_filler_tokens, 1)
        max_new_tokens = check_int("max_new_tokens", max_new_tokens, MIN_NEW_TOKENS, MAX_NEW_TOKENS)
        self.min_summary_length = check_int("min_summary_length", min_summary_length, 2)
        self.max_summary_length = check_int("max_summary_length", max_summary_length, self.min_summary_length, max_new_tokens)
        self.source_length = check_int("source_length", source_length, self.max_summary_length)
        super().__init__(FIRST_TASK_TOKEN + n_key_tokens + n_filler_tokens, source_length, max_new_tokens, render_mode)

    def is_key(self, token: int) -> bool:
        """:return: whether ``token`` is a key word"""
        return FIRST_TASK_TOKEN <= token < FIRST_TASK_TOKEN + self.n_key_tokens

    def _new_prompt(self) -> tuple[list[int], list[int]]:
        rng = self.np_random
        n_keys = int(rng.integers(self.min_summary_length, self.max_summary_length + 1))
        keys = rng.integers(FIRST_TASK_TOKEN, FIRST_TASK_TOKEN + self.n_key_tokens, size=n_keys)
        first_filler = FIRST_TASK_TOKEN + self.n_key_tokens
        document = rng.integers(first_filler, first_filler + self.n_filler_tokens, size=self.source_length)
        positions = np.sort(rng.choice(self.source_length, size=n_keys, replace=False))
        document[positions] = keys
        return [int(token) for token in document], [int(token) for token in keys]

    def score(self, response: list[int]) -> float:
        return rouge_f1(response, self._reference)


class ShortestPathEnv(TokenSequenceEnv):
    """
    Reasoning analogue: a shortest path in a random graph.

    A prompt is a connected undirected graph on ``n_nodes`` nodes with ``n_edges`` edges (a uniformly random spanning
    tree, by attaching each node of a random order to a random earlier one, plus distinct random extra edges), written
    as ``n_edges`` token pairs ``u v`` in random order, then ``SEP``, the source and the target (distinct, uniformly
    drawn). Node ``i`` is token ``2 + i``; the prompt has ``2 * n_edges + 3`` tokens. The response must be a walk
    ``source .. target`` (node tokens); the reward is :func:`path_reward`: 1 for a shortest path, ``shortest /
    length`` for a longer walk, 0 for anything else. The reference is a shortest path (BFS, the lowest node first on
    ties).

    :param n_nodes: Number of nodes, ``>= 3``
    :param n_edges: Number of edges, in ``[n_nodes - 1, n_nodes * (n_nodes - 1) / 2]``
    :param max_new_tokens: Length limit of a response, in ``[max(16, n_nodes), 1024]`` (a shortest path has at most
        ``n_nodes`` nodes)
    """

    def __init__(self, n_nodes: int = 8, n_edges: int = 10, max_new_tokens: int = 16, render_mode: str | None = None):
        self.n_nodes = check_int("n_nodes", n_nodes, 3)
        self.n_edges = check_int("n_edges", n_edges, self.n_nodes - 1, self.n_nodes * (self.n_nodes - 1) // 2)
        max_new_tokens = check_int("max_new_tokens", max_new_tokens, max(MIN_NEW_TOKENS, self.n_nodes), MAX_NEW_TOKENS)
        super().__init__(FIRST_TASK_TOKEN + self.n_nodes, 2 * self.n_edges + 3, max_new_tokens, render_mode)
        self.edges: set[tuple[int, int]] = set()
        self.source = 0
        self.target = 1
        self.shortest = 1

    def _new_prompt(self) -> tuple[list[int], list[int]]:
        rng = self.np_random
        order = rng.permutation(self.n_nodes)
        edges = set()
        for i in range(1, self.n_nodes):
            u, v = int(order[i]), int(order[rng.integers(i)])
            edges.add((min(u, v), max(u, v)))
        while len(edges) < self.n_edges:
            u, v = (int(node) for node in rng.choice(self.n_nodes, size=2, replace=False))
            edges.add((min(u, v), max(u, v)))
        edge_list = sorted(edges)
        source, target = (int(node) for node in rng.choice(self.n_nodes, size=2, replace=False))
        prompt: list[int] = []
        for index in rng.permutation(len(edge_list)):
            u, v = edge_list[index]
            if rng.random() < 0.5:
                u, v = v, u
            prompt += [FIRST_TASK_TOKEN + u, FIRST_TASK_TOKEN + v]
        prompt += [SEP_TOKEN, FIRST_TASK_TOKEN + source, FIRST_TASK_TOKEN + target]

        adjacency: list[list[int]] = [[] for _ in range(self.n_nodes)]
        for u, v in edge_list:
            adjacency[u].append(v)
            adjacency[v].append(u)
        distances = shortest_distances(adjacency, target)
        # Walk from the source down the distances to the target, the lowest node first on ties
        path = [source]
        while path[-1] != target:
            path.append(min(n for n in adjacency[path[-1]] if distances[n] == distances[path[-1]] - 1))
        self.edges, self.source, self.target, self.shortest = edges, source, target, distances[source]
        return prompt, [FIRST_TASK_TOKEN + node for node in path]

    def score(self, response: list[int]) -> float:
        if any(token < FIRST_TASK_TOKEN for token in response):
            return 0.0
        path = [token - FIRST_TASK_TOKEN for token in response]
        return path_reward(path, self.edges, self.source, self.target, self.shortest)


def random_policy_reward(env_id: str, n_episodes: int = 2000, seed: int = 0, **env_kwargs: Any) -> float:
    """
    :return: the mean reward of the uniformly random policy (every token, the end token included, equally likely)
        over ``n_episodes`` episodes of prompts ``reset(seed=seed + i)``
    """
    env = gym.make(env_id, **env_kwargs)
    env.action_space.seed(seed)
    total = 0.0
    for i in range(n_episodes):
        env.reset(seed=seed + i)
        done = False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            done = terminated or truncated
        total += float(reward)
    env.close()
    return total / n_episodes
