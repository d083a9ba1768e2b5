"""The soft-sharing architectures (mtl_jax/architectures/): each reduces exactly, in
logits and in gradients, to hard sharing or to separate networks where its paper says
it does; each is a well-formed Model (shapes, masking, determinism, sizes); each trains
with a gradient-combination method; and --arch with its options works end to end."""
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from entry_points import assert_one_line_error, launch, launch_in_process

from mtl_jax.architectures.cgc import cgc, ple
from mtl_jax.architectures.cross_stitch import cross_stitch
from mtl_jax.architectures.dselect_k import dselect_k
from mtl_jax.architectures.mmoe import mmoe
from mtl_jax.architectures.mtan import mtan
from mtl_jax.checkpoints import CheckpointSettings, EpochCheckpoints
from mtl_jax.errors import InputError
from mtl_jax.losses import masked_logistic_loss
from mtl_jax.models import ARCH_OPTIONS, MODELS, EncoderSpec, architecture_options, build_model, param_count
from mtl_jax.train import TrainConfig, initial_params, train

T, B = 3, 6
SHAPES = {"mlp": (5,), "cnn": (8, 8, 3)}
SPEC = EncoderSpec("cnn", 4, 2)  # of the exact reductions
ARCHITECTURES = [name for name in MODELS if name not in ("hps", "separate")]


