"""How fast ARFF files are read, and whether keeping sparse inputs sparse would matter.

  python -m benchmarks.arff_read [--mulan_dir=../shared/data/mulan] [--generated_mb=10] [--repeats=3]

For the four shared MULAN sets (skipped where absent) and a generated sparse file of
about --generated_mb MB (enron-like: 1001 binary word features, 50 labels by MEKA's
-C -50), it prints the read rate (the median of --repeats reads of train and test
file into features and labels, arff_table.read_arff; wall and CPU seconds: on a
shared machine the CPU time is the better guide) and the peak memory of one read
(tracemalloc, in its own pass: tracing slows the parse). Then the memory question:
the dense float32 features the device holds against a CSR copy (float32 values and
int32 indices), and the peak of the whole load_dataset (splits, standardisation).
"""
import os
import tempfile
import time
import tracemalloc

import numpy as np
from absl import app, flags

from mtl_jax.data import arff_table, label_sources
from mtl_jax.data.datasets import DataConfig, load_dataset

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_string("mulan_dir", os.path.join(_ROOT, "..", "shared", "data", "mulan"),
                    "Folder of the MULAN sets (enron, medical, genbase, CAL500).")
flags.DEFINE_float("generated_mb", 10.0, "Size of the generated sparse file, in MB.")
flags.DEFINE_integer("repeats", 3, "Timed reads per set (median reported).")
FLAGS = flags.FLAGS

MULAN_SETS = {"enron": ("enron-train.arff", "enron-test.arff", ()),
              "medical": ("medical-train.arff", "medical-test.arff", ()),
              "genbase": ("genbase-train.arff", "genbase-test.arff", ()),
              "CAL500": ("CAL500.arff", None, ("last:174",))}
MB = 1e6


def write_sparse(path: str, megabytes: float, features: int = 1001, labels: int = 50,
                 words_per_row: int = 70, seed: int = 0) -> None:
  """An enron-like sparse ARFF file of about `megabytes` MB."""
  rng = np.random.default_rng(seed)
  with open(path, "w") as f:
    f.write(f"@relation 'generated: -C -{labels}'\n")
    f.writelines(f"@attribute w{j} {{0,1}}\n" for j in range(features))
    f.writelines(f"@attribute label{j} {{0,1}}\n" for j in range(labels))
    f.write("@data\n")
    while f.tell() < megabytes * MB:
      words = np.sort(rng.choice(features, rng.integers(5, 2 * words_per_row), replace=False))
      tags = features + np.flatnonzero(rng.random(labels) < 0.06)
      f.write("{" + ",".join(f"{j} 1" for j in np.concatenate([words, tags])) + "}\n")


def _files(paths: list[str], label_path) -> tuple:
  read = lambda p: p and (p, open(p, "rb").read())
  return read(paths[0]), read(paths[1] if len(paths) > 1 else None), read(label_path)


def measure(name: str, paths: list[str], label_columns: tuple[str, ...]) -> None:
  label_path = label_sources.find_label_file(paths[0])
  train, test, labels = _files(paths, label_path)
  size = sum(len(f[1]) for f in (train, test) if f)
  times, cpu = [], []
  for _ in range(FLAGS.repeats):
    start, start_cpu = time.perf_counter(), time.process_time()
    table = arff_table.read_arff(train, test, labels, label_columns)
    times.append(time.perf_counter() - start)
    cpu.append(time.process_time() - start_cpu)
  tracemalloc.start()
  arff_table.read_arff(train, test, labels, label_columns)
  read_peak = tracemalloc.get_traced_memory()[1]
  tracemalloc.reset_peak()
  dataset = ",".join(paths)
  load_dataset(DataConfig(dataset=f"arff:{dataset}", num_train=None, num_val=None, num_test=None,
                          missing_frac=0.0, label_columns=label_columns))
  load_peak = tracemalloc.get_traced_memory()[1]
  tracemalloc.stop()
  seconds, cpu_seconds = float(np.median(times)), float(np.median(cpu))
  nonzero = int(np.count_nonzero(table.x))
  dense, csr = table.x.nbytes, nonzero * 8 + (len(table.x) + 1) * 4
  print(f"{name:<10} {size / MB:6.2f} MB {table.x.shape[0]:>6} x {table.x.shape[1]:<5} {len(table.task_names):>4} "
        f"labels  {seconds:5.2f} s ({cpu_seconds:4.2f} s CPU) {size / MB / seconds:5.1f} MB/s  read peak {read_peak / MB:6.1f} MB  "
        f"dense x {dense / MB:6.1f} MB, CSR {csr / MB:5.1f} MB ({nonzero / table.x.size:.1%} nonzero)  "
        f"load_dataset peak {load_peak / MB:6.1f} MB")


def main(argv):
  del argv
  print("set          file    rows x features  labels   read (median)              rate     memory")
  mulan = os.path.normpath(FLAGS.mulan_dir)
  if os.path.isdir(mulan):
    for name, (train, test, label_columns) in MULAN_SETS.items():
      measure(name, [os.path.join(mulan, f) for f in (train, test) if f], label_columns)
  else:
    print(f"(no MULAN sets at {mulan}: skipped)")
  with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "generated.arff")
    write_sparse(path, FLAGS.generated_mb)
    measure("generated", [path], ())


if __name__ == "__main__":
  app.run(main)
