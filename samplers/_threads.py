"""The thread pool numpy passes share (:func:`map_blocks`), sized by :func:`host_threads`.

Its one user is :mod:`samplers.background`, which computes the background loss in blocks.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

__all__ = ['MAX_HOST_THREADS', 'host_threads', 'map_blocks']

#: At most this many threads share a numpy pass (:func:`map_blocks`).
MAX_HOST_THREADS = 8
_POOL = {'pid': None, 'pool': None, 'size': 0}
_POOL_LOCK = threading.Lock()


def host_threads():
    """Threads for a numpy pass over a large array: ``OMP_NUM_THREADS`` if set
    (the variable that also caps MXNet's CPU operators), else the CPUs this
    process may run on; at most :data:`MAX_HOST_THREADS`, at least 1."""
    wanted = os.environ.get('OMP_NUM_THREADS', '').strip()
    try:
        count = int(wanted) if wanted else len(os.sched_getaffinity(0))
    except (ValueError, AttributeError):  # a malformed variable, or no sched_getaffinity
        count = os.cpu_count() or 1
    return max(1, min(count, MAX_HOST_THREADS))


def map_blocks(fn, parts, threads=None):
    """``fn(part)`` for every item of ``parts``, shared out over ``threads``
    threads (default :func:`host_threads`), every ``threads``-th part to the
    same thread, the calling thread taking one share; returns None.

    For numpy work that releases the GIL and writes disjoint outputs; ``fn``
    must not call :func:`map_blocks` itself. One thread, or one part, runs
    inline. The pool is made per process, so a forked DataLoader worker
    builds its own; an exception in ``fn`` is raised here.
    """
    threads = host_threads() if threads is None else int(threads)
    if threads < 1:
        raise ValueError('threads must be >= 1, got {}'.format(threads))
    parts = list(parts)
    threads = min(threads, len(parts))
    if threads <= 1:
        for part in parts:
            fn(part)
        return
    runs = [parts[i::threads] for i in range(threads)]
    futures = [_pool(threads).submit(_each, fn, run) for run in runs[1:]]
    try:
        _each(fn, runs[0])  # this thread takes one share itself
    finally:
        for future in futures:
            future.result()


def _each(fn, parts):
    for part in parts:
        fn(part)


def _pool(size):
    """This process's thread pool with at least ``size - 1`` workers."""
    with _POOL_LOCK:
        if _POOL['pid'] != os.getpid():  # a forked child: the parent's threads are not here
            _POOL.update(pid=os.getpid(), size=0, pool=None)
        if _POOL['size'] < size - 1:
            # A smaller pool is dropped, not shut down: a call in another thread may still
            # be submitting to it (its idle threads end when it is collected).
            _POOL.update(size=size - 1, pool=ThreadPoolExecutor(
                size - 1, thread_name_prefix='samplers'))
        return _POOL['pool']