def _batch(kind, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.integers(0, 256, (B, *SHAPES[kind]), dtype=np.uint8) if kind == "cnn" else \
      rng.normal(size=(B, *SHAPES[kind])).astype(np.float32)
  return x, rng.integers(0, 2, (B, T)).astype(np.int8)


def _random_params(model, seed=0):
  """Parameters of the model's shapes, drawn without compiling its init."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0))
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, 0.4, s.shape), jnp.float32), shapes)


def _logits_and_grads(model, params, x, y):
  loss = lambda p: masked_logistic_loss(model.apply(p, x), y)
  return jax.jit(lambda p: (model.apply(p, x), jax.grad(loss)(p)))(params)


@functools.lru_cache(maxsize=None)
def _reference(arch):
  """Hard sharing's or separate networks' parameters, logits and gradients on the CNN batch."""
  model = build_model(arch, SPEC, T, SHAPES["cnn"])
  x, y = _batch("cnn")
  params = _random_params(model, 1)
  return x, y, params, *_logits_and_grads(model, params, x, y)


def _close(a, b):
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    assert np.all(np.isfinite(u))
    np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)


def _zero(tree):
  assert all(not np.any(leaf) for leaf in jax.tree.leaves(tree))


def _one_expert(encoder_params):
  """hps's encoder as a stack of one expert."""
  return jax.tree.map(lambda p: p[None], encoder_params)


def _heads_from_separate(heads):
  """Separate networks' heads (kernel [T, F, 1], bias [T, 1]) in the [F, T] layout."""
  return {"kernel": heads["kernel"][..., 0].T, "bias": heads["bias"][:, 0]}


# --- Exact reductions (CNN encoder, random parameters) ------------------------------

def test_mmoe_with_one_expert_is_hard_sharing():
  x, y, hps, logits, grads = _reference("hps")
  model = mmoe(SPEC, T, SHAPES["cnn"], experts=1)
  params = {**_random_params(model), "experts": _one_expert(hps["encoder"]), "heads": hps["heads"]}
  got_logits, got = _logits_and_grads(model, params, x, y)
  _close(got_logits, logits)
  _close(jax.tree.map(lambda g: g[0], got["experts"]), grads["encoder"])
  _close(got["heads"], grads["heads"])
  _zero(got["gates"])  # a softmax over one expert is 1 whatever the gate


def test_cross_stitch_with_identity_alphas_is_separate_networks():
  x, y, separate, logits, grads = _reference("separate")
  model = cross_stitch(SPEC, T, SHAPES["cnn"])
  params = {"columns": separate["encoder"], "alphas": jnp.broadcast_to(jnp.eye(T), (SPEC.depth, T, T)),
            "heads": _heads_from_separate(separate["heads"])}
  got_logits, got = _logits_and_grads(model, params, x, y)
  _close(got_logits, logits)
  _close(got["columns"], grads["encoder"])
  _close(got["heads"], _heads_from_separate(grads["heads"]))


def test_cgc_without_shared_experts_is_separate_networks():
  x, y, separate, logits, grads = _reference("separate")
  model = cgc(SPEC, T, SHAPES["cnn"], shared_experts=0, task_experts=1)
  assert model.shared == ()  # the T branches never meet
  params = {**_random_params(model), "task_experts": jax.tree.map(lambda p: p[:, None], separate["encoder"]),
            "heads": _heads_from_separate(separate["heads"])}
  got_logits, got = _logits_and_grads(model, params, x, y)
  _close(got_logits, logits)
  _close(jax.tree.map(lambda g: g[:, 0], got["task_experts"]), grads["encoder"])
  _close(got["heads"], _heads_from_separate(grads["heads"]))
  _zero(got["task_gates"])


def test_cgc_with_one_shared_expert_only_is_hard_sharing():
  x, y, hps, logits, grads = _reference("hps")
  model = cgc(SPEC, T, SHAPES["cnn"], shared_experts=1, task_experts=0)
  params = {**_random_params(model), "shared_experts": _one_expert(hps["encoder"]), "heads": hps["heads"]}
  got_logits, got = _logits_and_grads(model, params, x, y)
  _close(got_logits, logits)
  _close(jax.tree.map(lambda g: g[0], got["shared_experts"]), grads["encoder"])
  _close(got["heads"], grads["heads"])
  _zero(got["task_gates"])


def test_ple_with_one_shared_expert_only_is_hard_sharing():
  """Two levels of one block each: hps's two blocks split between them, every gate
  over one expert."""
  x, y, hps, logits, grads = _reference("hps")
  model = ple(SPEC, T, SHAPES["cnn"], shared_experts=1, task_experts=0, levels=2)
  params = _random_params(model)
  level0 = {**params["extraction"]["level0"], "shared_experts": _one_expert({"conv0": hps["encoder"]["conv0"]})}
  params = {**params, "extraction": {"level0": level0}, "heads": hps["heads"],
            "shared_experts": _one_expert({"conv0": hps["encoder"]["conv1"]})}
  got_logits, got = _logits_and_grads(model, params, x, y)
  _close(got_logits, logits)
  _close(got["extraction"]["level0"]["shared_experts"], _one_expert({"conv0": grads["encoder"]["conv0"]}))
  _close(got["shared_experts"], _one_expert({"conv0": grads["encoder"]["conv1"]}))
  _close(got["heads"], grads["heads"])


def test_mtan_with_masks_of_ones_is_hard_sharing():
  x, y, hps, logits, grads = _reference("hps")
  model = mtan(SPEC, T, SHAPES["cnn"])
  params = {**_random_params(model), "trunk": hps["encoder"], "heads": hps["heads"]}
  # sigmoid(30) is 1 in float32 and its derivative 0: every mask is exactly 1.
  ones = lambda mask: {"kernel": jnp.zeros_like(mask["kernel"]), "bias": jnp.full_like(mask["bias"], 30.0)}
  params["attention"] = {block: {**module, "mask": ones(module["mask"])}
                         for block, module in params["attention"].items()}
  got_logits, got = _logits_and_grads(model, params, x, y)
  _close(got_logits, logits)
  _close(got["trunk"], grads["encoder"])
  _close(got["heads"], grads["heads"])
  _zero((got["attention"], got["attention_blocks"]))


def test_dselect_k_selecting_one_expert_per_task_is_that_expert():
  """Tasks 0, 1, 2 select experts 2, 0, 3 of 4 (both selectors of each task, binary
  logits beyond the smooth-step's +-gamma/2): task t's network is its expert alone,
  so separate network t where that expert holds separate network t's encoder."""
  x, y, separate, logits, grads = _reference("separate")
  chosen, gamma = np.array([2, 0, 3]), 1.0
  model = dselect_k(SPEC, T, SHAPES["cnn"], experts=4, k=2, gamma=gamma)
  params = _random_params(model)
  experts = jax.tree.map(lambda e, s: e.at[chosen].set(s), params["experts"], separate["encoder"])
  bits_Tx2 = np.array([[(e >> 1) & 1, e & 1] for e in chosen])
  z = jnp.broadcast_to(jnp.where(bits_Tx2[:, None, :] == 1, gamma, -gamma), (T, 2, 2))
  params = {"experts": experts, "selectors": {**params["selectors"], "z": z},
            "heads": _heads_from_separate(separate["heads"])}
  got_logits, got = _logits_and_grads(model, params, x, y)
  _close(got_logits, logits)
  _close(jax.tree.map(lambda g: g[chosen], got["experts"]), grads["encoder"])
  _zero(jax.tree.map(lambda g: g[1], got["experts"]))  # no task selects expert 1
  _zero(got["selectors"]["z"])  # the smooth-step is flat beyond +-gamma/2
  # Both selectors pick the same expert: their softmax weights change nothing (up to rounding).
  np.testing.assert_allclose(got["selectors"]["w"], 0.0, atol=1e-7)
  _close(got["heads"], _heads_from_separate(grads["heads"]))


# --- Every architecture is a well-formed Model --------------------------------------

@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("kind,dtype", [("mlp", "float32"), ("cnn", "float32"), ("cnn", "bfloat16")])
def test_logits_shape_and_metadata(arch, kind, dtype):
  """Traced, not compiled: jax.eval_shape runs the shapes of init and apply through."""
  model = build_model(arch, EncoderSpec(kind, 4, 2, dtype), T, SHAPES[kind])
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0))
  x, _ = _batch(kind)
  logits = jax.eval_shape(model.apply, params, x)
  assert logits.shape == (B, T) and logits.dtype == jnp.float32
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))  # bfloat16 computes only
  assert model.shared and set(model.shared) < set(params) and "heads" not in model.shared
  assert model.encode is None and not model.per_task_params  # no single shared representation


