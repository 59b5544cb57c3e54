"""samplers._threads.host_threads and map_blocks: numpy passes shared out over threads."""
import os
import select
import signal
import threading

import numpy as np
import pytest

from samplers import _threads
from samplers._threads import host_threads, map_blocks


def test_every_part_is_done_once_and_the_caller_takes_a_share():
    seen, names = [], set()
    lock = threading.Lock()

    def work(part):
        with lock:
            seen.append(part)
            names.add(threading.current_thread().name)

    map_blocks(work, range(10), threads=3)
    assert sorted(seen) == list(range(10))
    assert threading.current_thread().name in names and len(names) <= 3


def test_parts_write_disjoint_slices_of_one_output():
    out = np.zeros(100)
    map_blocks(lambda part: out.__setitem__(part, part.start), [slice(s, s + 7)
                                                                for s in range(0, 100, 7)], 4)
    np.testing.assert_array_equal(out, np.arange(100) // 7 * 7)


def test_an_exception_in_a_worker_is_raised_to_the_caller():
    def work(part):
        if part == 5:
            raise RuntimeError('part 5')

    with pytest.raises(RuntimeError, match='part 5'):
        map_blocks(work, range(8), threads=2)


def test_one_thread_runs_inline_and_zero_threads_is_a_value_error():
    names = []
    map_blocks(lambda part: names.append(threading.current_thread().name), range(3), threads=1)
    assert set(names) == {threading.current_thread().name}
    with pytest.raises(ValueError, match='threads'):
        map_blocks(lambda part: None, range(3), threads=0)


@pytest.mark.parametrize('value, want', [('1', 1), ('3', 3), ('100', _threads.MAX_HOST_THREADS),
                                         ('0', 1)])
def test_omp_num_threads_sets_the_thread_count(monkeypatch, value, want):
    monkeypatch.setenv('OMP_NUM_THREADS', value)
    assert host_threads() == want


def test_without_omp_num_threads_the_usable_cpus_count(monkeypatch):
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    assert host_threads() == max(1, min(len(os.sched_getaffinity(0)), _threads.MAX_HOST_THREADS))


@pytest.mark.skipif(not hasattr(os, 'fork'), reason='needs fork')
def test_a_forked_child_builds_its_own_pool():
    map_blocks(lambda part: None, range(4), threads=2)  # the parent's pool exists
    read, write = os.pipe()
    ready = []
    pid = os.fork()
    if pid == 0:  # the child: the parent's pool threads are not here; this must not hang
        out = np.zeros(4)
        map_blocks(lambda part: out.__setitem__(part, 1), range(4), threads=2)
        os.write(write, b'ok' if out.all() else b'no')
        os._exit(0)
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], 60)
        assert ready, 'the forked child hung in map_blocks'
        assert os.read(read, 2) == b'ok'
    finally:
        if not ready:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read)


def test_growing_the_pool_leaves_the_smaller_one_usable():
    # Another thread may have fetched the smaller pool and not yet submitted to it.
    small = _threads._pool(2)
    _threads._pool(_threads._POOL['size'] + 3)
    assert _threads._POOL['pool'] is not small
    assert small.submit(lambda: 7).result(timeout=30) == 7
