"""Run a batch: send the slides to a Dask cluster and collect the cohort report.

:func:`run_batch` skips the slides whose outputs are complete, connects to a
new local cluster or to a running scheduler, submits one
:func:`~napari_ihcseg.batch.worker.score_slide` task per remaining slide,
records each result as it comes in, and writes ``cohort.csv``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from napari_ihcseg.pipeline import PipelineOptions, output_paths, outputs_complete

from ..output_set import check_stems
from .report import COHORT_NAME, BatchReport, SlideResult, one_line_error, write_cohort
from .worker import ModelFactory, score_slide

#: Memory limit of each local worker process.
DEFAULT_MEMORY_LIMIT = "4GB"

ProgressCallback = Callable[[int, int], None]


def _skipped(slide: Path, stem: str, out_dir: Path, status: str = "skipped") -> SlideResult:
    """The result of a slide whose outputs are complete: done before (skipped), or by a task now stopped."""
    from napari_ihcseg._json_file import read_json

    summary = read_json(output_paths(out_dir, stem)["summary"])
    return SlideResult(slide, stem, status, seconds=summary.get("seconds"), summary=summary)


def _finished_while_stopping(out_dir: Path, stem: str, options: PipelineOptions, slide: Path, since: float) -> bool:
    """Whether a slide cancelled when the batch stopped was written whole by its task meanwhile (since ``since``)."""
    summary = output_paths(out_dir, stem)["summary"]
    try:
        fresh = summary.stat().st_mtime >= since
    except OSError:
        return False
    return fresh and outputs_complete(out_dir, stem, options, image=slide)


def _collect(future, slide: Path, stem: str) -> SlideResult:
    """A finished task's result; a task that died with its worker counts as failed."""
    if future.status != "finished":
        exc = future.exception() if future.status == "error" else None
        error = one_line_error(exc) if exc is not None else f"task {future.status}"
        if type(exc).__name__ == "KilledWorker":
            error = "its worker died repeatedly (out of memory? see --memory-limit): " + error
        return SlideResult(slide, stem, "failed", error=error)
    out = future.result()
    return SlideResult(slide, stem, out["status"], error=out.get("error", ""), seconds=out.get("seconds"),
                       summary=out.get("summary"))


def _count_finished_while_stopping(results: dict, out_dir: Path, options: PipelineOptions, *, since: float) -> None:
    """Mark ``ok`` the cancelled slides of ``results`` (index -> SlideResult) whose task wrote them whole since
    ``since`` (:func:`_finished_while_stopping`)."""
    for i, result in list(results.items()):
        if result.status == "cancelled" and _finished_while_stopping(out_dir, result.stem, options, result.slide,
                                                                     since):
            try:
                results[i] = _skipped(result.slide, result.stem, out_dir, status="ok")
            except (OSError, ValueError):  # still being replaced by a task on a remote worker
                pass


def _check_memory_limit(memory_limit) -> None:
    if isinstance(memory_limit, str) and memory_limit != "auto":
        from dask.utils import parse_bytes

        try:
            parse_bytes(memory_limit)
        except (ValueError, TypeError):
            raise ValueError(f"memory limit {memory_limit!r}: expected a size such as '4GB' or 'auto'") from None


class _Connection:
    """A client on a new local cluster or on a running scheduler; closes what it opened."""

    def __init__(self, scheduler, workers: int, memory_limit, connect_timeout: float) -> None:
        import dask
        from distributed import Client, LocalCluster

        self.cluster = None
        self.owns_client = not isinstance(scheduler, Client)
        if not self.owns_client:
            self.client = scheduler
        elif scheduler is None:
            # One retry for a slide whose worker died, not the default three.
            with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
                self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                            memory_limit=memory_limit)
            self.client = Client(self.cluster)
        else:
            try:
                self.client = Client(str(scheduler), timeout=connect_timeout)
            except ValueError as exc:
                raise ValueError(f"scheduler {scheduler!r}: {exc}") from None
            except OSError as exc:
                raise ConnectionError(f"cannot reach the scheduler at {scheduler}: {exc}") from None

    def close(self) -> None:
        if self.owns_client:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _is_set(cancel) -> bool:
    return bool(cancel.is_set() if hasattr(cancel, "is_set") else cancel())


