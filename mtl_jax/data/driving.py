"""Procedural driving scenes for the multi-task example.

Every image is a small road scene (sky, grass, perspective road with lane
markings) that may contain any subset of four objects, each present
independently:

  * pedestrian    -- thin upright figure: head, torso, arms, two legs;
  * car           -- wide body with wheels and a cabin with windows, 8 colours;
  * stop_sign     -- red octagon with a white rim and white band, on a pole;
  * traffic_light -- dark vertical box with three lamps (one lit) on a pole.

Distractors ("clutter") share low-level features with the real objects: red
blobs that are not octagons, dark boxes on poles without lamps, coloured
rectangles in car colours, trees, bare poles.  Occluders, haze, lighting
changes and pixel noise make the tasks non-trivial.

Pipeline: :func:`sample_scene_params` draws every per-image attribute with a
NumPy ``Generator`` seeded from ``seed`` (cheap, vectorised over images); then
:func:`render_from_params` rasterises the scenes with a ``jax.jit``-compiled,
``vmap``-ped renderer using anti-aliased signed-distance shapes, in fixed-size
chunks (bounded memory).  Pixel noise comes from a counter-based integer hash
of a per-image noise seed, so an image depends only on its own parameters:
results are identical for any batch size / chunking, and bit-identical for the
same seed + config on the same machine.

Labels are exactly the presence flags of the objects drawn
(``params["present"]``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# Bump whenever a change to the renderer changes the images a seed produces.
GENERATOR_VERSION = 2

TASK_NAMES: tuple[str, ...] = ("pedestrian", "car", "stop_sign", "traffic_light")
NUM_TASKS = len(TASK_NAMES)
PED, CAR, STOP, LIGHT = range(NUM_TASKS)

CAR_COLOUR_NAMES: tuple[str, ...] = (
    "red", "blue", "white", "black", "silver", "yellow", "green", "orange")
CAR_COLOURS = np.array([
    [0.80, 0.08, 0.08],   # red (same hue as the stop sign -> confuser)
    [0.10, 0.25, 0.75],
    [0.92, 0.92, 0.90],
    [0.10, 0.10, 0.12],
    [0.62, 0.64, 0.68],
    [0.92, 0.80, 0.10],
    [0.10, 0.50, 0.20],
    [0.95, 0.50, 0.08],
], np.float32)
LAMP_NAMES: tuple[str, ...] = ("red", "amber", "green")
LAMP_COLOURS = np.array([
    [1.00, 0.10, 0.05],
    [1.00, 0.70, 0.05],
    [0.10, 0.95, 0.30],
], np.float32)
STOP_RED = np.array([0.80, 0.06, 0.08], np.float32)
CLUTTER_TYPE_NAMES: tuple[str, ...] = ("blob", "box", "signpost", "tree")

# Colours of distractors drawn from this palette half of the time, so colour
# alone never identifies a class.
_CONFUSER_COLOURS = np.concatenate([
    STOP_RED[None], STOP_RED[None] * 0.9,             # red blobs / signs
    np.array([[0.12, 0.12, 0.13], [0.18, 0.17, 0.15]], np.float32),  # dark boxes
    CAR_COLOURS,
], axis=0)

_SKY_PALETTE = np.array([
    [[0.35, 0.55, 0.90], [0.70, 0.82, 0.95]],   # clear day
    [[0.55, 0.57, 0.62], [0.75, 0.76, 0.78]],   # overcast
    [[0.35, 0.30, 0.55], [0.95, 0.60, 0.35]],   # dusk
], np.float32)
_GROUND_PALETTE = np.array([
    [0.25, 0.55, 0.20],   # grass
    [0.55, 0.50, 0.30],   # dry grass
    [0.55, 0.55, 0.52],   # pavement
], np.float32)

# Object geometry, in units of the object's scale s (fraction of image height).
# (half width, total height) -- used for placement and occluders.
_HALF_WIDTH = np.array([0.16, 0.66, 0.31, 0.16], np.float32)
_HEIGHT = np.array([1.00, 0.60, 1.50, 1.52], np.float32)
_CLASS_SCALE = np.array([1.5, 1.0, 1.0, 1.2], np.float32)
# The largest max_scale at which the tallest object still fits in the frame.
MAX_SCALE = float(0.98 / (_CLASS_SCALE * _HEIGHT).max())


@dataclasses.dataclass(frozen=True)
class SceneConfig:
  """Scene generator settings.  Difficulty knobs are monotone: larger
  ``noise_std``/``clutter``/``occlusion``/``haze``/``lighting`` and smaller
  ``min_scale``/``max_scale`` make the tasks harder."""

  image_size: int = 32
  # Independent per-task presence probabilities, order = TASK_NAMES.
  presence_probs: tuple[float, ...] = (0.4, 0.45, 0.35, 0.35)
  # Std of additive Gaussian pixel noise, as a fraction of the [0, 1] range.
  noise_std: float = 0.05
  # Number of distractor slots per image (each filled with prob. 0.8).
  clutter: int = 4
  # Object scale range (pedestrian height as a fraction of the image height;
  # other classes proportional).  max_scale must be <= MAX_SCALE.
  min_scale: float = 0.3
  max_scale: float = 0.5
  # Probability that each present object is partly (30-60% of its bounding
  # box) covered by an occluder (bush / wall / box).
  occlusion: float = 0.25
  # Max haze: the image is blended towards a grey-ish haze colour with a
  # weight ~ U(0, haze) (lowers contrast).
  haze: float = 0.3
  # Global brightness multiplier ~ U(1 - lighting, 1 + lighting).
  lighting: float = 0.25

  def __post_init__(self):
    if self.image_size < 8:
      raise ValueError("image_size must be >= 8")
    if len(self.presence_probs) != NUM_TASKS:
      raise ValueError(f"presence_probs must have {NUM_TASKS} entries")
    if not all(0.0 <= p <= 1.0 for p in self.presence_probs):
      raise ValueError("presence_probs must be in [0, 1]")
    if not 0.0 < self.min_scale <= self.max_scale <= MAX_SCALE:
      raise ValueError(f"need 0 < min_scale <= max_scale <= {MAX_SCALE:.3f}")
    if self.clutter < 0 or self.noise_std < 0 or self.haze < 0:
      raise ValueError("clutter, noise_std and haze must be >= 0")
    if not 0.0 <= self.occlusion <= 1.0 or not 0.0 <= self.lighting < 1.0:
      raise ValueError("occlusion must be in [0, 1], lighting in [0, 1)")


# --------------------------------------------------------------------------
# Parameter sampling (NumPy, vectorised over images).
# --------------------------------------------------------------------------


def sample_scene_params(num: int, seed: int,
                        config: SceneConfig = SceneConfig(),
                        present: np.ndarray | None = None) -> dict[str, np.ndarray]:
  """Draws all per-image scene attributes.

  Args:
    num: number of scenes.
    seed: RNG seed; the result is a deterministic function of (num, seed,
      config, present).  Presence is drawn first but every other attribute is
      drawn regardless of presence, so overriding ``present`` leaves all other
      attributes unchanged (useful for "with vs without object" comparisons).
    config: scene configuration.
    present: optional bool [num, 4] presence flags overriding the sampled ones.

  Returns:
    dict of arrays with leading dim ``num``.  Useful keys for deriving extra
    tasks (order of the class axis = TASK_NAMES; coordinates are fractions of
    the image, x to the right, y downwards):
      present  bool  [N,4]  objects drawn (== labels)
      obj_x    f32   [N,4]  horizontal centre of each object
      obj_y    f32   [N,4]  ground-contact (bottom) y of each object
      obj_scale f32  [N,4]  object scale s (object height = s * _HEIGHT[c])
      car_colour int32 [N]  index into CAR_COLOURS / CAR_COLOUR_NAMES
      lit_lamp   int32 [N]  traffic light lamp lit: 0 red, 1 amber, 2 green
      occluded  bool [N,4]  whether an occluder is drawn over part of the object's
                            slot (also when the object is absent, as a distractor)
      clutter_active bool [N,K], clutter_type int32 [N,K] (CLUTTER_TYPE_NAMES)
      horizon   f32  [N]    y of the horizon
    (only meaningful where the object is present).
  """
  if num < 0:
    raise ValueError("num must be >= 0")
  rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x5CE9E]))
  n, k = num, config.clutter
  f32 = np.float32
  U = lambda lo, hi, size: rng.uniform(lo, hi, size).astype(f32)

  p = {}
  p["present"] = rng.random((n, NUM_TASKS)) < np.asarray(config.presence_probs)
  # ---- background
  h = U(0.30, 0.50, n)
  p["horizon"] = h
  sky_kind = rng.integers(0, len(_SKY_PALETTE), n)
  p["sky_top"] = np.clip(_SKY_PALETTE[sky_kind, 0] + U(-0.08, 0.08, (n, 3)), 0, 1)
  p["sky_bottom"] = np.clip(_SKY_PALETTE[sky_kind, 1] + U(-0.08, 0.08, (n, 3)), 0, 1)
  ground_kind = rng.integers(0, len(_GROUND_PALETTE), n)
  p["ground"] = np.clip(_GROUND_PALETTE[ground_kind] + U(-0.08, 0.08, (n, 3)), 0, 1)
  grey = U(0.22, 0.50, n)
  p["road"] = np.clip(grey[:, None] + U(-0.03, 0.03, (n, 3)), 0, 1)
  p["road_top_x"] = U(0.30, 0.70, n)
  p["road_bottom_x"] = np.clip(p["road_top_x"] + U(-0.30, 0.30, n), 0.1, 0.9).astype(f32)
  p["road_half_width"] = U(0.30, 0.65, n)
  p["lane_phase"] = U(0.0, 1.0, n)
  lane_yellow = rng.random(n) < 0.3
  p["lane_colour"] = np.where(lane_yellow[:, None], np.array([0.95, 0.80, 0.15], f32),
                              np.array([0.92, 0.92, 0.92], f32)).astype(f32)
  p["lane_visible"] = (rng.random(n) < 0.85).astype(f32)

  # ---- objects
  # Pedestrians and traffic lights are thin: drawn larger so that at 32 px they
  # are a few pixels wide rather than sub-pixel slivers that no model can see.
  scale = U(config.min_scale, config.max_scale, (n, NUM_TASKS)) * _CLASS_SCALE
  p["obj_scale"] = scale
  half_w = scale * _HALF_WIDTH
  p["obj_x"] = U(0.0, 1.0, (n, NUM_TASKS)) * 0.76 + 0.12
  # Bottom y: below the horizon and low enough for the whole object to fit.
  lo = np.maximum(h[:, None] + 0.08, scale * _HEIGHT + 0.02)
  lo = np.minimum(lo, 0.99)
  p["obj_y"] = (lo + rng.random((n, NUM_TASKS)) * (1.0 - lo)).astype(f32)
  del half_w
  # pedestrian
  p["ped_shirt"] = np.where((rng.random(n) < 0.5)[:, None],
                            CAR_COLOURS[rng.integers(0, len(CAR_COLOURS), n)],
                            rng.random((n, 3))).astype(f32)
  p["ped_pants"] = (rng.random((n, 3)) * 0.45).astype(f32)
  skin = U(0.35, 0.95, n)
  p["ped_skin"] = np.stack([skin, skin * 0.78, skin * 0.62], -1).astype(f32)
  p["ped_stride"] = U(0.0, 0.22, n)
  p["ped_arm"] = U(0.0, 0.15, n)
  # car
  p["car_colour"] = rng.integers(0, len(CAR_COLOURS), n).astype(np.int32)
  p["car_rgb"] = np.clip(CAR_COLOURS[p["car_colour"]] + U(-0.06, 0.06, (n, 3)), 0, 1)
  p["car_cabin_shift"] = U(-0.12, 0.12, n)
  p["car_window"] = np.where((rng.random(n) < 0.5)[:, None],
                             np.array([0.15, 0.20, 0.30], f32),
                             np.array([0.55, 0.70, 0.85], f32)).astype(f32)
  # stop sign
  p["stop_rgb"] = np.clip(STOP_RED + U(-0.10, 0.10, (n, 3)), 0, 1)
  # traffic light
  p["lit_lamp"] = rng.integers(0, 3, n).astype(np.int32)
  p["light_box"] = np.repeat(U(0.05, 0.22, n)[:, None], 3, 1).astype(f32)
  p["pole_rgb"] = np.repeat(U(0.35, 0.65, n)[:, None], 3, 1).astype(f32)
  # occluders
  p["occluded"] = rng.random((n, NUM_TASKS)) < config.occlusion
  p["occ_side"] = rng.integers(0, 3, (n, NUM_TASKS)).astype(np.int32)  # left/right/bottom
  p["occ_frac"] = U(0.30, 0.60, (n, NUM_TASKS))
  occ_kind = rng.integers(0, 3, (n, NUM_TASKS))
  occ_cols = np.stack([
      np.broadcast_to(np.array([0.15, 0.45, 0.15], f32), (n, NUM_TASKS, 3)),  # bush
      np.repeat(U(0.3, 0.8, (n, NUM_TASKS))[..., None], 3, -1),              # wall
      rng.random((n, NUM_TASKS, 3)).astype(f32),                               # box
  ], 0)
  p["occ_rgb"] = np.take_along_axis(occ_cols, occ_kind[None, ..., None], 0)[0].astype(f32)

  # ---- clutter (distractors, drawn behind the objects)
  p["clutter_active"] = rng.random((n, k)) < 0.8
  p["clutter_type"] = rng.integers(0, len(CLUTTER_TYPE_NAMES), (n, k)).astype(np.int32)
  p["clutter_x"] = U(0.02, 0.98, (n, k))
  csize = U(config.min_scale * 0.5, config.max_scale * 1.1, (n, k))
  p["clutter_size"] = csize
  p["clutter_y"] = (h[:, None] + 0.02 + rng.random((n, k)) * (1.02 - h[:, None])).astype(f32)
  p["clutter_aspect"] = np.exp(U(-0.9, 0.9, (n, k))).astype(f32)
  p["clutter_head"] = rng.integers(0, 3, (n, k)).astype(np.int32)  # box/circle/diamond
  confuse = rng.random((n, k)) < 0.6
  p["clutter_rgb"] = np.where(
      confuse[..., None],
      _CONFUSER_COLOURS[rng.integers(0, len(_CONFUSER_COLOURS), (n, k))],
      rng.random((n, k, 3))).astype(f32)

  # ---- global photometric
  p["haze"] = U(0.0, 1.0, n) * f32(config.haze)
  p["haze_rgb"] = np.clip(U(0.6, 0.85, n)[:, None] + U(-0.05, 0.05, (n, 3)), 0, 1)
  p["brightness"] = U(1.0 - config.lighting, 1.0 + config.lighting, n)
  p["noise_seed"] = rng.integers(0, 2**32, n, dtype=np.uint32)

  if present is not None:
    present = np.asarray(present, bool)
    if present.shape != (n, NUM_TASKS):
      raise ValueError(f"present must have shape {(n, NUM_TASKS)}, got {present.shape}")
    p["present"] = present.copy()
  return {key: (v.astype(f32) if v.dtype == np.float64 else v) for key, v in p.items()}


# --------------------------------------------------------------------------
# Rendering (JAX).  Shapes are signed distance functions (SDFs) in
# image-fraction units; coverage = clip(0.5 - sdf * S, 0, 1) gives ~1 pixel
# of anti-aliasing.  Arrays are laid out batch-LAST ([S, S, B], B = _SUB
# images side by side) so XLA vectorises across images, and each sub-batch is
# small enough for its intermediates to stay in cache.
# --------------------------------------------------------------------------


def _box(u, v, cx, cy, hw, hh):
  return jnp.maximum(jnp.abs(u - cx) - hw, jnp.abs(v - cy) - hh)


def _rbox(u, v, cx, cy, hw, hh, r):
  """Rounded box (r = min(hw, hh) gives a circle / stadium)."""
  qx = jnp.abs(u - cx) - (hw - r)
  qy = jnp.abs(v - cy) - (hh - r)
  outside = jnp.sqrt(jnp.maximum(qx, 0.0) ** 2 + jnp.maximum(qy, 0.0) ** 2)
  return outside + jnp.minimum(jnp.maximum(qx, qy), 0.0) - r


def _circle(u, v, cx, cy, r):
  return jnp.sqrt((u - cx) ** 2 + (v - cy) ** 2) - r


def _octagon(u, v, cx, cy, r):
  du, dv = jnp.abs(u - cx), jnp.abs(v - cy)
  return jnp.maximum(jnp.maximum(du, dv), (du + dv) * 0.70710678) - r


def _capsule(u, v, x0, y0, x1, y1, r):
  pu, pv, bu, bv = u - x0, v - y0, x1 - x0, y1 - y0
  t = jnp.clip((pu * bu + pv * bv) / (bu * bu + bv * bv + 1e-9), 0.0, 1.0)
  return jnp.sqrt((pu - t * bu) ** 2 + (pv - t * bv) ** 2) - r


def _trapezoid(u, v, cx, y_top, y_bot, hw_top, hw_bot):
  t = jnp.clip((v - y_top) / (y_bot - y_top), 0.0, 1.0)
  hw = hw_top + t * (hw_bot - hw_top)
  return jnp.maximum(jnp.maximum(y_top - v, v - y_bot), jnp.abs(u - cx) - hw)


def _hash32(x):
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x7FEB352D)
  x = x ^ (x >> 15)
  x = x * jnp.uint32(0x846CA68B)
  return x ^ (x >> 16)


def _render_sub(p, config: SceneConfig):
  """Renders one sub-batch.  p: dict of batch-last arrays ([..., B])."""
  S = config.image_size
  res = float(S)
  c = (jnp.arange(S, dtype=jnp.float32) + 0.5) / S
  v = c[:, None, None]          # rows (downwards)
  u = c[None, :, None]          # columns

  def col3(x):                  # [3, B] -> list of 3 broadcastable [B]
    return [x[0], x[1], x[2]]

  def draw(img, sdf, colour, gate=None):
    a = jnp.clip(0.5 - sdf * res, 0.0, 1.0)
    if gate is not None:
      a = a * gate
    return [ch + (cc - ch) * a for ch, cc in zip(img, colour)]

  h = p["horizon"]
  # ---- background: sky gradient, ground, road, lane markings
  t_sky = jnp.clip(v / h, 0.0, 1.0)
  is_sky = v < h
  img = [jnp.where(is_sky, p["sky_top"][i] + (p["sky_bottom"][i] - p["sky_top"][i]) * t_sky,
                   p["ground"][i]) for i in range(3)]
  depth = jnp.clip((v - h) / (1.0 - h), 0.0, 1.0)           # 0 at horizon, 1 at bottom
  road_c = p["road_top_x"] + depth * (p["road_bottom_x"] - p["road_top_x"])
  road_hw = 0.01 + depth * p["road_half_width"]
  du = jnp.abs(u - road_c)
  img = draw(img, jnp.maximum(du - road_hw, h - v), col3(p["road"]))
  # dashed centre line (dash period shrinks towards the horizon)
  z = 1.0 / (depth + 0.08)
  dash = (jnp.mod(z * 0.9 + p["lane_phase"], 1.0) < 0.5).astype(jnp.float32)
  lane_sdf = jnp.maximum(du - (0.004 + 0.025 * depth), h + 0.02 - v)
  img = draw(img, lane_sdf, col3(p["lane_colour"]), dash * p["lane_visible"])
  edge_sdf = jnp.maximum(jnp.abs(du - road_hw * 0.93) - 0.003 - 0.012 * depth, h + 0.02 - v)
  img = draw(img, edge_sdf, [0.85] * 3, p["lane_visible"] * 0.8)

  # ---- clutter (behind objects): optional pole + rounded-box head
  for j in range(config.clutter):
    x, yb, sz = p["clutter_x"][j], p["clutter_y"][j], p["clutter_size"][j]
    asp, typ, head = p["clutter_aspect"][j], p["clutter_type"][j], p["clutter_head"][j]
    col = col3(p["clutter_rgb"][j])
    on = p["clutter_active"][j]
    is_post, is_tree = typ == 2, typ == 3
    r_blob = sz * 0.3
    bw, bh = sz * 0.3 * jnp.sqrt(asp), sz * 0.3 / jnp.sqrt(asp)
    hr = sz * 0.22
    post_hw = jnp.where(head == 0, hr * 0.55, hr)
    post_round = jnp.where(head == 0, 0.0, jnp.where(head == 1, hr, hr * 0.4))
    hw = jnp.select([typ == 0, typ == 1, is_post], [r_blob, bw, post_hw], sz * 0.32)
    hh = jnp.select([typ == 0, typ == 1, is_post], [r_blob, bh, hr], sz * 0.32)
    rr = jnp.select([typ == 0, typ == 1, is_post], [r_blob, 0.0 * sz, post_round], sz * 0.32)
    cy = jnp.select([typ == 0, typ == 1, is_post], [yb - r_blob, yb - bh, yb - sz - hr],
                    yb - sz * 0.85)
    pole_top = jnp.where(is_tree, yb - sz * 0.6, yb - sz)
    pole_hw = jnp.where(is_tree, sz * 0.05, sz * 0.025 + 0.3 / res)
    pole_col = [jnp.where(is_tree, tc, pc) for tc, pc in zip((0.35, 0.22, 0.10), col3(p["pole_rgb"]))]
    head_col = [jnp.where(is_tree, tc + 0.15 * (cc - 0.5) * w, cc)
                for tc, cc, w in zip((0.12, 0.40, 0.12), col, (0.3, 1.0, 0.3))]
    has_pole = on * (is_post | is_tree).astype(jnp.float32)
    img = draw(img, _box(u, v, x, (yb + pole_top) * 0.5, pole_hw, (yb - pole_top) * 0.5),
               pole_col, has_pole)
    img = draw(img, _rbox(u, v, x, cy, hw, hh, rr), head_col, on)

  # ---- objects, fixed painter order: traffic light, stop sign, car, pedestrian
  xs, ys, ss, pres = p["obj_x"], p["obj_y"], p["obj_scale"], p["present"]
  pole_w = lambda s: s * 0.025 + 0.35 / res      # keep poles >= ~0.7 px wide

  def occlude(img, ci):
    s = ss[ci]
    hw, top, bot = _HALF_WIDTH[ci] * s, ys[ci] - _HEIGHT[ci] * s, ys[ci]
    left, right = xs[ci] - hw, xs[ci] + hw
    f, side = p["occ_frac"][ci], p["occ_side"][ci]
    ol = jnp.where(side == 1, right - f * 2 * hw, left - 0.02)
    orr = jnp.where(side == 0, left + f * 2 * hw, right + 0.02)
    ot = jnp.where(side == 2, bot - f * (bot - top), top - 0.02)
    ob = bot + 0.02
    sdf = _box(u, v, (ol + orr) * 0.5, (ot + ob) * 0.5, (orr - ol) * 0.5, (ob - ot) * 0.5) - 0.01
    # Drawn whether or not the object is there: an occluder only where objects are
    # would itself be a shortcut feature for the label.
    return draw(img, sdf, col3(p["occ_rgb"][ci]), p["occluded"][ci])

  # traffic light: pole, dark box, 3 lamps (one SDF for all three; one lit)
  x, y, s, g = xs[LIGHT], ys[LIGHT], ss[LIGHT], pres[LIGHT]
  img = draw(img, _box(u, v, x, y - 0.42 * s, pole_w(s), 0.42 * s), col3(p["pole_rgb"]), g)
  by = y - 1.18 * s
  img = draw(img, _box(u, v, x, by, 0.15 * s, 0.34 * s) - 0.01 * s, col3(p["light_box"]), g)
  step = 0.22 * s
  k = jnp.clip(jnp.round((v - by) / step), -1.0, 1.0)          # nearest lamp: -1, 0, 1
  lit = (k + 1.0) == p["lit_lamp"].astype(jnp.float32)
  lamp_col = [jnp.where(k < 0, LAMP_COLOURS[0, i], jnp.where(k > 0, LAMP_COLOURS[2, i],
                                                                LAMP_COLOURS[1, i]))
              for i in range(3)]
  lamp_col = [jnp.where(lit, cc, cc * 0.25 + 0.05) for cc in lamp_col]
  img = draw(img, _circle(u, v, x, by + k * step, 0.085 * s + 0.15 / res), lamp_col, g)
  img = occlude(img, LIGHT)
  # stop sign: pole, white rim, red octagon, white band
  x, y, s, g = xs[STOP], ys[STOP], ss[STOP], pres[STOP]
  img = draw(img, _box(u, v, x, y - 0.6 * s, pole_w(s), 0.6 * s), col3(p["pole_rgb"]), g)
  r, sy = 0.3 * s, y - 1.2 * s
  white = [0.95] * 3
  img = draw(img, _octagon(u, v, x, sy, r), white, g)
  img = draw(img, _octagon(u, v, x, sy, r * 0.84), col3(p["stop_rgb"]), g)
  img = draw(img, _box(u, v, x, sy, 0.55 * r, 0.11 * r), white, g)
  img = occlude(img, STOP)
  # car: cabin, body, two windows, two wheels
  x, y, s, g = xs[CAR], ys[CAR], ss[CAR], pres[CAR]
  cx = x + p["car_cabin_shift"] * s
  car = col3(p["car_rgb"])
  img = draw(img, _trapezoid(u, v, cx, y - 0.58 * s, y - 0.33 * s, 0.30 * s, 0.46 * s), car, g)
  img = draw(img, _box(u, v, x, y - 0.23 * s, 0.66 * s, 0.13 * s) - 0.03 * s, car, g)
  win = col3(p["car_window"])
  wdx = jnp.abs(u - cx) - 0.19 * s        # both windows (mirror-symmetric) in one SDF
  img = draw(img, _trapezoid(wdx, v, 0.0, y - 0.53 * s, y - 0.37 * s, 0.11 * s, 0.16 * s), win, g)
  wx = jnp.abs(u - x)                     # both wheels in one SDF
  img = draw(img, _circle(wx, v, 0.40 * s, y - 0.12 * s, 0.12 * s), [0.06, 0.06, 0.07], g)
  img = occlude(img, CAR)
  # pedestrian: legs, torso, arms, head
  x, y, s, g = xs[PED], ys[PED], ss[PED], pres[PED]
  st, arm = p["ped_stride"] * s, p["ped_arm"] * s
  leg_r = s * 0.045 + 0.25 / res
  ax = jnp.abs(u - x)                     # legs and arms are mirror-symmetric
  img = draw(img, _capsule(ax, v, 0.03 * s, y - 0.45 * s, st, y - leg_r, leg_r),
             col3(p["ped_pants"]), g)
  shirt = col3(p["ped_shirt"])
  arm_r = s * 0.03 + 0.2 / res
  torso = _box(u, v, x, y - 0.61 * s, 0.075 * s, 0.17 * s) - 0.02 * s
  arms = _capsule(ax, v, 0.08 * s, y - 0.74 * s, 0.10 * s + arm, y - 0.47 * s, arm_r)
  img = draw(img, jnp.minimum(torso, arms), shirt, g)
  img = draw(img, _circle(u, v, x, y - 0.89 * s, 0.105 * s), col3(p["ped_skin"]), g)
  img = occlude(img, PED)

  # ---- photometric: haze, brightness, noise
  hz, br = p["haze"], p["brightness"]
  img = [(ch * (1.0 - hz) + hz * hc) * br for ch, hc in zip(img, col3(p["haze_rgb"]))]
  if config.noise_std > 0:
    key = _hash32(p["noise_seed"] ^ jnp.uint32(0x9E3779B9))
    pix = (jnp.arange(S, dtype=jnp.uint32)[:, None, None] * jnp.uint32(S)
           + jnp.arange(S, dtype=jnp.uint32)[None, :, None])
    out = []
    for i, ch in enumerate(img):
      idx = (pix * jnp.uint32(3) + jnp.uint32(i)) * jnp.uint32(2)
      h1 = _hash32(idx ^ key)
      h2 = _hash32((idx + jnp.uint32(1)) ^ key)
      u1 = ((h1 >> 8).astype(jnp.float32) + 0.5) * (1.0 / 16777216.0)
      u2 = (h2 >> 8).astype(jnp.float32) * (1.0 / 16777216.0)
      out.append(ch + config.noise_std * jnp.sqrt(-2.0 * jnp.log(u1)) * jnp.cos(6.2831853 * u2))
    img = out
  img = jnp.stack(img, 0)                                     # [3, S, S, B]
  img = jnp.round(jnp.clip(img, 0.0, 1.0) * 255.0).astype(jnp.uint8)
  return img                                                   # [3, S, S, B]


# Params consumed by the renderer (others are informational).
_RENDER_KEYS = (
    "present", "horizon", "sky_top", "sky_bottom", "ground", "road", "road_top_x",
    "road_bottom_x", "road_half_width", "lane_phase", "lane_colour", "lane_visible",
    "obj_scale", "obj_x", "obj_y", "ped_shirt", "ped_pants", "ped_skin", "ped_stride",
    "ped_arm", "car_rgb", "car_cabin_shift", "car_window", "stop_rgb", "lit_lamp",
    "light_box", "pole_rgb", "occluded", "occ_side", "occ_frac", "occ_rgb",
    "clutter_active", "clutter_type", "clutter_x", "clutter_size", "clutter_y",
    "clutter_aspect", "clutter_head", "clutter_rgb", "haze", "haze_rgb",
    "brightness", "noise_seed")
_FLOAT_KEYS = ("present", "occluded", "clutter_active")   # bool -> float32 gates

_SUB = 256      # images per jitted call, side by side in the vector lanes

# The renderer compiles at XLA's default optimisation level (3) whatever XLA_FLAGS say,
# so that the same seed gives the same images: at level 0, 6 of the 786k pixel values
# of 256 32x32 scenes came out 1 apart (tests/test_driving.py). It also keeps rendering
# fast where the flags lower the level for everything else (the test suite): at level
# 0 it is ~180x slower (2.4 s against 13 ms for 256 scenes).
RENDER_XLA_OPTIONS = {"xla_backend_optimization_level": 3}


@functools.partial(jax.jit, static_argnums=1, compiler_options=RENDER_XLA_OPTIONS)
def _render_call(params, config: SceneConfig):
  """params: dict of batch-last [..., _SUB] arrays -> uint8 [3, S, S, _SUB]."""
  return _render_sub(params, config)


def render_from_params(params: dict[str, np.ndarray],
                       config: SceneConfig = SceneConfig()) -> np.ndarray:
  """Renders scenes from :func:`sample_scene_params` output -> uint8 [N,S,S,3].

  Renders in jitted calls of ``_SUB`` images (tail edge-padded; one compiled
  program per config), so memory stays bounded for any N and each image
  depends only on its own parameters.  (Python-level loop: on XLA:CPU a
  ``lax.map`` over sub-batches was ~10x slower.)
  """
  n = len(params["present"])
  S = config.image_size
  out = np.empty((n, S, S, 3), np.uint8)
  if n == 0:
    return out
  sub = {}
  for k in _RENDER_KEYS:
    a = np.asarray(params[k])
    a = a.astype(np.float32) if k in _FLOAT_KEYS else a
    npad = -n % _SUB
    if npad:
      a = np.concatenate([a, np.repeat(a[-1:], npad, 0)], 0)
    sub[k] = np.ascontiguousarray(np.moveaxis(a, 0, -1))        # batch-last
  pending = []

  def flush():
    s0, r = pending.pop(0)
    s1 = min(s0 + _SUB, n)
    out[s0:s1] = np.asarray(r).transpose(3, 1, 2, 0)[: s1 - s0]

  for start in range(0, n, _SUB):
    batch = {k: a[..., start:start + _SUB] for k, a in sub.items()}
    pending.append((start, _render_call(batch, config)))
    if len(pending) > 4:                 # keep a few calls in flight
      flush()
  while pending:
    flush()
  return out


def render_scenes(num: int, seed: int,
                  config: SceneConfig = SceneConfig()) -> tuple[np.ndarray, np.ndarray]:
  """Returns images uint8 [num, S, S, 3] and labels int8 [num, 4] in {0,1}."""
  params = sample_scene_params(num, seed, config)
  return render_from_params(params, config), params["present"].astype(np.int8)


def render_scenes_with_params(num: int, seed: int, config: SceneConfig = SceneConfig()
                              ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
  """Like :func:`render_scenes` but also returns the scene parameters."""
  params = sample_scene_params(num, seed, config)
  return render_from_params(params, config), params["present"].astype(np.int8), params


def render_single(present: Sequence[bool], seed: int,
                  config: SceneConfig = SceneConfig()) -> np.ndarray:
  """One image [S,S,3] uint8 with exactly the given objects present."""
  present = np.asarray(present, bool).reshape(1, NUM_TASKS)
  params = sample_scene_params(1, seed, config, present=present)
  return render_from_params(params, config)[0]
