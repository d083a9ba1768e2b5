"""Loss-weighting methods: each returns per-task weights w_t, and the step trains on
the gradient of sum_t w_t L_t (weights are stop-gradient'ed by the step). None of them
needs per-task gradients. GLS and FAMO weigh by this batch's losses and ask for LOSSES
(with micro-batches, one extra forward pass per step); UW and DWA only learn from
them, after the gradient is formed (`observe`: free, the losses come out of the
weighted pass).

Common conventions
------------------
* Absent tasks (no valid label in the batch, `present_T` False) get weight 0, are
  left out of every softmax / mean / product (which is renormalised over the present
  tasks), and their entries of the method's state are not updated. With no task
  present every weight is 0 (a zero update) and the state is unchanged.
* Every core is also a pure function on arrays (`uw_weights`, `dwa_weights`,
  `rlw_weights`, `gls_weights`, `famo_weights`, `famo_logit_grad`, ...), so the
  tests check it against numpy hand computations.
* Learnable method parameters (UW's log-variances, FAMO's logits) are updated inside
  `combine` (FAMO) or `observe` (UW) by their own Adam step (`_adam`, torch.optim.Adam's update with L2 weight
  decay added to the gradient, b1 = 0.9, b2 = 0.999, eps = 1e-8) with a per-task step
  count, so a task that is absent for some steps is bias-corrected by its own count.
  All closed forms: no iterative solver, exact up to float32.

uw -- Uncertainty weighting
  Kendall, Gal & Cipolla (2018), "Multi-Task Learning Using Uncertainty to Weigh
  Losses for Scene Geometry and Semantics" (CVPR). Each task has a learnable
  log-variance s_t; the objective is sum_t exp(-s_t) L_t + s_t, so the network's
  weights are w_t = exp(-s_t) and s_t is driven towards log L_t (d/ds_t = 1 - exp(-s_t) L_t).
  Constant convention: LibMTL (LibMTL/weighting/UW.py) minimises
  sum_t L_t / (2 exp(s_t)) + s_t / 2, i.e. half of ours: its weights are exp(-s_t)/2 for
  the same s (and it starts at s = -0.5). We start at s = 0, i.e. at equal weighting
  (w = 1, EW's scale); because s is trained with Adam, the factor 1/2 in the gradient of
  s changes nothing (Adam is invariant to a constant gradient scale, up to eps).
  Hyper-parameter: `lr` = 3e-3, the Adam learning rate of s (Kendall et al. and LibMTL
  train s with the network's optimizer; 3e-3 is this package's default network learning
  rate, TrainConfig.learning_rate). The weights used in a step are those of s before
  that step's update (a joint gradient step on network and s). Absent tasks: weight 0,
  s_t and its Adam moments untouched. s is updated in `observe`, from the losses of
  the weighted pass.

dwa -- Dynamic weight averaging
  Liu, Johns & Davison (2019), "End-to-End Multi-Task Learning with Attention" (CVPR),
  section 3.2 (and LibMTL/weighting/DWA.py). w_t = K softmax_t(r_t / T) with
  r_t = Lbar_t(e-1) / Lbar_t(e-2), the ratio of the task's average training loss over the
  last two epochs; w = 1 for the first two epochs. Hyper-parameter `temperature` T = 2.
  State: the running sum and count of each task's losses in the current epoch (a step
  adds a task's loss only when the task is present, so averages are over present
  steps), the last two epochs' averages and whether each had any present step, and the
  number of epochs completed. At `terms.epoch_start` the current epoch's sums are
  rolled into the averages (the first step of training rolls nothing). Absent tasks:
  weight 0, and K is the number of present tasks (softmax renormalised over them); a
  task with no present step in one of the two epochs (or a zero average) gets r_t = 1.
  This batch's losses are recorded in `observe` (the weights do not use them).

rlw -- Random loss weighting
  Lin, Ye, Zhang & Tsang (2022), "Reasonable Effectiveness of Random Weighting: A
  Litmus Test for Multi-Task Learning" (TMLR; LibMTL/weighting/RLW.py). w = softmax of
  standard normal draws (one per task, from this step's `key`) over the present tasks,
  times the number K of present tasks, so the weights average 1 as in EW (LibMTL's sum
  to 1: ours are K times theirs). No hyper-parameters, no state.

gls -- Geometric loss strategy
  Chennupati, Sistu, Yogamani & Rawashdeh (2019), "MultiNet++: Multi-Stream Feature
  Aggregation and Geometric Loss Strategy for Multi-Task Learning" (CVPR workshops;
  LibMTL/weighting/GLS.py). Minimises G = (prod_t L_t)^(1/K) over the K present tasks,
  whose gradient is sum_t G / (K L_t) grad L_t: weights w_t = G / (K L_t) from this
  batch's losses (computed as exp(mean_s log L_s - log L_t) / K). Scale: the gradient of
  G itself, as in LibMTL (at equal losses w_t = 1/K, not EW's 1). Guard: a present task
  whose loss is <= 1e-12 (nothing left to learn; log and 1/L undefined) is treated as
  absent. No hyper-parameters, no state.

famo -- Fast Adaptive Multitask Optimization
  Liu, Feng, Stone & Liu (2023), "FAMO: Fast Adaptive Multitask Optimization"
  (NeurIPS; official code Cranial-XIX/FAMO, methods/weight_methods.py, and
  LibMTL/weighting/FAMO.py). Logits xi (state, start 0), z = softmax(xi); the network
  descends sum_t z_t log(L_t - m_t + 1e-8) / c with c = sum_t z_t / (L_t - m_t + 1e-8),
  i.e. weights w_t = z_t / (c (L_t - m_t + 1e-8)), which sum to 1 (the paper's scale;
  m_t = min_losses = 0). xi is updated from the decrease of the log-losses,
  delta_t = log(L_t^prev + 1e-8) - log(L_t + 1e-8): its gradient is the softmax
  Jacobian's transpose times delta, g_t = z_t (delta_t - sum_s z_s delta_s), and an Adam
  step with learning rate `lr` and L2 weight decay `gamma` (g += gamma xi) follows.
  Consecutive-step variant: the official code re-evaluates the same batch after the
  network's step; here (no extra forward pass) delta compares the previous step's losses
  with this step's (a different batch), the cheap variant the paper mentions. Each
  step first updates xi with the delta now available, then weights this batch with the
  new xi, then stores this batch's losses. Hyper-parameters: `lr` = 0.025 (paper and
  official code), `gamma` = 0.01 (the official FAMO class's default and its CelebA
  run, the multi-label binary setting closest to this package; its QM9/NYU runs use
  0.001, LibMTL defaults to 1e-5). Absent tasks: weight 0 (softmax and c over present
  tasks); xi_t is updated only when task t is present in this step and the previous one
  (the softmax Jacobian is taken over those tasks). Needs LOSSES.
"""
import jax
import jax.numpy as jnp

