"""The methods experiment's grid: every method against the same separate networks, on
the same data, seeds, steps and selection rule; no training (tests/test_all_experiments.py
runs it end to end)."""
import dataclasses

from experiments import methods as methods_experiment
from mtl_jax.data.datasets import DataConfig
from mtl_jax.models import EncoderSpec
from mtl_jax.train import TrainConfig


def _settings(**changes):
  base = methods_experiment.Settings(data=DataConfig(num_train=64), encoder=EncoderSpec("cnn", 4, 2),
                                     train=TrainConfig(epochs=3, batch_size=16), seeds=3,
                                     methods=("ew", "mgda_ub", "upgrad"))
  return dataclasses.replace(base, **changes)


def test_every_arm_of_a_problem_sees_the_same_data_seeds_and_training_but_its_method():
  groups = methods_experiment.grid(_settings()).groups
  assert {p for p, _ in groups} == set(methods_experiment.GENERATED_PROBLEMS)
  for problem in methods_experiment.GENERATED_PROBLEMS:
    arms = [a for p, a in groups if p == problem]
    assert arms == ["separate", "ew", "mgda_ub", "upgrad"]
    configs = [c for a in arms for c in groups[problem, a]]
    assert len({(c.data, c.encoder) for c in configs}) == 1
    assert {c.seed for c in configs} == {0, 1, 2}
    assert len({dataclasses.replace(c.train, method="ew", method_options=()) for c in configs}) == 1
    assert [groups[problem, a][0].train.method for a in arms] == ["ew", "ew", "mgda_ub", "upgrad"]
  assert len(groups["driving34", "ew"][0].data.tasks) == 34
  rho = {p: groups[p, "ew"][0].data.relatedness.rho for p in ("related_rho0", "related_rho1")}
  assert rho == {"related_rho0": 0.0, "related_rho1": 1.0}


def test_methods_the_architecture_cannot_serve_are_left_out_saying_why():
  grid = methods_experiment.grid(_settings(arch="mmoe", problems=("related_rho0",)))
  assert [a for _, a in grid.groups] == ["separate", "ew", "upgrad"]
  assert "left out on related_rho0: --method=mgda_ub" in grid.headline


def test_read_data_is_the_one_problem():
  settings = _settings(data=DataConfig(dataset="csv:/tmp/x.csv"), encoder=EncoderSpec("mlp", 4, 1))
  assert [p.name for p in methods_experiment.problems_of(settings)] == ["data"]
