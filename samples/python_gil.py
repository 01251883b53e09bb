"""Why threads do not speed up CPU-bound Python code.

CPython has a global interpreter lock (GIL): only one thread executes Python
bytecode at a time, so two threads doing arithmetic take as long as one.
Threads still help for I/O-bound work because the lock is released while
waiting on sockets or files. For CPU-bound work, use multiprocessing, which
runs separate interpreters in separate processes, each with its own lock.
"""

import multiprocessing
import threading


def count_primes(limit):
    """Counts primes below limit by trial division (deliberately CPU-bound)."""
    found = 0
    for n in range(2, limit):
        if all(n % d for d in range(2, int(n ** 0.5) + 1)):
            found += 1
    return found


def run_with_threads(limit, workers=4):
    threads = [threading.Thread(target=count_primes, args=(limit,)) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def run_with_processes(limit, workers=4):
    with multiprocessing.Pool(workers) as pool:
        return pool.map(count_primes, [limit] * workers)