from mtl_jax.methods.base import LOSSES, Method, Terms, Update, no_state

ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8
GLS_MIN_LOSS = 1e-12
FAMO_EPS = 1e-8


def _f32(x):
  return jnp.asarray(x, jnp.float32)


def masked_softmax(logits_T, mask_T):
  """softmax over the entries where mask_T is True, 0 elsewhere (all 0 if none)."""
  mask_T = jnp.asarray(mask_T, bool)
  logits_T = _f32(logits_T)
  top = jnp.max(jnp.where(mask_T, logits_T, -jnp.inf))
  top = jnp.where(jnp.isfinite(top), top, 0.0)
  e_T = jnp.where(mask_T, jnp.exp(jnp.where(mask_T, logits_T - top, 0.0)), 0.0)
  total = jnp.sum(e_T)
  return e_T / jnp.where(total > 0, total, 1.0)


def _adam(param_T, grad_T, m_T, v_T, count_T, mask_T, lr, weight_decay=0.0):
  """One torch.optim.Adam step (L2 weight decay added to the gradient) on the entries
  where mask_T is True; the others (parameter, moments, count) are left as they were."""
  g = grad_T + weight_decay * param_T
  m_new = ADAM_B1 * m_T + (1 - ADAM_B1) * g
  v_new = ADAM_B2 * v_T + (1 - ADAM_B2) * g * g
  c_new = count_T + 1
  m_hat = m_new / (1 - ADAM_B1 ** c_new.astype(jnp.float32))
  v_hat = v_new / (1 - ADAM_B2 ** c_new.astype(jnp.float32))
  p_new = param_T - lr * m_hat / (jnp.sqrt(v_hat) + ADAM_EPS)
  pick = lambda new, old: jnp.where(mask_T, new, old)
  return pick(p_new, param_T), pick(m_new, m_T), pick(v_new, v_T), pick(c_new, count_T)


