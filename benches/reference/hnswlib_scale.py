#!/usr/bin/env python3
"""hnswlib on the vectors `pinpoint bench --scale N --export-vectors PREFIX` wrote.

Why: the scale issue compares pinpoint's graph build (inserts/s) and its dense search
(queries/s at recall@10 0.98) with hnswlib's on the very same vectors, queries and exact
answers. Same parameters as pinpoint's defaults: M 16, ef_construction 200, inner product;
build on 2 threads, queries on 1.

Usage: hnswlib_scale.py PREFIX [--dim 384]   (prints one JSON line)
Needs: numpy, hnswlib (benches/reference/setup.sh installs them).
"""
import json
import sys
import time

import numpy as np


def main():
    prefix = sys.argv[1]
    dim = int(sys.argv[sys.argv.index("--dim") + 1]) if "--dim" in sys.argv else 384
    data = np.fromfile(prefix + ".f32", dtype="<f4").reshape(-1, dim)
    qv = np.fromfile(prefix + ".queries", dtype="<f4").reshape(-1, dim)
    exact = np.fromfile(prefix + ".exact", dtype="<u4").reshape(-1, 10)
    import hnswlib

    def qps_at(curve, target):
        """QPS at `target` recall, interpolated linearly between the two grid points around
        it (the grid's steps double `ef`, so the first point past the target can cost half
        the QPS of a point just short of it); the same rule as pinpoint's `bench --scale`."""
        prev = None
        for p in curve:
            if p["recall@10"] >= target:
                if prev is None or prev["recall@10"] >= p["recall@10"]:
                    return p["qps"]
                f = (target - prev["recall@10"]) / (p["recall@10"] - prev["recall@10"])
                return prev["qps"] + f * (p["qps"] - prev["qps"])
            prev = p
        return None

    idx = hnswlib.Index(space="ip", dim=dim)
    idx.init_index(max_elements=len(data), M=16, ef_construction=200)
    t0 = time.perf_counter()
    idx.add_items(data, np.arange(len(data)), num_threads=2)
    build = time.perf_counter() - t0
    idx.set_num_threads(1)
    curve, at98 = [], None
    for ef in [16, 32, 64, 128, 256, 512]:
        idx.set_ef(ef)
        t0 = time.perf_counter()
        hits = 0
        for q, ex in zip(qv, exact):
            labels, _ = idx.knn_query(q, k=10)
            hits += len(set(labels[0].tolist()) & set(ex.tolist()))
        qps = len(qv) / (time.perf_counter() - t0)
        recall = hits / (10 * len(qv))
        curve.append({"ef": ef, "recall@10": recall, "qps": qps})
    at98 = qps_at(curve, 0.98)
    out = {
        "vectors": len(data),
        "build_s": build,
        "inserts_per_s": len(data) / build,
        "qps_at_recall_0_98": at98,
        "curve": curve,
    }
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
