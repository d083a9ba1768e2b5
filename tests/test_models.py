import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtl_jax.errors import InputError
from mtl_jax.models import EncoderSpec, Model, _stride2_patches, joint_model, param_count, separate_models
from mtl_jax.train import INIT_STREAM, TrainConfig, initial_params, seed_keys, train

T = 3


def test_patch_convolution_equals_lax_conv():
  rng = np.random.default_rng(0)
  for size in (8, 9):  # even and odd sides pad differently under 'SAME'
    x = jnp.asarray(rng.normal(size=(2, size, size, 3)), jnp.float32)
    kernel_HxWxIxO = jnp.asarray(rng.normal(size=(3, 3, 3, 5)), jnp.float32)
    expected = jax.lax.conv_general_dilated(x, kernel_HxWxIxO, (2, 2), "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))
    patches = _stride2_patches(x)
    got = patches @ kernel_HxWxIxO.reshape(-1, 5)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind,width,depth,shape,expected_joint,expected_single", [
    # mlp: 12 inputs -> 5 -> 5 -> heads
    ("mlp", 5, 2, (2, 2, 3), (12 * 5 + 5) + (5 * 5 + 5) + (5 * T + T), (12 * 5 + 5) + (5 * 5 + 5) + 6),
    # cnn on 8x8x3: conv 27->4, conv 36->4, features 2*2*4 = 16
    ("cnn", 4, 2, (8, 8, 3), (27 * 4 + 4) + (36 * 4 + 4) + (16 * T + T), (27 * 4 + 4) + (36 * 4 + 4) + 17),
])
def test_parameter_counts(kind, width, depth, shape, expected_joint, expected_single):
  spec = EncoderSpec(kind, width, depth)
  joint = joint_model(spec, T, shape)
  separate = separate_models(spec, T, shape)
  key = jax.random.PRNGKey(0)
  assert param_count(jax.eval_shape(joint.init, key)) == expected_joint
  assert param_count(jax.eval_shape(separate.init, key)) == T * expected_single
  x = jnp.zeros((4, *shape), jnp.uint8)
  for model in (joint, separate):  # compiled: op by op takes seconds
    assert jax.jit(model.apply)(jax.jit(model.init)(key), x).shape == (4, T)


def _task_network(spec, j, shape) -> Model:
  """Task j's network alone, initialised exactly as `separate_models` initialises it."""
  single = joint_model(spec, 1, shape)
  return Model(lambda key: single.init(jax.random.split(key, T)[j]), single.apply)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_separate_networks_equal_independent_training(kind):
  """Each as the default rule runs it (on a CPU: MLPs in turn, CNNs vmapped)."""
  rng = np.random.default_rng(0)
  shape = (8, 8, 3)
  x = rng.integers(0, 256, size=(48, *shape), dtype=np.uint8)
  y = rng.integers(-1, 2, size=(48, T)).astype(np.int8)
  spec, config, seeds = EncoderSpec(kind, 6, 2), TrainConfig(1e-2, 16, 3), [0, 7]

  together = train(separate_models(spec, T, shape), x, y, seeds, config)
  for j in range(T):
    alone = train(_task_network(spec, j, shape), x, y[:, j:j + 1], seeds, config)
    task_j = jax.tree.map(lambda leaf: leaf[:, j], together.params)
    for a, b in zip(jax.tree.leaves(task_j), jax.tree.leaves(alone.params)):
      np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
  # Training moved the parameters, so the equality above is not of two initialisations.
  initial = initial_params(separate_models(spec, T, shape), seeds)
  moved = [np.abs(a - b).max() for a, b in zip(jax.tree.leaves(together.params), jax.tree.leaves(initial))]
  assert max(moved) > 1e-3


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_separate_networks_in_turn_equal_vmapped(kind):
  """The same logits and gradients (float32 tolerance), and the same training losses."""
  rng = np.random.default_rng(1)
  shape = (8, 8, 3)
  x = rng.integers(0, 256, size=(32, *shape), dtype=np.uint8)
  y = rng.integers(-1, 2, size=(32, T)).astype(np.int8)
  spec = EncoderSpec(kind, 6, 2)
  vmapped, in_turn = (separate_models(spec, T, shape, strategy=s) for s in ("vmap", "in_turn"))
  params = jax.jit(vmapped.init)(jax.random.PRNGKey(3))  # compiled: op by op takes seconds
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(jax.jit(in_turn.init)(jax.random.PRNGKey(3)))):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_allclose(jax.jit(in_turn.apply)(params, x), jax.jit(vmapped.apply)(params, x),
                             rtol=1e-5, atol=1e-6)
  # A loss that weighs each task's logits differently, so every network gets its own gradient.
  loss = lambda model: lambda p: (model.apply(p, x) ** 2 * jnp.arange(1.0, T + 1)).mean()
  gradient = lambda model: jax.jit(jax.grad(loss(model)))(params)
  for a, b in zip(jax.tree.leaves(gradient(in_turn)), jax.tree.leaves(gradient(vmapped))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  config = TrainConfig(1e-2, 16, 2)
  losses = [train(model, x, y, [0], config).loss_ExS for model in (vmapped, in_turn)]
  np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)


