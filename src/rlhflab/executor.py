"""Where workers run: in this process (the default) or on a Ray cluster (`executor=ray`).

The loop's code is the same on both. It starts workers — plain classes (a rollout worker
stepping a shard of the envs, …) — with `start`, calls their methods with `Worker.call`, waits
with `gather`, and runs a function over items as independent tasks with `map` (reward-ensemble
members, the seeds of a sweep). `LocalExecutor` makes each worker the object itself and runs
every call at once, in order. `RayExecutor` wraps the class with `ray.remote` at launch, so
each worker is an actor in its own process (on any node of the cluster) and calls to several
workers run in parallel. This is veRL's single controller (Sheng et al. 2024, HybridFlow): the
driver holds the algorithm, workers hold envs and models, and the same algorithm code runs
locally or on a cluster.

Results do not depend on the backend: a worker's randomness comes from the seed it is
started with, arguments are passed by value on both (copied locally, serialised on Ray), and
`gather` returns results in the order of the calls.

Faults: an address with no Ray cluster behind it is an `ExecutorError` naming the address,
raised before the run touches its directory. A worker process that dies (killed, out of
memory, its node lost) is restarted by Ray up to `max_restarts` times — the class is
constructed again with its arguments, so a rollout worker's envs start afresh from their seeds
— and the call it held is retried on the new process (Ray's `max_restarts` and
`max_task_retries`). Past that, or with `max_restarts=0`, the death is a `WorkerLost` naming
the worker, which the control loop turns into a stop with a checkpoint (`rlhflab run --resume`
continues on fresh workers). Tasks (`map`) are stateless and retried by Ray.
"""

from __future__ import annotations

import copy
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from rlhflab.config import ExecutorConfig


class ExecutorError(RuntimeError):
    """The executor cannot start (no Ray installed, no cluster at the address)."""


class WorkerLost(RuntimeError):
    """A worker's process died while it held a call."""


class Pending(Protocol):
    """A call that was made; `Executor.gather` waits for its result."""


class Worker:
    """A started worker: `call(method, *args)` runs one of its methods (asynchronously on Ray)."""

    def __init__(self, name: str, handle: Any, executor: Executor):
        self.name, self.handle, self.executor = name, handle, executor

    def call(self, method: str, *args: Any) -> Pending:
        return self.executor._call(self, method, args)


class Executor:
    """Runs workers and tasks; `LocalExecutor` and `RayExecutor` are the backends."""

    backend = "?"

    def start(self, cls: type, *args: Any, name: str) -> Worker:
        """A worker: an instance of `cls(*args)`, wherever the backend puts it."""
        raise NotImplementedError

    def _call(self, worker: Worker, method: str, args: tuple) -> Pending:
        raise NotImplementedError

    def gather(self, calls: Sequence[Pending]) -> list:
        """The results of the calls, in their order; `WorkerLost` if a worker died."""
        raise NotImplementedError

    def map(self, fn: Callable, items: Sequence) -> list:
        """[fn(item) for item in items] as independent tasks (in parallel on Ray)."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop the workers this executor started."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Done:
    """A local call: already run."""

    def __init__(self, value: Any):
        self.value = value


class LocalExecutor(Executor):
    """Workers are objects in this process; calls and tasks run at once, one after another.
    Arguments are copied, as Ray serialises them: a worker never shares the caller's objects."""

    backend = "local"

    def start(self, cls: type, *args: Any, name: str) -> Worker:
        return Worker(name, cls(*copy.deepcopy(args)), self)

    def _call(self, worker: Worker, method: str, args: tuple) -> Pending:
        return _Done(getattr(worker.handle, method)(*copy.deepcopy(args)))

    def gather(self, calls: Sequence[Pending]) -> list:
        return [c.value for c in calls]  # type: ignore[attr-defined]

    def map(self, fn: Callable, items: Sequence) -> list:
        return [fn(copy.deepcopy(item)) for item in items]