def _adam_state(num_tasks):
  zeros = jnp.zeros(num_tasks, jnp.float32)
  return {"m": zeros, "v": zeros, "count": jnp.zeros(num_tasks, jnp.int32)}


# ---------------------------------------------------------------- uncertainty weighting

def uw_weights(log_var_T, present_T):
  """w_t = exp(-s_t) on present tasks, 0 on absent ones."""
  return jnp.where(jnp.asarray(present_T, bool), jnp.exp(-_f32(log_var_T)), 0.0)


def uw_log_var_grad(log_var_T, losses_T):
  """d/ds_t of exp(-s_t) L_t + s_t."""
  return 1.0 - jnp.exp(-_f32(log_var_T)) * _f32(losses_T)


def uncertainty_weighting(lr: float = 3e-3) -> Method:
  def init(num_tasks):
    return {"log_var": jnp.zeros(num_tasks, jnp.float32), **_adam_state(num_tasks)}

  def combine(terms: Terms, state, key):
    del key
    return Update(uw_weights(state["log_var"], terms.present_T)), state

  def observe(terms: Terms, state):  # the Adam step of s, on this batch's losses
    grad = uw_log_var_grad(state["log_var"], terms.losses_T)
    s, m, v, c = _adam(state["log_var"], grad, state["m"], state["v"], state["count"], terms.present_T, lr)
    return {"log_var": s, "m": m, "v": v, "count": c}

  return Method(init, combine, observe=observe)


# ---------------------------------------------------------------- dynamic weight averaging

def dwa_weights(avg_last_T, avg_before_T, valid_T, present_T, temperature=2.0):
  """K softmax(r / T) over the present tasks, r_t = avg_last_t / avg_before_t (1 where
  valid_t is False or avg_before_t is 0); 0 for absent tasks."""
  avg_last_T, avg_before_T = _f32(avg_last_T), _f32(avg_before_T)
  ok = jnp.asarray(valid_T, bool) & (avg_before_T > 0)
  ratio = jnp.where(ok, avg_last_T / jnp.where(ok, avg_before_T, 1.0), 1.0)
  k = jnp.sum(jnp.asarray(present_T, jnp.float32))
  return k * masked_softmax(ratio / temperature, present_T)


def dwa_init(num_tasks):
  zeros = jnp.zeros(num_tasks, jnp.float32)
  no = jnp.zeros(num_tasks, bool)
  return {"sum": zeros, "count": zeros, "avg_last": zeros, "avg_before": zeros,
          "valid_last": no, "valid_before": no, "epochs": jnp.zeros((), jnp.int32)}


def dwa_roll(state, epoch_start):
  """At the first step of an epoch, the finished epoch's averages (if it had any
  present step) become the last epoch's, and the running sums restart."""
  roll = jnp.asarray(epoch_start, bool) & jnp.any(state["count"] > 0)
  seen = state["count"] > 0
  avg = state["sum"] / jnp.where(seen, state["count"], 1.0)
  pick = lambda new, old: jnp.where(roll, new, old)
  zeros = jnp.zeros_like(state["sum"])
  reset = jnp.asarray(epoch_start, bool)
  return {"sum": jnp.where(reset, zeros, state["sum"]), "count": jnp.where(reset, zeros, state["count"]),
          "avg_last": pick(avg, state["avg_last"]), "avg_before": pick(state["avg_last"], state["avg_before"]),
          "valid_last": pick(seen, state["valid_last"]),
          "valid_before": pick(state["valid_last"], state["valid_before"]),
          "epochs": state["epochs"] + roll.astype(jnp.int32)}


def dynamic_weight_averaging(temperature: float = 2.0) -> Method:
  def combine(terms: Terms, state, key):
    del key
    present = terms.present_T
    state = dwa_roll(state, terms.epoch_start)
    dwa = dwa_weights(state["avg_last"], state["avg_before"],
                      state["valid_last"] & state["valid_before"], present, temperature)
    weights = jnp.where(state["epochs"] >= 2, dwa, jnp.where(present, 1.0, 0.0))
    return Update(weights), state

  def observe(terms: Terms, state):  # this batch's losses join the epoch's running sums
    present = terms.present_T
    return {**state, "sum": state["sum"] + jnp.where(present, terms.losses_T, 0.0),
            "count": state["count"] + present.astype(jnp.float32)}

  return Method(dwa_init, combine, observe=observe)


# ---------------------------------------------------------------- random loss weighting

