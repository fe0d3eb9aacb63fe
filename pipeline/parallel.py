"""Reading parts of a scan elsewhere: local worker processes, or a Dask cluster.

Both are :class:`~pipeline.engine.Runner` implementations. Workers do the stateless work
(reading, decompressing, prefiltering, parsing, line-rule matching) on whole inputs and on
byte ranges of large plain files; results come back in input order, and the one detector
of the scan, in this process, sees every event in the same order as a scan without workers.
So findings are identical, also for correlation rules, joins and suppression.

At most ``2 × workers`` parts are in flight, so memory stays bounded however many inputs
there are.
"""

from __future__ import annotations

import io
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta, timezone, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

from pipeline.engine import PART_SIZE
from pipeline.errors import LogwardenError, UsageError
from pipeline.sources.files import STDIN, is_url

if TYPE_CHECKING:
    from concurrent.futures import Future

    from pipeline.detection.model import Rule
    from pipeline.engine import BlockPart, Engine, Part, PartResult, ScanOptions

#: parts submitted ahead of the one being consumed, per worker
AHEAD_PER_WORKER = 2


class WorkerError(LogwardenError):
    """A worker process or a Dask task failed; the scan cannot be complete."""


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


_T = TypeVar("_T")


def _in_order(
    submit: Callable[[Part], Any],
    result: Callable[[Any], _T],
    parts: Sequence[Part],
    ahead: int,
) -> Iterator[_T]:
    """Results of ``parts`` in order, with at most ``ahead`` submitted and not yet taken."""
    pending: deque[Any] = deque()
    todo = iter(parts)
    for part in todo:
        pending.append(submit(part))
        if len(pending) >= ahead:
            break
    while pending:
        done = result(pending.popleft())
        nxt = next(todo, None)
        if nxt is not None:
            pending.append(submit(nxt))
        yield done


# -- worker processes on this machine ---------------------------------------------------------

_WORKER_ENGINE: Engine | None = None


def _init_worker(engine: Engine) -> None:
    global _WORKER_ENGINE
    engine.progress = None
    _WORKER_ENGINE = engine


def _run_in_worker(part: Part) -> PartResult:
    assert _WORKER_ENGINE is not None
    return _WORKER_ENGINE.run_part(part)


def _run_blocks_in_worker(part: Part) -> BlockPart:
    assert _WORKER_ENGINE is not None
    return _WORKER_ENGINE.run_block_part(part)


class ProcessRunner:
    """``scan --workers N``: N processes on this machine (forked, so rules load once)."""

    def __init__(self, workers: int, part_size: int = PART_SIZE) -> None:
        if workers < 1:
            raise UsageError("--workers must be at least 1")
        self.workers = workers
        self.part_size = part_size

    #: it can read parts on the block path (:meth:`run_blocks`)
    blocks = True

    def run(self, engine: Engine, parts: Sequence[Part]) -> Iterator[PartResult]:
        return self._run(engine, parts, _run_in_worker)

    def run_blocks(self, engine: Engine, parts: Sequence[Part]) -> Iterator[BlockPart]:
        """The parts read on the block path (:meth:`Engine.run_block_part`), in order."""
        return self._run(engine, parts, _run_blocks_in_worker)

    def _run(
        self, engine: Engine, parts: Sequence[Part], work: Callable[[Part], _T]
    ) -> Iterator[_T]:
        # imported here: a scan in this process does not pay for multiprocessing
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(
            self.workers, mp_context=ctx, initializer=_init_worker, initargs=(engine,)
        ) as pool:

            def result(f: Future[_T]) -> _T:
                try:
                    return f.result()
                except BrokenProcessPool:
                    raise WorkerError(
                        "a worker process died while reading (killed, or out of memory?)",
                        hint="run again with fewer --workers, or without",
                    ) from None

            yield from _in_order(
                lambda p: pool.submit(work, p),
                result,
                parts,
                AHEAD_PER_WORKER * self.workers,
            )


# -- Dask ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineSpec:
    """What a Dask worker needs to build the scan's engine: the rules, the options, and
    the time zone of local-time logs as data (the worker's own zone may differ, and a zone
    read from /etc/localtime cannot be pickled)."""

    token: str
    rules: list[Rule]
    options: ScanOptions
    zone: tuple[str, str | bytes]

    @classmethod
    def of(cls, token: str, engine: Engine) -> EngineSpec:
        return cls(token, engine.rules, replace(engine.options, tz=None), _zone_data(engine.tz))

    def engine(self) -> Engine:
        from pipeline.engine import Engine

        return Engine(self.rules, replace(self.options, tz=_zone_from(self.zone)))


