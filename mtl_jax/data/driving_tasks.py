"""More yes/no tasks on the same driving scenes, read off the scene attributes.

Besides the four presence tasks (is there a pedestrian, car, stop sign, traffic
light?) a scene answers questions about where its objects are, how large, whether
something hides them, what colour the car is and which lamp is lit, plus questions
about the whole scene. All 34 share the low-level features of the images, which is
what the data_amount and transfer_vs_mtl experiments need many tasks for.

A task about one object class is a function of that class's attributes only, and
classes are drawn independently. So `auxiliary_tasks(target)` (every task not about
the target's class) carries no information about the target's labels: any help an
auxiliary task gives comes from shared features, not from a leaked label.
"""
from typing import Callable, Sequence

import numpy as np

from mtl_jax.data import driving
from mtl_jax.errors import InputError

TaskFn = Callable[[dict, driving.SceneConfig], np.ndarray]


def _class_tasks(c: int, name: str) -> dict[str, TaskFn]:
  present = lambda p, _: p["present"][:, c]
  return {
      name: present,
      f"{name}_left": lambda p, cfg: present(p, cfg) & (p["obj_x"][:, c] < 0.5),
      f"{name}_right": lambda p, cfg: present(p, cfg) & (p["obj_x"][:, c] >= 0.5),
      # Larger than the middle of the configured scale range: about half of those present.
      f"{name}_large": lambda p, cfg: present(p, cfg) & (
          p["obj_scale"][:, c] > 0.5 * (cfg.min_scale + cfg.max_scale) * driving._CLASS_SCALE[c]),
      f"{name}_unoccluded": lambda p, cfg: present(p, cfg) & ~p["occluded"][:, c],
  }


def _all_tasks() -> dict[str, TaskFn]:
  per_class = [_class_tasks(c, name) for c, name in enumerate(driving.TASK_NAMES)]
  tasks: dict[str, TaskFn] = {}
  # Interleaved by kind, so the first k auxiliary tasks cover every class.
  for kind in range(5):
    for class_tasks in per_class:
      name, fn = list(class_tasks.items())[kind]
      tasks[name] = fn
  light, car = driving.LIGHT, driving.CAR
  for lamp, lamp_name in enumerate(driving.LAMP_NAMES):
    tasks[f"traffic_light_{lamp_name}"] = (
        lambda p, _, lamp=lamp: p["present"][:, light] & (p["lit_lamp"] == lamp))
  tasks["scene_hazy"] = lambda p, cfg: p["haze"] > 0.5 * cfg.haze
  tasks["scene_dark"] = lambda p, _: p["brightness"] < 1.0
  tasks["scene_yellow_lane"] = lambda p, _: (p["lane_visible"] > 0) & (p["lane_colour"][:, 2] < 0.5)
  for colour, colour_name in enumerate(driving.CAR_COLOUR_NAMES):
    tasks[f"car_{colour_name}"] = (
        lambda p, _, colour=colour: p["present"][:, car] & (p["car_colour"] == colour))
  return tasks


TASKS = _all_tasks()
ALL_TASK_NAMES: tuple[str, ...] = tuple(TASKS)


def check_task_names(names: Sequence[str]) -> None:
  unknown = [n for n in names if n not in TASKS]
  if unknown:
    raise InputError(f"unknown driving task {unknown[0]!r}; available: {', '.join(ALL_TASK_NAMES)}")
  if len(set(names)) != len(names):
    raise InputError(f"a task is listed twice in {','.join(names)}")


def task_labels(params: dict, config: driving.SceneConfig, names: Sequence[str]) -> np.ndarray:
  """Labels [N, len(names)] int8 (1 yes, 0 no) from `sample_scene_params` output."""
  check_task_names(names)
  return np.stack([TASKS[n](params, config) for n in names], axis=1).astype(np.int8)


def task_class(name: str) -> str:
  """The object class a task is about, or 'scene'."""
  return next((c for c in driving.TASK_NAMES if name == c or name.startswith(c + "_")), "scene")


def auxiliary_tasks(target: str) -> tuple[str, ...]:
  """Every task not about the target's object class, in a fixed order."""
  check_task_names([target])
  return tuple(n for n in ALL_TASK_NAMES if task_class(n) != task_class(target)
               or task_class(target) == "scene" and n != target)
