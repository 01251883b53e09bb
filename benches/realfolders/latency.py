#!/usr/bin/env python3
"""Query latency of a running `pinpoint serve` on a book's questions.

Why: `measure.py` says what a book's questions get; this says how long they take through
the server a user or agent would call (one client, one request at a time, so the figure
is a request's latency, not throughput). Each question is asked once to warm up, then
ten times; p50 and p95 over all of them, in milliseconds.

Usage:
    pinpoint serve --index IDX --addr 127.0.0.1:7711 --quiet --threads 1 &
    latency.py 7711 QUESTIONS.jsonl [MORE.jsonl ...]
Standard library only.
"""
import json
import sys
import time
import urllib.request


def ask(port, query):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/query",
        data=json.dumps({"query": query, "k": 5}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def main():
    port = sys.argv[1]
    questions = []
    for path in sys.argv[2:]:
        questions += [json.loads(line)["query"] for line in open(path) if line.strip()]
    for q in questions:
        ask(port, q)
    times = []
    for _ in range(10):
        for q in questions:
            t = time.perf_counter()
            ask(port, q)
            times.append((time.perf_counter() - t) * 1000)
    times.sort()
    print(f"requests {len(times)}  p50 {times[len(times) // 2]:.2f} ms  "
          f"p95 {times[int(len(times) * 0.95)]:.2f} ms")


if __name__ == "__main__":
    main()
