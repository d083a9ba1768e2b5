"""mtl_jax: multi-task learning experiments in JAX, with missing labels handled by the
seed's masked loss J = (1/m) sum_i sum_j [y_ij valid] L(logit_ij, y_ij)."""
from mtl_jax.losses import masked_logistic_loss, per_task_logistic_loss
from mtl_jax.models import EncoderSpec, joint_model, param_count, separate_models
from mtl_jax.train import TrainConfig, train

__all__ = [
    "EncoderSpec", "TrainConfig", "joint_model", "masked_logistic_loss", "param_count",
    "per_task_logistic_loss", "separate_models", "train",
]