def test_nets_vmapped_unless_on_a_cpu(monkeypatch):
  import mtl_jax.models as models
  for backend in ("gpu", "tpu"):
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    assert all(models.separate_strategy_default(kind, t) == "vmap" for kind in models.ENCODERS for t in (1, 40))
  monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
  for kind in models.ENCODERS:
    most = models.VMAPPED_ON_CPU_UP_TO[kind]
    assert models.separate_strategy_default(kind, most + 1) == "one_at_a_time"
    assert most == 0 or models.separate_strategy_default(kind, most) == "vmap"
  # An explicit choice wins over the rule; only one at a time lets train split the epoch.
  x = jnp.zeros((2, 8, 8, 3), jnp.uint8)
  built = {s: separate_models(EncoderSpec("mlp", 4, 1), T, (8, 8, 3), strategy=s) for s in models.SEPARATE_STRATEGIES}
  jaxpr = lambda s: str(jax.make_jaxpr(built[s].apply)(built["vmap"].init(jax.random.PRNGKey(0)), x))
  assert "scan" in jaxpr("in_turn") and "scan" in jaxpr("one_at_a_time") and "scan" not in jaxpr("vmap")
  assert [built[s].network is not None for s in models.SEPARATE_STRATEGIES] == [False, False, True]
  with pytest.raises(ValueError, match="unknown strategy"):
    separate_models(EncoderSpec("mlp", 4, 1), T, (8, 8, 3), strategy="parallel")


@pytest.mark.parametrize("kind,width,depth", [("rnn", 4, 1), ("mlp", 0, 1), ("cnn", 4, 0)])
def test_bad_encoder_specs(kind, width, depth):
  with pytest.raises(InputError):
    EncoderSpec(kind, width, depth)


def test_bfloat16_computes_in_bfloat16_but_keeps_float32_parameters():
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (64, 8, 8, 3), dtype=np.uint8)
  y = rng.integers(0, 2, (64, 2)).astype(np.int8)
  f32 = joint_model(EncoderSpec("cnn", 8, 2), 2, (8, 8, 3))
  bf16 = joint_model(EncoderSpec("cnn", 8, 2, "bfloat16"), 2, (8, 8, 3))
  params = jax.jit(f32.init)(jax.random.PRNGKey(0))
  full, mixed = jax.jit(f32.apply)(params, x), jax.jit(bf16.apply)(params, x)
  assert mixed.dtype == jnp.float32
  np.testing.assert_allclose(mixed, full, atol=0.05, rtol=0.05)  # bf16 has 8 bits of mantissa
  assert not np.array_equal(mixed, full)
  result = train(bf16, x, y, [0], TrainConfig(1e-2, 16, 5))
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(result.params))
  assert result.loss_ExS[-1, 0] < result.loss_ExS[0, 0]


@pytest.mark.parametrize("kind,scaled", [("mlp", lambda x: x / 127.5 - 1.0), ("cnn", lambda x: x / 255.0)])
def test_pixels_are_scaled_per_encoder(kind, scaled):
  """uint8 images are scaled inside the model: centred to [-1, 1] for the MLP (whose
  first-layer units otherwise die, benchmarks/mlp_on_images.py), [0, 1] for the CNN."""
  model = joint_model(EncoderSpec(kind, 4, 2), T, (8, 8, 3))
  params = model.init(jax.random.PRNGKey(0))
  x = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
  np.testing.assert_allclose(model.apply(params, jnp.asarray(x)),
                             model.apply(params, jnp.asarray(scaled(x.astype(np.float32)))), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", ["hps", "separate"])
def test_initial_parameters_are_the_models_init_compiled_quickly_below_the_size_limit(arch, monkeypatch):
  """Below QUICK_INIT_MAX_VALUES the initialisation compiles at XLA's level 0: the values
  of the model's own init to float32 rounding; above it, bit for bit."""
  model = (joint_model if arch == "hps" else separate_models)(EncoderSpec("cnn", 4, 2), T, (8, 8, 3))
  reference = jax.vmap(lambda k: model.init(jax.random.fold_in(k, INIT_STREAM)))(seed_keys([0, 5]))
  for a, b in zip(jax.tree.leaves(initial_params(model, [0, 5])), jax.tree.leaves(reference)):
    np.testing.assert_array_almost_equal_nulp(np.asarray(a), np.asarray(b), nulp=4)
  monkeypatch.setattr(importlib.import_module("mtl_jax.train"), "QUICK_INIT_MAX_VALUES", 0)
  jax.tree.map(np.testing.assert_array_equal, initial_params(model, [0, 5]), reference)
