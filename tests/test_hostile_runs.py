"""A hostile environment around a launch: an output folder that cannot be made, odd
contents in it, a second launch into it, a full disk, damaged checkpoints, and
--experiment=all on data that some experiments cannot use. Each ends in one clear line
(or one loud warning), before anything trains where it can be known before."""
import errno
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from entry_points import ROOT, launch_in_process

from experiments.experiment import Experiment
from mtl_jax import plots, results
from mtl_jax.results import hold_out_dir, read_records, write_atomically

TINY = ["--encoder=mlp", "--width=2", "--depth=1", "--epochs=1", "--seeds=1", "--num_train=64",
        "--num_val=200", "--num_test=48", "--batch_size=16", "--image_size=8"]
# --experiment=all with every experiment's grid valid and small on TINY.
ALL = ["--experiment=all", "--widths=2", "--num_aux=0,1", "--target_budget=10", "--target_budgets=10",
       "--rhos=1", "--missing_fracs=0", "--b_budgets=10", "--methods=ew", "--problems=related_rho1",
       "--related_num_train=64", "--related_epochs=1", "--archs=mmoe", "--arch_rhos=1",
       "--arch_problems=related"]


def one_error_line(result, expected: str) -> str:
  """Exit status 2 and one `error:` line on stderr holding `expected`; returns the line."""
  assert result.returncode == 2, (result.stdout, result.stderr)
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
  assert expected in lines[0], lines[0]
  return lines[0]


def trained_nothing(result) -> bool:
  return not re.search(r": epoch +\d+/\d+", result.stdout)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """An out_dir of one finished tiny launch (joint and separate, one seed each), with
  --checkpoint_every=1 and its checkpoints kept, as a preempted launch leaves them."""
  from mtl_jax.checkpoints import EpochCheckpoints
  out = tmp_path_factory.mktemp("finished") / "out"
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(EpochCheckpoints, "close", lambda self, finished: self._manager.close())
    result = launch_in_process(*TINY, "--checkpoint_every=1", f"--out_dir={out}")
  assert result.returncode == 0, result.stderr
  return out


def copy_of(finished, tmp_path, checkpoints=False):
  out = tmp_path / "out"
  shutil.copytree(finished, out, ignore=None if checkpoints else shutil.ignore_patterns("checkpoints"))
  return out


# ---- 7. An output folder that cannot be made is refused before anything trains.

def _under_a_file(tmp_path):
  (tmp_path / "file").write_text("keep me")
  return tmp_path / "file" / "out", "is a file, not a folder"


def _under_proc(tmp_path):
  return "/proc/mtl_jax_hostile_test/out", "/proc/mtl_jax_hostile_test/out"


def _read_only_folder(tmp_path, monkeypatch):
  parent = tmp_path / "read_only"
  parent.mkdir()
  if os.geteuid() == 0:  # root writes anywhere: the folder refuses as a read-only one would
    real = os.makedirs
    def refuse(path, *args, **kwargs):
      if str(path).startswith(str(parent)):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
      return real(path, *args, **kwargs)
    monkeypatch.setattr(results.os, "makedirs", refuse)
  else:
    parent.chmod(0o555)
  return parent / "out", str(parent / "out")


@pytest.mark.parametrize("where", ["under_a_file", "under_proc", "read_only_folder"])
@pytest.mark.parametrize("experiment", ["one", "all"])
def test_an_out_dir_that_cannot_be_made_is_one_line_before_anything_trains(tmp_path, monkeypatch,
                                                                           where, experiment):
  if where == "read_only_folder":
    out, expected = _read_only_folder(tmp_path, monkeypatch)
  else:
    out, expected = {"under_a_file": _under_a_file, "under_proc": _under_proc}[where](tmp_path)
  result = launch_in_process(*TINY, *(ALL if experiment == "all" else []), f"--out_dir={out}")
  one_error_line(result, expected)
  assert trained_nothing(result) and not os.path.exists(out)
  if where == "under_a_file":
    assert (tmp_path / "file").read_text() == "keep me"


