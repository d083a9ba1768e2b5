"""How many examples each hypothesis property draws. Every example with new shapes
compiles its own program, so the default keeps the suite within its time budget;
MTL_PROPERTY_EXAMPLES=100 python -m pytest runs the properties thoroughly."""
import os

import numpy as np

EXAMPLES = int(os.environ.get("MTL_PROPERTY_EXAMPLES", "8"))


def jacobians(tasks: tuple[int, int], columns: tuple[int, int], bound: float):
  """Jacobians of `tasks` rows and `columns` columns (inclusive ranges), entries in
  [-bound, bound], padded with zero columns to the widest: every inner product of two
  rows, so the Gramian and every method's task weights, is that of the drawn matrix,
  and a direction's extra entries are zero. So a property covers every width while each
  function compiles once per number of tasks instead of once per shape."""
  from hypothesis import strategies as st
  from hypothesis.extra.numpy import arrays
  widest = columns[1]
  return arrays(np.float32, st.tuples(st.integers(*tasks), st.integers(*columns)),
                elements=st.floats(-bound, bound, width=32)).map(
                    lambda j: np.pad(j, ((0, 0), (0, widest - j.shape[1]))))
