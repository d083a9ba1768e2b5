"""MTL methods (combination steps) by name. Adding one is a module with a `Method`
(see base.py) and a line here."""
from mtl_jax.methods.base import LOSSES, NEEDS, REPR_GRADS, SHARED_GRADS, Method, Terms, Update
from mtl_jax.methods.equal_weighting import EQUAL_WEIGHTING

METHODS: dict[str, Method] = {
    "ew": EQUAL_WEIGHTING,
}
DEFAULT_METHOD = "ew"

__all__ = ["LOSSES", "METHODS", "NEEDS", "REPR_GRADS", "SHARED_GRADS", "DEFAULT_METHOD", "Method",
           "Terms", "Update"]