def test_a_folder_made_for_a_launch_that_then_fails_is_removed_again(tmp_path):
  out = tmp_path / "new" / "out"
  result = launch_in_process(*TINY, "--plot_only", f"--out_dir={out}")
  one_error_line(result, "run without --plot_only first")
  assert not (tmp_path / "new").exists()  # both folders it made, and no lock file left


# ---- 8. --experiment=all runs what applies to the data, skipping the rest up front.

@pytest.fixture(scope="module")
def table(tmp_path_factory):
  rng = np.random.default_rng(0)
  path = tmp_path_factory.mktemp("data") / "table.csv"
  rows = ["f1,f2,f3,label:a,label:b"] + [
      f"{x[0]:.3f},{x[1]:.3f},{x[2]:.3f},{int(x[0] > 0)},{int(x[1] + x[2] > 0)}"
      for x in rng.normal(size=(120, 3))]
  path.write_text("\n".join(rows) + "\n")
  return path


@pytest.fixture
def runs(monkeypatch):
  """Experiment.run replaced by a recorder: which experiments --experiment=all starts,
  with the grid it made up front."""
  started = []
  def run(self, settings, grid=None):
    assert grid is not None  # made up front
    if not started:  # every folder is claimed before the first runs, and only those
      started.append(sorted(os.listdir(os.path.dirname(settings.out_dir))))
    started.append(self.name)
    print(f"(ran {self.name})")
    return []
  monkeypatch.setattr(Experiment, "run", run)
  return started


SKIPPED_ON_A_TABLE = {
    "network_size": "the cnn encoder needs images",
    "data_amount": "--target_task=car is not a task of csv:",
    "relatedness": "needs --dataset=related",
    "transfer_vs_mtl": "--task_a=car is not a task of csv:",
    "architectures": "runs on the relatedness data and the driving scenes",
}


def test_all_on_a_table_skips_what_cannot_use_it_saying_why_before_anything_runs(tmp_path, table, runs):
  result = launch_in_process("--experiment=all", f"--dataset=csv:{table}", "--epochs=1", "--seeds=1",
                             "--missing_fracs=0,0.5", "--methods=ew", f"--out_dir={tmp_path}")
  assert result.returncode == 0, result.stderr
  # multilabel_real takes the one read --dataset as its one set.
  applicable = ["joint_vs_separate", "missing_labels", "methods", "multilabel_real"]
  assert runs == [sorted(applicable), *applicable]
  lines = result.stdout.splitlines()
  skips = [line for line in lines if ": skipped: " in line]
  assert len(skips) == len(SKIPPED_ON_A_TABLE)
  for name, why in SKIPPED_ON_A_TABLE.items():
    assert any(line.startswith(f"=== {name}: skipped: ") and why in line for line in skips), name
  assert lines.index(skips[-1]) < lines.index("=== joint_vs_separate ===")
  # Named tasks of the table make the two task experiments apply.
  runs.clear()
  named = launch_in_process("--experiment=all", f"--dataset=csv:{table}", "--epochs=1", "--seeds=1",
                            "--target_task=a", "--task_a=a", "--task_b=b", "--num_aux=0,1",
                            "--target_budget=5", "--target_budgets=5", "--b_budgets=5",
                            "--missing_fracs=0", "--methods=ew", f"--out_dir={tmp_path / 'named'}")
  assert named.returncode == 0, named.stderr
  applicable = ["joint_vs_separate", "data_amount", "missing_labels", "transfer_vs_mtl", "methods",
                "multilabel_real"]
  assert runs == [sorted(applicable), *applicable]