def _stage(in_dim, width, depth):  # an MLP encoder's parameter count
  return (in_dim * width + width) + (depth - 1) * (width * width + width)


# MLP on 4 inputs, width 3, depth 2, T = 3 tasks: heads 3 * 3 + 3 = 12, an encoder 27.
EXPECTED_COUNTS = {
    "mmoe": 4 * _stage(4, 3, 2) + T * (4 * 4 + 4) + 12,  # 4 experts, T gates over 4
    "cgc": (1 + T) * _stage(4, 3, 2) + T * (4 * 2 + 2) + 12,  # 1 shared + T own, T gates over 2
    # level 0 (one block, 4 -> 3): 1 + T experts, T gates over 2, a shared gate over
    # 1 + T; level 1 (one block, 3 -> 3): 1 + T experts, T gates over 2
    "ple": (1 + T) * 15 + T * (4 * 2 + 2) + (4 * (1 + T) + 1 + T) + (1 + T) * 12 + T * (3 * 2 + 2) + 12,
    "cross_stitch": T * _stage(4, 3, 2) + 2 * T * T + 12,  # T columns, an alpha [T, T] per block
    # trunk; per task, attention at block 0 (3 -> 3 -> 3) and 1 (6 -> 3 -> 3); f_1 (3 -> 3)
    "mtan": _stage(4, 3, 2) + T * (12 + 12) + T * (21 + 12) + 12 + 12,
    "dselect_k": 4 * _stage(4, 3, 2) + T * (2 * 2 + 2) + 12,  # z [T, k, log2 E], w [T, k]
}


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_parameter_count(arch):
  model = build_model(arch, EncoderSpec("mlp", 3, 2), T, (4,))
  assert param_count(jax.eval_shape(model.init, jax.random.PRNGKey(0))) == EXPECTED_COUNTS[arch]


def test_every_option_is_documented_and_checked():
  for arch in MODELS:
    for key, default in architecture_options(arch).items():
      assert isinstance(default, (int, float)) and ARCH_OPTIONS[key].valid(default), (arch, key)
  spec = EncoderSpec("mlp", 3, 2)
  for arch, options, message in [
      ("mmoe", (("experts", 0),), "--mmoe_experts"),
      ("mmoe", (("experts", 2.5),), "whole number"),
      ("mmoe", (("levels", 2),), "has no option 'levels'"),
      ("ple", (("levels", 3),), "--ple_levels=3"),
      ("cgc", (("shared_experts", 0), ("task_experts", 0)), "at least one expert"),
      ("dselect_k", (("experts", 3),), "power of 2"),
      ("cross_stitch", (("alpha_self", 1.5),), r"in \[0, 1\]")]:
    with pytest.raises(InputError, match=message):
      build_model(arch, spec, T, (4,), options)
  # Options may arrive as floats (JSON); integer ones reach the builder as ints.
  model = build_model("mmoe", spec, T, (4,), (("experts", 2.0),))
  assert jax.eval_shape(model.init, jax.random.PRNGKey(0))["gates"]["kernel"].shape == (T, 4, 2)


