"""
A small causal transformer as an SB3 features extractor: the policy of the token-generation envs
(:mod:`sb3_haepo.envs.sequence`), usable by HAEPO, GRPO, DPO and PPO.

The policy is SB3's ``ActorCriticPolicy`` ("MlpPolicy") with :class:`CausalTransformerExtractor` as its features
extractor: the extractor returns the transformer's hidden state at the last filled position of the observation (where
the next token is generated), and the action head (a linear layer, ``net_arch`` ``pi=[]``) maps it to the logits of
the next token, as a language model's unembedding does. :func:`transformer_policy_kwargs` builds the ``policy_kwargs``;
with ``value_net_arch`` (PPO) a value MLP reads the same hidden state.
"""

from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from sb3_haepo.common.checks import check_int, check_optional_int, check_real

PAD_TOKEN_ID = 0


class CausalTransformerExtractor(BaseFeaturesExtractor):
    """
    Token and position embeddings, ``n_layers`` pre-norm ``nn.TransformerEncoderLayer`` with a causal mask (a
    decoder-only transformer, as GPT's), a final layer norm; the features are the hidden state at the last filled
    position.

    The observation is a fixed-length array of token ids ``[filled prefix, pad, pad, ...]``: the pad token (0) appears
    only after the filled prefix, so the prefix length is the number of non-pad tokens (the layout of
    :class:`~sb3_haepo.envs.sequence.TokenSequenceEnv`). SB3 hands a ``Box`` observation over as floats: they are
    rounded back to token ids. Positions past the longest prefix of the batch are not computed (with the causal mask
    they cannot change the features), so a forward pass costs what the filled prefixes need, not the full length.

    No dropout by default: the episodic algorithms compare the log-probabilities of rollouts (eval mode) with those of
    the update (train mode), which dropout would make differ.

    :param observation_space: ``Box`` of shape ``(length,)`` with integer bounds ``[0, vocab_size - 1]``
    :param d_model: width of the embeddings and hidden states (the features dimension), divisible by ``n_heads``
    :param n_layers: number of transformer layers, ``>= 1``
    :param n_heads: number of attention heads, ``>= 1``
    :param dim_feedforward: width of each layer's MLP (None: ``4 * d_model``)
    :param dropout: dropout probability in [0, 1)
    """

    def __init__(
        self,
        observation_space: spaces.Box,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        dim_feedforward: int | None = None,
        dropout: float = 0.0,
    ):
        if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
            raise ValueError(
                "CausalTransformerExtractor needs a 1-dimensional Box observation space of token ids, "
                f"got {observation_space!r}"
            )
        d_model = check_int("d_model", d_model, 1)
        n_layers = check_int("n_layers", n_layers, 1)
        n_heads = check_int("n_heads", n_heads, 1)
        if d_model % n_heads != 0:
            raise ValueError(f"d_model must be divisible by n_heads, got d_model={d_model} and n_heads={n_heads}")
        dim_feedforward = check_optional_int("dim_feedforward", dim_feedforward, 1)
        dropout = check_real("dropout", dropout, 0.0, 1.0, high_open=True)
        super().__init__(observation_space, d_model)
        self.vocab_size = int(observation_space.high.max()) + 1
        self.max_length = int(observation_space.shape[0])
        self.token_embedding = nn.Embedding(self.vocab_size, d_model)
        self.position_embedding = nn.Embedding(self.max_length, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model,
            n_heads,
            dim_feedforward=4 * d_model if dim_feedforward is None else dim_feedforward,
            dropout=dropout,
            batch_first=True,
            norm_first=True,
        )
        self.layers = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(d_model)

    def hidden_states(self, tokens: th.Tensor) -> th.Tensor:
        """
        :param tokens: token ids, shape (batch, n), no longer than the observation
        :return: the hidden state at every position, shape (batch, n, d_model); position i depends on tokens 0..i only
        """
        n = tokens.shape[1]
        positions = th.arange(n, device=tokens.device)
        x = self.token_embedding(tokens) + self.position_embedding(positions)
        mask = nn.Transformer.generate_square_subsequent_mask(n, device=tokens.device)
        return self.final_norm(self.layers(x, mask=mask, is_causal=True))

    def forward(self, observations: th.Tensor) -> th.Tensor:
        tokens = observations.round().long()
        lengths = (tokens != PAD_TOKEN_ID).sum(dim=1).clamp(min=1)
        n = int(lengths.max())
        hidden = self.hidden_states(tokens[:, :n])
        return hidden[th.arange(len(tokens), device=tokens.device), lengths - 1]


def transformer_policy_kwargs(
    d_model: int = 64,
    n_layers: int = 2,
    n_heads: int = 4,
    dim_feedforward: int | None = None,
    value_net_arch: list[int] | None = None,
) -> dict[str, Any]:
    """
    ``policy_kwargs`` of an ``"MlpPolicy"`` whose features extractor is :class:`CausalTransformerExtractor`, with no
    hidden layer between the features and the token logits (``pi=[]``), e.g.
    ``HAEPO("MlpPolicy", env, policy_kwargs=transformer_policy_kwargs())``.

    SB3's orthogonal initialisation is off (``ortho_init=False``): it would re-initialise the transformer's linear
    layers with the gains of an MLP; PyTorch's defaults are kept.

    :param d_model: see :class:`CausalTransformerExtractor`
    :param n_layers: see :class:`CausalTransformerExtractor`
    :param n_heads: see :class:`CausalTransformerExtractor`
    :param dim_feedforward: see :class:`CausalTransformerExtractor`
    :param value_net_arch: the hidden layers of the value head (``vf``), for PPO (e.g. ``[64]``); None: no value MLP
        (``vf=[]``, the episodic algorithms never evaluate it). The value head shares the transformer with the actor.
    :return: a new dict (safe to modify)
    """
    return {
        "features_extractor_class": CausalTransformerExtractor,
        "features_extractor_kwargs": {
            "d_model": d_model,
            "n_layers": n_layers,
            "n_heads": n_heads,
            "dim_feedforward": dim_feedforward,
        },
        "net_arch": {"pi": [], "vf": list(value_net_arch or [])},
        "ortho_init": False,
    }