def test_all_on_the_related_generator_runs_what_takes_vectors(tmp_path, runs):
  # The cnn default cannot read the generator's vectors; relatedness picks its own mlp.
  result = launch_in_process("--experiment=all", "--dataset=related", "--methods=ew",
                             "--problems=related_rho1", f"--out_dir={tmp_path}")
  assert result.returncode == 0, result.stderr
  assert runs == [["methods", "relatedness"], "relatedness", "methods"]
  assert "=== joint_vs_separate: skipped: the cnn encoder needs images; --dataset=related" in result.stdout
  assert "=== data_amount: skipped: needs named tasks" in result.stdout


def test_all_refuses_in_one_line_when_no_experiment_applies(tmp_path, table, runs):
  result = launch_in_process("--experiment=all", f"--dataset=csv:{table}", "--encoder=cnn",
                             f"--out_dir={tmp_path / 'out'}")
  line = one_error_line(result, "no experiment can run on these flags: ")
  assert "joint_vs_separate: the cnn encoder needs images" in line and runs == []
  assert not (tmp_path / "out").exists()


def test_all_refuses_a_bad_flag_of_a_later_experiment_before_the_first_trains(tmp_path):
  result = launch_in_process(*TINY, *ALL, "--arch_rhos=2", f"--out_dir={tmp_path / 'out'}")
  one_error_line(result, "architectures: --arch_rhos (or --rhos) must list at least one value")
  assert trained_nothing(result) and not (tmp_path / "out").exists()


def test_the_cnn_sweep_on_a_table_is_refused_before_the_mlp_sweep_trains(tmp_path, table):
  # Alone, network_size used to train every MLP width, then fail on the first CNN.
  result = launch_in_process("--experiment=network_size", f"--dataset=csv:{table}", "--widths=2",
                             "--epochs=1", "--seeds=1", f"--out_dir={tmp_path / 'out'}")
  one_error_line(result, "network_size: the cnn encoder needs images; --dataset=csv:")
  assert trained_nothing(result) and not (tmp_path / "out").exists()


def test_an_npz_holds_images_or_vectors_and_the_cnn_needs_images(tmp_path):
  from experiments import joint_vs_separate
  from experiments.experiment import needs_images_for_cnn
  from mtl_jax.data.datasets import DataConfig
  from mtl_jax.models import EncoderSpec
  from mtl_jax.train import TrainConfig
  rng = np.random.default_rng(0)
  y = rng.integers(0, 2, (60, 2))
  np.savez(tmp_path / "images.npz", x=rng.integers(0, 255, (60, 8, 8, 3)).astype(np.uint8), y=y)
  np.savez(tmp_path / "vectors.npz", x=rng.normal(size=(60, 5)).astype(np.float32), y=y)
  cnn = lambda name: joint_vs_separate.Settings(
      data=DataConfig(dataset=f"npz:{tmp_path / name}", num_train=None, num_val=None, num_test=None),
      encoder=EncoderSpec("cnn", 2, 1), train=TrainConfig())
  assert needs_images_for_cnn()(cnn("images.npz")) is None
  assert "the cnn encoder needs images" in needs_images_for_cnn()(cnn("vectors.npz"))


# ---- 9. Odd contents of an out_dir: one line, or a loud warning for unusable lines.

def _record_without_metrics(first: bytes) -> bytes:
  record = json.loads(first)
  del record["metrics"]
  return json.dumps(record).encode()


# Each replaces line 1 (a finished run's record) or goes before it.
BAD_LINES = {
    "a list": (b"[1, 2]", "before"),
    "null": (b"null", "before"),
    "an object without a hash": (b'{"foo": 1}', "before"),
    "not UTF-8": (b"\xff\xfe\x00garbage\x80", "before"),
    "torn by a crash": (b'{"hash": "3f2a", "metr', "before"),
    "a record without metrics": (_record_without_metrics, "replaces"),
}


