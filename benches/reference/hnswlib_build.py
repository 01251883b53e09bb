"""hnswlib's graph build alone, to set beside `examples/graph_probe.rs` on the same rows.

Usage: hnswlib_build.py PREFIX N [OFFSET]
Reads rows OFFSET..OFFSET+N of PREFIX.f32 (the raw little-endian f32 rows, 384 a vector,
that `pinpoint bench --scale ... --export-vectors PREFIX` writes) and times hnswlib's
`add_items` over them: inner product, M 16, ef_construction 200, 2 threads, as
`hnswlib_scale.py` builds. OFFSET picks one checkpoint's rows (the bench commits 100,362
rows at a time at 1M).
"""

import sys
import time

import hnswlib
import numpy as np

DIM = 384


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: hnswlib_build.py PREFIX N [OFFSET]")
    prefix, n = sys.argv[1], int(sys.argv[2])
    offset = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    rows = np.fromfile(
        prefix + ".f32", dtype="<f4", count=n * DIM, offset=offset * DIM * 4
    ).reshape(-1, DIM)
    n = len(rows)
    index = hnswlib.Index(space="ip", dim=DIM)
    index.init_index(max_elements=n, M=16, ef_construction=200)
    t = time.perf_counter()
    index.add_items(rows, np.arange(n), num_threads=2)
    s = time.perf_counter() - t
    print(f"hnswlib {n} rows from {offset}: {s:.1f} s, {n / s:.0f} inserts/s")


if __name__ == "__main__":
    main()