def _zone_data(tz: tzinfo) -> tuple[str, str | bytes]:
    key = getattr(tz, "key", None)
    if isinstance(tz, ZoneInfo) and key and key != "localtime":
        return ("key", key)
    if isinstance(tz, ZoneInfo):
        try:
            return ("file", Path("/etc/localtime").read_bytes())
        except OSError:
            pass
    offset = tz.utcoffset(None)
    return ("offset", str(offset.total_seconds() if offset is not None else 0))


def _zone_from(data: tuple[str, str | bytes]) -> tzinfo:
    kind, value = data
    if kind == "key":
        return ZoneInfo(str(value))
    if kind == "file":
        return ZoneInfo.from_file(io.BytesIO(bytes(value)), key="localtime")  # type: ignore[arg-type]
    return timezone(timedelta(seconds=float(value)))


_DASK_ENGINES: dict[str, Engine] = {}


@dataclass(frozen=True)
class _Done:
    """A part already read here, in the shape of a future."""

    value: PartResult

    def result(self) -> PartResult:
        return self.value


def _portable(part: Part) -> Part:
    """The part with a relative local path made absolute (workers may run elsewhere),
    still shown as given."""
    inp = part.inp
    if is_url(inp.path) or os.path.isabs(inp.path):
        return part
    return replace(part, inp=replace(inp, path=os.path.abspath(inp.path), label=inp.display))


def _run_on_dask_worker(spec: EngineSpec, part: Part) -> PartResult:
    engine = _DASK_ENGINES.get(spec.token)
    if engine is None:
        _DASK_ENGINES.clear()
        engine = _DASK_ENGINES[spec.token] = spec.engine()
    return engine.run_part(part)


class DaskRunner:
    """``scan --engine dask``: parts run as Dask tasks.

    With ``scheduler`` (``tcp://host:8786``) on that cluster, whose workers must be able
    to read the inputs (shared paths or fsspec URLs) and have logwarden installed; without,
    on a :class:`distributed.LocalCluster` of ``workers`` processes started for the scan.
    """

    def __init__(
        self, scheduler: str | None = None, workers: int = 2, part_size: int = PART_SIZE
    ) -> None:
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise UsageError(
                "--engine dask needs dask.distributed", hint="install logwarden[dask]"
            ) from None
        self.scheduler = scheduler
        self.workers = workers
        self.part_size = part_size

    def _client(self) -> tuple[Any, Any]:
        import importlib

        dist: Any = importlib.import_module("distributed")  # untyped: keep mypy strict here
        Client, LocalCluster = dist.Client, dist.LocalCluster
        if self.scheduler:
            try:
                return Client(self.scheduler, timeout="10s"), None
            except (OSError, TimeoutError) as exc:
                raise UsageError(
                    f"cannot reach the Dask scheduler {self.scheduler}: {exc}"
                ) from None
        cluster = LocalCluster(
            n_workers=self.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
        return Client(cluster), cluster

    def run(self, engine: Engine, parts: Sequence[Part]) -> Iterator[PartResult]:
        import uuid

        client, cluster = self._client()
        try:
            if self.scheduler:
                # a remote cluster's size decides how far ahead to submit
                self.workers = max(1, len(client.scheduler_info().get("workers", {})))
            spec = EngineSpec.of(uuid.uuid4().hex, engine)
            shared = client.scatter(spec, broadcast=True)

            def submit(part: Part) -> Any:
                if part.inp.path == STDIN:
                    return _Done(engine.run_part(part))  # only this process has the stdin
                return client.submit(_run_on_dask_worker, shared, _portable(part), pure=False)

            def result(f: Any) -> PartResult:
                try:
                    got: PartResult = f.result()
                except Exception as exc:  # a task's error, raised again here by dask
                    raise WorkerError(
                        f"a Dask task failed: {type(exc).__name__}: {exc}",
                        hint="every worker needs logwarden (the same version) and must be "
                        "able to read the inputs",
                    ) from None
                return got

            yield from _in_order(submit, result, parts, AHEAD_PER_WORKER * self.workers)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def runner_for(
    workers: int | None, engine: str = "local", scheduler: str | None = None
) -> ProcessRunner | DaskRunner | None:
    """Where a scan reads its inputs: here (None), worker processes, or Dask.

    ``workers`` 0 means one per usable CPU; unset, 1 locally and one per CPU on Dask.
    """
    if engine not in ("local", "dask"):
        raise UsageError(f"unknown engine {engine!r}", hint="use local or dask")
    if engine == "dask" or scheduler:
        return DaskRunner(scheduler, workers or usable_cpus())
    n = usable_cpus() if workers == 0 else (workers or 1)
    return ProcessRunner(n) if n > 1 else None