@pytest.mark.parametrize("bad", list(BAD_LINES))
def test_a_line_that_is_not_a_record_is_set_aside_with_a_warning_naming_it(finished, tmp_path, bad):
  out = copy_of(finished, tmp_path)
  path = out / "results.jsonl"
  lines = path.read_bytes().splitlines(keepends=True)
  line, where = BAD_LINES[bad]
  if where == "replaces":
    line, lines = line(lines[0]), lines[1:]
  path.write_bytes(line + b"\n" + b"".join(lines))
  result = launch_in_process(*TINY, f"--out_dir={out}")
  assert result.returncode == 0, result.stderr
  warnings = result.stderr.strip().splitlines()
  assert len(warnings) == 1 and warnings[0].startswith(f"warning: {path}: line 1 is not a result record")
  assert "set aside" in warnings[0]
  assert path.read_bytes().startswith(line + b"\n")  # left on file, untouched
  # The run whose only record was unusable is trained again; nothing else is.
  assert trained_nothing(result) == (where == "before")
  records, unusable = read_records(str(path))
  assert len(records) == 2 and unusable == [1] and (out / "summary.csv").exists()


def test_read_records_names_every_unusable_line(tmp_path):
  path = tmp_path / "results.jsonl"
  path.write_bytes(b'{"hash": "a", "results_version": 0}\n[1]\n\n{"hash": "b", "metr\n\xff\n'
                   b'{"hash": "c", "results_version": 0}\n{"hash": "torn at the e')
  records, unusable = read_records(str(path))
  assert [r["hash"] for r in records] == ["a", "c"] and unusable == [2, 4, 5, 7]
  assert results.line_numbers(unusable) == "2, 4, 5 and 7"


@pytest.mark.parametrize("name,kind,expected", [
    ("results.jsonl", "folder", "results.jsonl is a folder, where this run writes a file"),
    ("summary.csv", "folder", "summary.csv is a folder, where this run writes a file"),
    ("joint_vs_separate.svg", "folder", "joint_vs_separate.svg is a folder"),
    ("checkpoints", "file", "checkpoints is a file, where this run keeps a folder"),
    ("results.jsonl", "pipe", "results.jsonl is not a regular file"),  # reading it would hang
    (results.LOCK_FILE, "folder", "cannot be written (Is a directory)"),
])
def test_an_output_of_the_wrong_kind_is_one_line_before_anything_trains(tmp_path, name, kind, expected):
  out = tmp_path / "out"
  out.mkdir()
  make = {"folder": os.mkdir, "pipe": os.mkfifo, "file": lambda p: open(p, "w").write("mine")}
  make[kind](out / name)
  result = launch_in_process(*TINY, "--checkpoint_every=1", f"--out_dir={out}")
  one_error_line(result, expected)
  assert trained_nothing(result) and sorted(os.listdir(out)) == [name]


# ---- 10. One launch per out_dir at a time; temporary files of its own.

