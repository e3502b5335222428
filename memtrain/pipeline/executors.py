"""Where build-corpus runs its parallel tasks: this process, a local process pool, or a Ray cluster.

All three are `concurrent.futures.Executor`s, so the stages submit work the same way whatever runs it, and
each says how many tasks it runs at once (`slots`), which is all a stage needs to know to split its work,
and whether a task submitted now would start soon (`ready`: a local pool is still starting its workers).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor

from ..errors import ConfigError

EXECUTORS = ("local", "ray")
TASK_RETRIES = 3  # Ray runs a task again this often when its worker dies (a Python error is not retried)


class InlineExecutor(Executor):
    """Runs each task at once in this process: the one-worker stand-in for a pool."""

    fine_grained = True  # whether tasks of a few milliseconds pay off (per page, per batch)

    def slots(self, cpus_per_task: int = 1) -> int:
        return 1

    def ready(self) -> bool:
        return True

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # not BaseException: Ctrl-C must stop the caller at once
            future.set_exception(exc)
        return future


class ProcessPool(ProcessPoolExecutor):
    """A process pool that, when its `with` block fails, drops the tasks not started yet instead of running
    them all first (a build queues a round's NER batches at once)."""

    fine_grained = True

    def __init__(self, max_workers: int, **kwargs) -> None:
        super().__init__(max_workers, **kwargs)
        self.workers = max_workers
        self._started = threading.Event()
        # Starting the workers blocks whoever submits first (a forkserver answers once it has imported its
        # modules), so a thread of its own does it: the caller goes on working meanwhile (see `ready`).
        threading.Thread(target=self._start, name="memtrain-pool-start", daemon=True).start()

    def _start(self) -> None:
        try:
            futures = [self.submit(int) for _ in range(self.workers)]
            futures[0].exception()  # a worker has run its initializer
        except Exception:  # a broken or shut-down pool: the caller's own submits report it
            pass
        finally:
            self._started.set()

    def slots(self, cpus_per_task: int = 1) -> int:
        """Its worker processes (a local task uses one core, whatever `cpus_per_task` asks on Ray)."""
        return self.workers

    def ready(self) -> bool:
        """Whether a worker has started: until then a task waits, and cheap work is better done at once."""
        return self._started.is_set()

    def __exit__(self, exc_type, exc, tb):
        self.shutdown(wait=True, cancel_futures=exc_type is not None)
        return False


class RayExecutor(Executor):
    """Each task is a Ray task, so a build uses a cluster's CPUs rather than this machine's.

    `ray.init()` joins the cluster that `RAY_ADDRESS` names (or one `ray start` runs on this machine), or
    starts a local one. Tasks read the source and write their outputs by path: on a cluster, the source and
    OUT must be on storage every node sees. A task whose worker dies is run again (`TASK_RETRIES`), so its
    result arrives once; `task_options` gives Ray options (e.g. ``num_cpus``) to the tasks of a function.
    """

    fine_grained = False  # each task is a scheduling round trip: shards, batches, not pages

    def __init__(self, task_options: dict[Callable, dict] | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("executor 'ray' needs Ray: pip install 'memtrain[ray]'") from None
        self._ray = ray
        self._started_ray = not ray.is_initialized()
        if self._started_ray:
            ray.init(log_to_driver=False)
        self._task = ray.remote(max_retries=TASK_RETRIES)(_call)
        self._task_options = task_options or {}
        self._refs: list = []

    def ready(self) -> bool:
        return True

    def submit(self, fn, /, *args, **kwargs) -> Future:
        options = {"name": getattr(fn, "__name__", "task"), **self._task_options.get(fn, {})}
        ref = self._task.options(**options).remote(fn, *args, **kwargs)
        self._refs.append(ref)
        return ref.future()

    def cpus(self) -> int:
        """The cluster's CPUs at this moment (an autoscaling cluster may have more later)."""
        return int(self._ray.cluster_resources().get("CPU", 1))

    def slots(self, cpus_per_task: int = 1) -> int:
        """Tasks of `cpus_per_task` CPUs the cluster runs at once, asked now (so an autoscaled cluster is
        used as it grows)."""
        return max(1, self.cpus() // cpus_per_task)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if cancel_futures or not wait:
            for ref in self._refs:
                self._ray.cancel(ref)
        elif self._refs:
            self._ray.wait(self._refs, num_returns=len(self._refs))
        self._refs = []
        if self._started_ray:  # a cluster this executor started ends with it
            self._ray.shutdown()

    def __exit__(self, exc_type, exc, tb):
        self.shutdown(wait=exc_type is None, cancel_futures=exc_type is not None)
        return False


def _call(fn, *args, **kwargs):
    return fn(*args, **kwargs)


def make_executor(
    kind: str,
    workers: int,
    initializer=None,
    initargs=(),
    task_options: dict[Callable, dict] | None = None,
    preload: Sequence[str] = (),
) -> Executor:
    """`local`: `workers` worker processes, each set up by `initializer(*initargs)`, or this process when
    `workers` is 1 (no set-up: it is not a worker). `ray`: Ray tasks with `task_options` per function;
    `workers`, the set-up and `preload`, which tune local processes, do not apply (Ray sizes its pool to the
    cluster, and a task loads what it needs on its worker's first use).

    With `preload` (module names), local workers are forked from a server process that imported those
    modules once (multiprocessing's ``forkserver``), instead of each importing them anew, as spawned
    processes do: that saves every worker seconds of CPU (spaCy imports thinc, which imports torch). The
    server is one per process and imports the modules the first pool asked for."""
    if kind == "ray":
        return RayExecutor(task_options)
    if kind != "local":
        raise ConfigError(f"executor {kind!r} is unknown; available: {', '.join(EXECUTORS)}")
    if workers <= 1:
        return InlineExecutor()
    context = worker_context(preload)
    setup = (dict(os.environ), initializer, initargs)
    return ProcessPool(workers, mp_context=context, initializer=start_worker, initargs=setup)


def start_worker(environ: dict[str, str], initializer, initargs) -> None:
    """A local worker's first step: the environment as the pool's creator had it (a forkserver started
    earlier holds the one of its own start; multiprocessing passes the working directory itself), then
    `initializer(*initargs)`."""
    if os.environ != environ:
        os.environ.clear()
        os.environ.update(environ)
    if initializer is not None:
        initializer(*initargs)


def worker_context(preload: Sequence[str] = ()):
    """How local workers start. Never by forking this process: it may hold threads (tokenizers, torch) that
    fork would copy in a bad state. A ``forkserver`` is a fresh single-threaded interpreter that imports
    `preload` (and the main module, as a spawned worker would) and forks the workers from itself;
    ``spawn`` where there is no forkserver (Windows) or nothing to preload."""
    if not preload or "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["__main__", *preload])
    return context


def resolve_workers(workers: int) -> int:
    """0 means every core of this machine."""
    return workers or os.cpu_count() or 1
