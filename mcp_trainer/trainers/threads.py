"""How many BLAS and OpenMP threads a training process runs.

OpenBLAS restarts its thread pool in a forked process the first time the thread count is set there (or a
BLAS call runs with more than one thread), and the new threads busy-wait for ~50-100 ms each before they
sleep: on a 2-core machine that halved the speed of the first trials of every process of a parallel
search. Workers are forked from the forkserver, and parallel trials, timed trials and plot helpers from
the worker, so the BLAS thread count is set once, in the forkserver before any fork, to one thread
(`one_blas_thread`), and a forked process sets it again only where it must (`limit_threads`).

One BLAS thread per process costs little here: the scikit-learn models spend their time in libsvm, trees
or OpenMP code, and a search's processes fill the cores. OpenMP (histogram gradient boosting) keeps its
default of one thread per CPU outside parallel searches; setting it after a fork starts nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from threadpoolctl import ThreadpoolController

__all__ = ["limit_threads", "one_blas_thread", "remember_thread_pools"]

# The thread pools of the libraries loaded by the forkserver's preload, found once there: finding them
# walks every loaded shared object (~4 ms, twice a task). None: found afresh at each use.
_KNOWN: ThreadpoolController | None = None


def remember_thread_pools() -> None:
    """Find the loaded libraries' thread pools once, for every process forked from this one (call it
    after the training stack is imported). Their thread counts are still read live at each use."""
    global _KNOWN
    _KNOWN = ThreadpoolController()


def one_blas_thread() -> None:
    """Run BLAS (numpy's and scipy's OpenBLAS) on one thread in this process and every process it forks."""
    ThreadpoolController().select(user_api="blas").limit(limits=1)


@contextmanager
def limit_threads(n: int) -> Iterator[None]:
    """At most `n` OpenMP threads, and `n` BLAS threads, in this process and what it forks meanwhile.

    Only the libraries running more than `n` threads are set, and only they are restored afterwards
    (`threadpoolctl.threadpool_limits` restores every library it sees, BLAS included, which in a forked
    process restarts OpenBLAS's pool: see the module docstring)."""
    controller = _KNOWN or ThreadpoolController()
    with ExitStack() as stack:
        for api in ("openmp", "blas"):
            over = [lib for lib in controller.select(user_api=api).lib_controllers if lib.num_threads > n]
            if over:
                names = [lib.filepath for lib in over]
                stack.enter_context(controller.select(filepath=names).limit(limits=n))
        yield
