# This file is here just to define MlpPolicy/CnnPolicy/MultiInputPolicy that work for GRPO.
# GRPO only evaluates the actor of these policies (see EpisodicOnPolicyAlgorithm).
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, MultiInputActorCriticPolicy

MlpPolicy = ActorCriticPolicy
CnnPolicy = ActorCriticCnnPolicy
MultiInputPolicy = MultiInputActorCriticPolicy
