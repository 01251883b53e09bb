#!/usr/bin/env python3
"""Sharded build on Ray against one `pinpoint index`, and fan-out query latency (a
benchmark, not a test; the README's "Beyond one machine" table).

Writes the first N abstracts of a BEIR corpus as text files, then times, on this machine:
- `pinpoint index FOLDER` (one process: the baseline);
- `pinpoint-ray build FOLDER OUT --shards S` on a local Ray cluster of 1 worker node and of
  2 worker nodes (each node offered one CPU slot, so 1 or 2 shards build at once);
- the warm latency of the same questions on the single index and fanned out over the shards
  in one process (`pinpoint.search_many`).

Usage: build_bench.py BEIR_DIR WORK [--docs 1500] [--shards 4] [--model DIR]
Needs `ray` and the package in the running Python.
"""
import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import time

import pinpoint

BIN = os.path.dirname(sys.executable)


def ray(*args):
    subprocess.run([os.path.join(BIN, "ray"), *args], check=True, capture_output=True)


def cluster(nodes):
    ray("stop", "--force")
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    ray("start", "--head", "--port=6393", "--num-cpus=1", "--include-dashboard=false", "--disable-usage-stats")
    for _ in range(nodes - 1):
        ray("start", "--address=127.0.0.1:6393", "--num-cpus=1", "--disable-usage-stats")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("beir")
    p.add_argument("work")
    p.add_argument("--docs", type=int, default=1500)
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--model", default="models/all-MiniLM-L6-v2")
    p.add_argument("--pinpoint", default="target/release/pinpoint")
    a = p.parse_args()
    model = os.path.abspath(a.model)
    if os.path.exists(a.work):
        shutil.rmtree(a.work)
    folder = os.path.join(a.work, "src")
    os.makedirs(folder)
    queries = [json.loads(l)["text"] for l in open(os.path.join(a.beir, "queries.jsonl"))][:100]
    for i, line in enumerate(open(os.path.join(a.beir, "corpus.jsonl"))):
        if i >= a.docs:
            break
        d = json.loads(line)
        with open(os.path.join(folder, f"{d['_id']}.txt"), "w") as f:
            f.write(f"{d.get('title', '')}\n\n{d.get('text', '')}\n")
    rows = []
    t = time.time()
    subprocess.run([a.pinpoint, "index", folder, "--index", os.path.join(a.work, "single"), "--model", model,
                    "--progress", "none"], check=True, capture_output=True)
    single_s = time.time() - t
    rows.append(("`pinpoint index` (one process)", single_s))
    for nodes in (1, 2):
        cluster(nodes)
        out = os.path.join(a.work, f"sharded-{nodes}")
        t = time.time()
        subprocess.run([os.path.join(BIN, "pinpoint-ray"), "build", folder, out, "--shards", str(a.shards),
                        "--model", model, "--address", "127.0.0.1:6393"], check=True, capture_output=True)
        rows.append((f"`pinpoint-ray build --shards {a.shards}`, {nodes} worker node{'s' if nodes > 1 else ''}", time.time() - t))
        ray("stop", "--force")
    print(f"{a.docs} SciFact abstracts as files, {a.shards} shards, this machine ({os.cpu_count()} cores)")
    print("| build | seconds | vs one process |")
    print("| --- | --- | --- |")
    for name, s in rows:
        print(f"| {name} | {s:.1f} | {single_s / s:.2f}x |")
    single = pinpoint.Index(os.path.join(a.work, "single"), model=model, read_only=True)
    shards = [pinpoint.Index(os.path.join(a.work, "sharded-2", f"shard-{i}"), model=model, read_only=True)
              for i in range(a.shards)]

    def timed(f):
        for q in queries[:5]:
            f(q)
        s = []
        for q in queries:
            t = time.perf_counter()
            f(q)
            s.append((time.perf_counter() - t) * 1e3)
        s.sort()
        return s[len(s) // 2], s[int(len(s) * 0.95)]

    one = timed(lambda q: single.search(q, k=5))
    many = timed(lambda q: pinpoint.search_many(shards, q, k=5))
    print("| query (warm, 100 SciFact questions) | p50 ms | p95 ms |")
    print("| --- | --- | --- |")
    print(f"| one index | {one[0]:.1f} | {one[1]:.1f} |")
    print(f"| {a.shards} shards fanned out in one process | {many[0]:.1f} | {many[1]:.1f} |")


if __name__ == "__main__":
    main()