class RayExecutor(Executor):
    """Workers are Ray actors and tasks Ray tasks. Connects to the cluster at `address`
    (`ray.init(address=...)`: "auto", "ray://host:10001", "host:6379"), or, without one,
    starts a local cluster of `cpus` CPUs (default: the machine's). A Ray already initialised
    in this process (a test's cluster) is used as it is, and left running at `close`."""

    backend = "ray"

    def __init__(self, address: str | None = None, cpus: int | None = None, max_restarts: int = 2):
        try:
            import ray
        except ImportError:
            raise ExecutorError(
                "executor=ray needs Ray: pip install 'rlhflab[ray]' (or pip install ray)"
            ) from None
        self.ray: Any = ray  # imported here: Ray is an optional extra
        self.max_restarts = max_restarts
        self.owned = not ray.is_initialized()
        self.workers: list[Worker] = []
        self._names: dict = {}  # the worker each pending call went to, to name a dead one
        if not self.owned:
            return
        # the workers import rlhflab as this process does (a source checkout on PYTHONPATH)
        env = {k: os.environ[k] for k in ("PYTHONPATH",) if k in os.environ}
        try:
            if address is None:
                ray.init(
                    num_cpus=cpus or os.cpu_count(),
                    include_dashboard=False,
                    log_to_driver=False,
                    runtime_env={"env_vars": env},
                )
            else:
                _reachable(address)  # Ray itself retries an unreachable address for minutes
                ray.init(address=address, log_to_driver=False, runtime_env={"env_vars": env})
        except (OSError, RuntimeError, ValueError) as exc:
            if ray.is_initialized():
                ray.shutdown()
            where = "a local Ray cluster" if address is None else f"executor.address {address!r}"
            raise ExecutorError(f"{where}: cannot connect to a Ray cluster ({exc})") from None

    def start(self, cls: type, *args: Any, name: str) -> Worker:
        # a dead worker is made again from (cls, args) and its pending calls retried, up to
        # max_restarts times; then its death is a WorkerLost
        n = self.max_restarts
        actor = self.ray.remote(cls).options(max_restarts=n, max_task_retries=n).remote(*args)
        worker = Worker(name, actor, self)
        self.workers.append(worker)
        return worker

    def _call(self, worker: Worker, method: str, args: tuple) -> Pending:
        ref = getattr(worker.handle, method).remote(*args)
        self._names[ref] = worker.name
        return ref

    def gather(self, calls: Sequence[Pending]) -> list:
        from ray.exceptions import RayActorError

        try:
            return self.ray.get(list(calls))
        except RayActorError as exc:
            dead = [self._names.get(c, "a worker") for c in calls if self._failed(c)]
            raise WorkerLost(
                f"{', '.join(dead) or 'a worker'} died in the middle of a call "
                f"({type(exc).__name__}: {str(exc).splitlines()[0]})"
            ) from None
        finally:
            for c in calls:
                self._names.pop(c, None)

    def _failed(self, ref: Any) -> bool:
        from ray.exceptions import RayError

        try:
            self.ray.get(ref, timeout=0)
        except RayError:
            return True
        except Exception:  # noqa: BLE001 — any other outcome (timeout, result) is not a death
            return False
        return False

    def map(self, fn: Callable, items: Sequence) -> list:
        task = self.ray.remote(fn)
        return self.ray.get([task.remote(item) for item in items])

    def close(self) -> None:
        for worker in self.workers:
            self.ray.kill(worker.handle)
        self.workers.clear()
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()


def _reachable(address: str, timeout: float = 5.0) -> None:
    """A host:port address (also ray://host:port) must accept a TCP connection; "auto" and
    other forms are left to Ray."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    with socket.create_connection((host, int(port)), timeout=timeout):
        pass


def make_executor(cfg: ExecutorConfig) -> Executor:
    """The executor a run's `executor` config section asks for."""
    if cfg.backend == "ray":
        return RayExecutor(cfg.address, cfg.cpus, cfg.max_restarts)
    return LocalExecutor()
