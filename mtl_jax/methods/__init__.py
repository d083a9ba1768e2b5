"""MTL methods (combination steps) by name. Adding one is a module with a builder
`NAME(**hyper_parameters) -> Method` (see base.py) and a line here; each keyword of
the builder, with its default, becomes the flag --NAME_KEYWORD (experiments/cli.py)."""
import inspect
from typing import Callable

from mtl_jax.errors import InputError
from mtl_jax.methods.base import (LOSSES, NEEDS, REPR_GRADS, SHARED_GRADS, Method, Terms, Update,
                                  flat_jacobian, unflatten_like)
from mtl_jax.methods.equal_weighting import equal_weighting, is_equal_weighting
# Modules, not their builders, are imported by name: a builder named like its module
# would otherwise replace the module as this package's attribute.
from mtl_jax.methods import (aligned_mtl, cagrad, db_mtl, dualproj, gradnorm, gradvac, imtl, mgda,
                             nash_mtl, pcgrad, upgrad)
from mtl_jax.methods.loss_weighting import (dynamic_weight_averaging, famo, geometric_loss_strategy,
                                            random_loss_weighting, uncertainty_weighting)

METHODS: dict[str, Callable[..., Method]] = {
    "ew": equal_weighting,
    # loss weighting
    "uw": uncertainty_weighting,
    "dwa": dynamic_weight_averaging,
    "rlw": random_loss_weighting,
    "gls": geometric_loss_strategy,
    "famo": famo,
    # gradient combination on the shared parameters
    "mgda": mgda.mgda,
    "pcgrad": pcgrad.pcgrad,
    "gradvac": gradvac.gradvac,
    "imtl_g": imtl.imtl_g,
    "cagrad": cagrad.cagrad,
    "upgrad": upgrad.upgrad,
    "dualproj": dualproj.dualproj,
    "aligned_mtl": aligned_mtl.aligned_mtl,
    "nash_mtl": nash_mtl.nash_mtl,
    "gradnorm": gradnorm.gradnorm,
    "db_mtl": db_mtl.db_mtl,
    # on per-task gradients of the shared representation (one backward pass)
    "mgda_ub": mgda.mgda_ub,
}
DEFAULT_METHOD = "ew"


def hyper_parameters(name: str) -> dict[str, float]:
  """A method's hyper-parameters and their defaults (the papers')."""
  return {k: p.default for k, p in inspect.signature(METHODS[name]).parameters.items()}


def init_state(method: Method, num_tasks: int, num_shared_params: int):
  """method.init(num_tasks), or init(num_tasks, num_shared_params) for a method whose
  state is sized by the shared parameters (DB-MTL's running gradient averages)."""
  if len(inspect.signature(method.init).parameters) == 2:
    return method.init(num_tasks, num_shared_params)
  return method.init(num_tasks)


def build_method(name: str, options: tuple[tuple[str, float], ...] = ()) -> Method:
  if name not in METHODS:
    raise InputError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
  unknown = [k for k, _ in options if k not in hyper_parameters(name)]
  if unknown:
    raise InputError(f"method {name!r} has no hyper-parameter {unknown[0]!r}; it has "
                     f"{', '.join(hyper_parameters(name)) or 'none'}")
  return METHODS[name](**dict(options))


__all__ = ["LOSSES", "METHODS", "NEEDS", "REPR_GRADS", "SHARED_GRADS", "DEFAULT_METHOD", "Method",
           "Terms", "Update", "build_method", "init_state", "flat_jacobian", "hyper_parameters", "is_equal_weighting",
           "unflatten_like"]