# --- Training ------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_trains_with_a_gradient_combination_method(arch):
  """Two seeds in one program, micro-batches of 4, MGDA on the per-task gradients of
  the shared parameters (MLP encoder, the architecture's defaults). Task 1 has no
  label: its head never moves."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(32, 4)).astype(np.float32)
  y = rng.integers(0, 2, (32, T)).astype(np.int8)
  y[:, 1] = -1
  model = build_model(arch, EncoderSpec("mlp", 3, 2), T, (4,))
  result = train(model, x, y, [0, 1], TrainConfig(1e-2, 16, 1, method="mgda"), micro_batch=4)
  assert result.loss_ExS.shape == (1, 2) and np.all(np.isfinite(result.loss_ExS))
  initial = initial_params(model, [0, 1])
  _close(initial_params(model, [0, 1]), initial)  # deterministic, and two seeds start apart
  assert not np.array_equal(initial["heads"]["kernel"][0], initial["heads"]["kernel"][1])
  moved = lambda key: max(np.abs(a - b).max() for a, b in zip(jax.tree.leaves(result.params[key]),
                                                               jax.tree.leaves(initial[key])))
  for key in model.shared:  # MGDA's combined update reached every shared key
    assert moved(key) > 1e-4, key
  heads, initial_heads = result.params["heads"], initial["heads"]
  np.testing.assert_array_equal(heads["kernel"][..., 1], initial_heads["kernel"][..., 1])
  np.testing.assert_array_equal(heads["bias"][:, 1], initial_heads["bias"][:, 1])
  assert np.abs(heads["kernel"][..., 0] - initial_heads["kernel"][..., 0]).max() > 1e-4


def test_parameters_survive_a_checkpoint(tmp_path):
  """Nested parameter pytrees (PLE's levels, MTAN's blocks) round-trip through orbax,
  as a preempted run's checkpoint holds them."""
  for arch in ARCHITECTURES:
    params = _random_params(build_model(arch, EncoderSpec("mlp", 3, 2), T, (4,)))
    checkpoints = EpochCheckpoints(CheckpointSettings(str(tmp_path / arch), every=1, resume=False))
    checkpoints.save(1, params)
    epoch, restored = checkpoints.restore(params)
    checkpoints.close(finished=True)
    assert epoch == 1
    assert jax.tree.structure(restored) == jax.tree.structure(params)
    _close(restored, params)


def test_launch_with_an_architecture_and_its_option(tmp_path):
  out = tmp_path / "mmoe"
  result = launch("--arch=mmoe", "--mmoe_experts=2", "--dataset=related", "--encoder=mlp", "--width=3",
                  "--depth=1", "--num_train=32", "--num_val=16", "--num_test=16", "--epochs=1", "--seeds=1",
                  "--batch_size=16", f"--out_dir={out}")
  assert result.returncode == 0, result.stderr
  joint = [r for r in map(json.loads, open(out / "results.jsonl")) if r["config"]["arm"] == "joint"]
  assert len(joint) == 1 and joint[0]["config"]["arch"] == "mmoe"
  assert joint[0]["config"]["arch_options"] == [["experts", 2]]
  # 40 features; 2 experts of one 3-unit layer, 4 gates over 2 experts, 4 heads
  assert joint[0]["param_count"] == 2 * (40 * 3 + 3) + 4 * (40 * 2 + 2) + (3 * 4 + 4)


@pytest.mark.parametrize("flags,expected", [
    (["--arch=ple", "--depth=1"], "--ple_levels=2 levels"),
    (["--arch=dselect_k", "--dselect_k_experts=3"], "power of 2"),
    (["--mmoe_experts=0"], "--mmoe_experts must be at least 1"),
    (["--arch=mmoe", "--method=mgda_ub"], "--arch=mmoe does not have"),
    (["--arch=cgc", "--cgc_shared_experts=0", "--method=pcgrad"], "shares none")])
def test_options_that_cannot_work_stop_the_launch(tmp_path, flags, expected):
  out = tmp_path / "never"
  assert_one_line_error(launch_in_process(*flags, f"--out_dir={out}"), expected, out)