def run_batch(
    slides: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    options: PipelineOptions | None = None,
    *,
    workers: int = 2,
    scheduler=None,
    memory_limit: str | int | None = DEFAULT_MEMORY_LIMIT,
    force: bool = False,
    model_factory: ModelFactory | None = None,
    progress: ProgressCallback | None = None,
    cancel=None,
    on_slide: Callable[[SlideResult], None] | None = None,
    notify: Callable[[str], None] | None = None,
    connect_timeout: float = 30.0,
) -> BatchReport:
    """Segment and score every slide on a Dask cluster and write ``cohort.csv``.

    Parameters
    ----------
    slides : iterable of path-like
        The slides (see :func:`~napari_ihcseg.batch.find_slides`). Every
        worker must see these paths and ``out_dir`` (a shared file system on
        a multi-machine cluster).
    out_dir : path-like
        Per-slide outputs (as ``ihcseg segment``) and ``cohort.csv`` go here.
    options : PipelineOptions, optional
        Model, tiling and scoring options, the same for every slide.
    workers : int
        Worker processes of the local cluster (one thread each).
    scheduler : str or distributed.Client, optional
        A running scheduler's address (``"tcp://host:8786"``) or a client;
        ``None`` starts a local cluster.
    memory_limit : str or int or None
        Per local worker (``"4GB"``, bytes, ``"auto"``; ``None`` or 0: none).
    force : bool
        Redo slides whose outputs are already complete.
    model_factory : str or callable, optional
        Instead of ``options.model``: a ``"module:attr"`` the workers can
        import, or a picklable callable, that returns an ``nn.Module``
        following the model contract (used by tests and custom models).
    progress : callable, optional
        ``progress(done, total)`` in slides.
    cancel : threading.Event or callable, optional
        When set, slides not finished yet are cancelled (status ``cancelled``).
    on_slide : callable, optional
        Called with each :class:`~napari_ihcseg.batch.SlideResult` as it is
        known.
    notify : callable, optional
        Called with one-line messages (dashboard link, resumed slides).
    connect_timeout : float
        Seconds to wait for a remote scheduler.

    Returns
    -------
    BatchReport

    Raises
    ------
    ValueError
        For bad arguments: no slide, two slides with the same output stem,
        a malformed scheduler address or memory limit.
    ConnectionError
        When the scheduler cannot be reached.

    Examples
    --------
    >>> from napari_ihcseg.pipeline import PipelineOptions
    >>> report = run_batch(find_slides("slides/"), "results/",
    ...                    PipelineOptions(stain="ki67"), workers=4)  # doctest: +SKIP
    >>> report.counts  # doctest: +SKIP
    {'ok': 118, 'skipped': 40, 'failed': 2, 'cancelled': 0}
    """
    started, started_wall = time.perf_counter(), time.time()
    options = options or PipelineOptions()
    if scheduler is not None:
        options = _for_remote_workers(options)
    slides = [Path(s).expanduser().resolve() for s in slides]
    if not slides:
        raise ValueError("no slide to score")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers: expected a positive integer, got {workers!r}")
    _check_memory_limit(memory_limit)
    stems = check_stems(slides)
    out_dir = Path(out_dir).expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    say = notify or (lambda message: None)

    results: dict[int, SlideResult] = {}
    total = len(slides)

    def record(i: int, result: SlideResult) -> None:
        results[i] = result
        if on_slide is not None:
            on_slide(result)
        if progress is not None:
            progress(len(results), total)

    todo = []
    for i, (slide, stem) in enumerate(zip(slides, stems)):
        if not force and outputs_complete(out_dir, stem, options, image=slide):
            record(i, _skipped(slide, stem, out_dir))
        elif not slide.is_file():
            record(i, SlideResult(slide, stem, "failed", error="no such file"))
        else:
            todo.append(i)
    skipped = sum(r.status == "skipped" for r in results.values())
    if skipped:
        say(f"{skipped} of {total} slides are already done and are skipped (--force redoes them)")

    address, link, interrupted = "", None, False
    if todo:
        from distributed import as_completed

        connection = _Connection(scheduler, workers, memory_limit, connect_timeout)
        try:
            client = connection.client
            address, link = client.scheduler.address, client.dashboard_link
            say(f"dashboard: {link}")
            if not client.scheduler_info().get("workers"):
                say(f"no worker is connected to {address} yet; the slides wait for one")
            # Keys unique to this run on a shared scheduler, all in one task group
            # ("ihcseg-slide"), so that the scheduler queues them and hands each
            # to the next free worker.
            run_id = uuid.uuid4().hex[:8]
            futures = {
                client.submit(score_slide, str(slides[i]), str(out_dir), options, model_factory,
                              key=f"ihcseg-slide-{run_id}-{i}", pure=False): i
                for i in todo
            }
            pending = as_completed(futures)
            try:
                while not pending.is_empty():
                    if cancel is not None and _is_set(cancel):
                        break
                    batch = pending.next_batch(block=False)
                    if not batch:
                        time.sleep(0.1)
                    for future in batch:
                        i = futures[future]
                        record(i, _collect(future, slides[i], stems[i]))
                        future.release()
            except KeyboardInterrupt:
                interrupted = True
            left = [f for f, i in futures.items() if i not in results]
            if left:
                client.cancel(left)
                for future in left:
                    i = futures[future]
                    record(i, SlideResult(slides[i], stems[i], "cancelled", error="not run: the batch was stopped"))
        finally:
            connection.close()
        # A task may finish its slide while the batch stops: the cohort says what is on disk.
        _count_finished_while_stopping(results, out_dir, options, since=started_wall)

    report = BatchReport(tuple(results[i] for i in range(total)), out_dir / COHORT_NAME,
                         scheduler=address, dashboard_link=link,
                         seconds=round(time.perf_counter() - started, 3))
    write_cohort(report.cohort_path, report.results)
    if interrupted:
        raise KeyboardInterrupt
    return report


def _for_remote_workers(options: PipelineOptions) -> PipelineOptions:
    """``options`` with the region file and a checkpoint folder given as absolute paths.

    Remote workers run in folders of their own: a relative ``roi`` or
    ``model`` path would name another file there, or none. Names of shipped
    checkpoints and architectures, which are not files here, are kept.
    """
    changes = {}
    if options.roi is not None and Path(options.roi).expanduser().is_file():
        changes["roi"] = str(Path(options.roi).expanduser().resolve())
    if options.model is not None and Path(str(options.model)).expanduser().is_dir():
        from napari_ihcseg.models.shipped import shipped_checkpoints  # torch: only for a folder of that name

        if str(options.model) not in shipped_checkpoints():
            changes["model"] = str(Path(str(options.model)).expanduser().resolve())
    return options.replace(**changes) if changes else options