def rlw_weights(draws_T, present_T):
  """K softmax(draws) over the present tasks, 0 for absent ones."""
  return jnp.sum(jnp.asarray(present_T, jnp.float32)) * masked_softmax(draws_T, present_T)


def random_loss_weighting() -> Method:
  def combine(terms: Terms, state, key):
    draws = jax.random.normal(key, terms.present_T.shape, jnp.float32)
    return Update(rlw_weights(draws, terms.present_T)), state

  return Method(no_state, combine)


# ---------------------------------------------------------------- geometric loss strategy

def gls_weights(losses_T, present_T):
  """G / (K L_t) over the K present tasks with L_t > 1e-12, G their geometric mean loss."""
  losses_T = _f32(losses_T)
  use = jnp.asarray(present_T, bool) & (losses_T > GLS_MIN_LOSS)
  k = jnp.sum(use.astype(jnp.float32))
  log_l = jnp.log(jnp.where(use, losses_T, 1.0))
  log_g = jnp.sum(jnp.where(use, log_l, 0.0)) / jnp.maximum(k, 1.0)
  return jnp.where(use, jnp.exp(log_g - log_l) / jnp.maximum(k, 1.0), 0.0)


def geometric_loss_strategy() -> Method:
  def combine(terms: Terms, state, key):
    del key
    return Update(gls_weights(terms.losses_T, terms.present_T)), state

  return Method(no_state, combine, frozenset({LOSSES}))


# ---------------------------------------------------------------- FAMO

def famo_weights(logits_T, losses_T, present_T, min_losses_T=0.0):
  """w_t = z_t / (c D_t), D_t = L_t - m_t + 1e-8, z = softmax(xi) over present tasks,
  c = sum_present z_t / D_t; 0 for absent tasks. The weights sum to 1."""
  present_T = jnp.asarray(present_T, bool)
  z = masked_softmax(logits_T, present_T)
  d = _f32(losses_T) - min_losses_T + FAMO_EPS
  ratio = jnp.where(present_T, z / d, 0.0)
  c = jnp.sum(ratio)
  return ratio / jnp.where(c > 0, c, 1.0)


def famo_logit_grad(logits_T, prev_losses_T, losses_T, mask_T, min_losses_T=0.0):
  """The softmax Jacobian (over the tasks in mask_T) transposed times the decrease of
  the log-losses: g_t = z_t (delta_t - sum_s z_s delta_s); 0 outside mask_T."""
  mask_T = jnp.asarray(mask_T, bool)
  delta = (jnp.log(_f32(prev_losses_T) - min_losses_T + FAMO_EPS)
           - jnp.log(_f32(losses_T) - min_losses_T + FAMO_EPS))
  delta = jnp.where(mask_T, delta, 0.0)
  z = masked_softmax(logits_T, mask_T)
  return jnp.where(mask_T, z * (delta - jnp.sum(z * delta)), 0.0)


def famo(lr: float = 0.025, gamma: float = 0.01) -> Method:
  def init(num_tasks):
    return {"logits": jnp.zeros(num_tasks, jnp.float32), **_adam_state(num_tasks),
            "prev_losses": jnp.zeros(num_tasks, jnp.float32), "prev_present": jnp.zeros(num_tasks, bool)}

  def combine(terms: Terms, state, key):
    del key
    present, losses = terms.present_T, terms.losses_T
    both = present & state["prev_present"]
    grad = famo_logit_grad(state["logits"], state["prev_losses"], losses, both)
    xi, m, v, c = _adam(state["logits"], grad, state["m"], state["v"], state["count"], both, lr, gamma)
    weights = famo_weights(xi, losses, present)
    any_present = jnp.any(present)  # no task present: leave the stored losses as they were
    prev_losses = jnp.where(any_present, jnp.where(present, losses, 0.0), state["prev_losses"])
    prev_present = jnp.where(any_present, present, state["prev_present"])
    return Update(weights), {"logits": xi, "m": m, "v": v, "count": c,
                             "prev_losses": prev_losses, "prev_present": prev_present}

  return Method(init, combine, frozenset({LOSSES}))


__all__ = ["dynamic_weight_averaging", "famo", "geometric_loss_strategy", "random_loss_weighting",
           "uncertainty_weighting", "dwa_weights", "famo_logit_grad", "famo_weights", "gls_weights",
           "masked_softmax", "rlw_weights", "uw_log_var_grad", "uw_weights"]