def test_a_second_launch_into_a_held_out_dir_stops_at_once_naming_the_holder(tmp_path):
  out = tmp_path / "out"
  with hold_out_dir(str(out)):  # this process stands for the first launch
    result = subprocess.run([sys.executable, "launch.py", *TINY, f"--out_dir={out}"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    line = one_error_line(result, f"another run (pid {os.getpid()}) is writing to --out_dir {out}")
    assert trained_nothing(result) and sorted(os.listdir(out)) == [results.LOCK_FILE]
  assert not out.exists()  # released: the lock file and the folder made for it are gone
  assert "wait for it to finish, or give another --out_dir" in line


def test_a_lock_file_left_by_a_killed_launch_does_not_block(finished, tmp_path):
  out = copy_of(finished, tmp_path)
  (out / results.LOCK_FILE).write_text("999999999\n")  # SIGKILL leaves the file, not the lock
  result = launch_in_process(*TINY, f"--out_dir={out}")
  assert result.returncode == 0, result.stderr
  assert not (out / results.LOCK_FILE).exists()


def test_a_file_system_without_locks_is_said_not_fatal(tmp_path, monkeypatch, capsys):
  def no_locks(fd, operation):
    raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
  monkeypatch.setattr(results.fcntl, "flock", no_locks)
  with hold_out_dir(str(tmp_path / "out")):
    assert (tmp_path / "out").is_dir()
  assert "cannot be locked (No locks available); a second launch" in capsys.readouterr().err
  assert not (tmp_path / "out").exists()


def test_temporary_files_are_unique_and_a_failed_write_leaves_none(tmp_path):
  names = []
  for _ in range(2):
    write_atomically(str(tmp_path / "summary.csv"), lambda p: (names.append(p), open(p, "w").close()))
  assert len(set(names)) == 2 and all(os.path.basename(n).startswith(".partial-") for n in names)
  assert all(n.endswith("summary.csv") and str(os.getpid()) in n for n in names)
  def fails(p):
    open(p, "w").write("half")
    raise OSError(errno.EIO, os.strerror(errno.EIO))
  with pytest.raises(results.WriteError, match="cannot write .* while writing .*summary.csv"):
    write_atomically(str(tmp_path / "summary.csv"), fails)
  assert os.listdir(tmp_path) == ["summary.csv"]


# ---- 11. A full disk is one line saying what was being written and what is saved.

def _disk_full(code):
  def raise_(*args, **kwargs):
    raise OSError(code, os.strerror(code))
  return raise_


def test_a_full_disk_while_appending_a_result_is_one_line_and_leaves_no_torn_line(tmp_path, monkeypatch):
  out = tmp_path / "out"
  monkeypatch.setattr(results.os, "fsync", _disk_full(errno.ENOSPC))
  result = launch_in_process(*TINY, f"--out_dir={out}")
  one_error_line(result, f"disk full while writing {out}/results.jsonl; 0 of the 2 runs are saved in "
                         f"{out}/results.jsonl; make room and run the same command again to resume")
  assert (out / "results.jsonl").read_bytes() == b""  # the half-written line was cut off again


@pytest.mark.parametrize("target,code,what", [
    ("write_csv", errno.EDQUOT, "summary.csv"),
    ("finish", errno.ENOSPC, "joint_vs_separate.png"),
])
def test_a_full_disk_while_writing_the_summary_or_a_figure_is_one_line(finished, tmp_path, monkeypatch,
                                                                      target, code, what):
  out = copy_of(finished, tmp_path)
  os.remove(out / "summary.csv")
  monkeypatch.setattr(results if target == "write_csv" else plots, target, _disk_full(code))
  result = launch_in_process(*TINY, f"--out_dir={out}")
  one_error_line(result, f"disk full while writing {out}/{what}; all 2 runs are saved in {out}/results.jsonl")
  assert not [name for name in os.listdir(out) if name.startswith(".partial-") or name == results.LOCK_FILE]


def test_a_full_disk_while_saving_a_checkpoint_is_one_line(tmp_path, monkeypatch):
  import orbax.checkpoint as ocp
  out = tmp_path / "out"
  monkeypatch.setattr(ocp.CheckpointManager, "save", _disk_full(errno.ENOSPC))
  result = launch_in_process(*TINY, "--checkpoint_every=1", f"--out_dir={out}")
  one_error_line(result, f"disk full while writing a checkpoint in {out}/checkpoints/")
  assert "0 of the 2 runs are saved" in result.stderr


# ---- 12. A damaged checkpoint is deleted, loudly, and its group trains from scratch.

def _garbage(path):
  path.write_bytes(os.urandom(max(path.stat().st_size, 16)))


def _truncated(path):
  path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def test_a_damaged_checkpoint_is_deleted_loudly_and_its_group_trains_from_scratch(finished, tmp_path):
  out = copy_of(finished, tmp_path, checkpoints=True)
  os.remove(out / "results.jsonl")  # as if preempted: the checkpoints, but no results
  groups = sorted(p for p in (out / "checkpoints").iterdir() if p.is_dir())
  assert len(groups) == 2 and all(p.with_name(p.name + ".sha1").is_file() for p in groups)
  for path in [*groups[0].rglob("*"), groups[0].with_name(groups[0].name + ".sha1")]:
    if path.is_file():
      _garbage(path)
  resumed = launch_in_process(*TINY, "--checkpoint_every=1", "--resume", f"--out_dir={out}")
  assert resumed.returncode == 0, resumed.stderr
  warnings = [w for w in resumed.stderr.splitlines() if w.startswith("warning: the checkpoint in ")]
  assert len(warnings) == 1 and warnings[0].split()[4] == str(groups[0]), resumed.stderr
  assert "trains from scratch" in warnings[0] and "Traceback" not in resumed.stderr
  # The damaged group trained its one epoch again; the intact one was restored after it.
  assert len(re.findall(r": epoch +1/1", resumed.stdout)) == 1 and not (out / "checkpoints").exists()
  # Either way the very runs of the uninterrupted launch.
  clean = {r["hash"]: r for r in read_records(str(finished / "results.jsonl"))[0]}
  records = read_records(str(out / "results.jsonl"))[0]
  assert len(records) == 2 and all(r["metrics"] == clean[r["hash"]]["metrics"] for r in records)


def _saved_checkpoint(directory):
  from mtl_jax.checkpoints import CheckpointSettings, EpochCheckpoints
  saver = EpochCheckpoints(CheckpointSettings(directory, every=1, resume=False))
  saver.save(1, {"w": np.ones((3, 2), np.float32)})
  saver.close(finished=False)


def _resumed(directory):
  from mtl_jax.checkpoints import CheckpointSettings, EpochCheckpoints
  return EpochCheckpoints(CheckpointSettings(directory, every=1, resume=True))


def test_a_truncated_checkpoint_with_its_digest_intact_is_not_restored(tmp_path, capsys):
  _saved_checkpoint(str(tmp_path / "group"))
  for path in (tmp_path / "group").rglob("*"):
    if path.is_file():
      _truncated(path)
  resumed = _resumed(str(tmp_path / "group"))
  assert resumed.restore({"w": np.zeros((3, 2), np.float32)}) is None
  assert "cannot be restored" in capsys.readouterr().err
  assert resumed._manager.latest_step() is None and not (tmp_path / "group.sha1").exists()
  resumed.close(finished=True)


def test_a_checkpoint_whose_arrays_differ_from_its_digest_is_not_restored(tmp_path, capsys):
  _saved_checkpoint(str(tmp_path / "group"))
  restored = _resumed(str(tmp_path / "group"))
  epoch, state = restored.restore({"w": np.zeros((3, 2), np.float32)})
  assert epoch == 1 and np.all(np.asarray(state["w"]) == 1)  # intact: restored as saved
  restored.close(finished=False)
  # As if one saved number had changed and still decoded: the digest no longer matches.
  digest = tmp_path / "group.sha1"
  epoch_text, sha1 = digest.read_text().split()
  digest.write_text(f"{epoch_text} {'0' if sha1[0] != '0' else '1'}{sha1[1:]}\n")
  resumed = _resumed(str(tmp_path / "group"))
  assert resumed.restore({"w": np.zeros((3, 2), np.float32)}) is None
  assert "differ from the digest saved with epoch 1" in capsys.readouterr().err
  assert not digest.exists()
  resumed.close(finished=True)


def test_a_checkpoint_of_another_shape_is_not_restored(tmp_path, capsys):
  _saved_checkpoint(str(tmp_path / "group"))
  resumed = _resumed(str(tmp_path / "group"))
  assert resumed.restore({"w": np.zeros((4, 2), np.float32)}) is None  # from other flags or code
  assert "cannot be restored" in capsys.readouterr().err
  assert resumed._manager.latest_step() is None  # deleted: the next save starts afresh
  resumed.close(finished=True)
