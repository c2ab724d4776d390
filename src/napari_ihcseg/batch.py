"""Batch scoring of slide folders on a Dask cluster, resumable, with a cohort report.

:func:`run_batch` sends every slide to a ``dask.distributed`` cluster as one
task: a local cluster of worker processes by default, or any running scheduler
(``dask scheduler``, dask-jobqueue, Kubernetes). A task gets the slide's *path*
and opens the file itself, so nothing unpicklable (tifffile's zarr stores, lazy
images) crosses the network; whole slides are segmented block by block from
disk by :func:`napari_ihcseg.pipeline.process_image`, which writes the same
per-slide outputs as ``ihcseg segment``. Each worker loads the model once and
keeps it for the following slides.

A re-run skips every slide whose outputs are complete
(:func:`~napari_ihcseg.pipeline.outputs_complete`), so a killed batch resumes
where it stopped. ``cohort.csv`` gets one row per slide (:data:`COHORT_COLUMNS`);
a slide that fails is recorded with its error and does not stop the others.
"""

from __future__ import annotations

import csv
import os
import shutil
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from napari_ihcseg._atomic import atomic_path
from napari_ihcseg.pipeline import OUTPUT_SUFFIXES, PipelineOptions, image_stem, output_paths, outputs_complete

#: File endings (lower case) taken as slides when a folder is scanned.
SLIDE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".svs", ".btf", ".ome.tif", ".ome.tiff")
#: Name of the cohort report in the output folder.
COHORT_NAME = "cohort.csv"
#: Columns of the cohort report, in order.
COHORT_COLUMNS = (
    "slide", "stem", "status", "error", "seconds", "n_nuclei", "n_positive", "positive_percent",
    "ki67_index", "h_score", "allred_proportion_score", "allred_intensity_score", "allred_total_score",
    "interpretation", "model", "device",
)
#: Summary keys copied into the cohort report as they are.
SUMMARY_COLUMNS = COHORT_COLUMNS[5:14]
#: Memory limit of each local worker process.
DEFAULT_MEMORY_LIMIT = "4GB"
#: Longest error text kept in the report.
MAX_ERROR_CHARS = 300

ProgressCallback = Callable[[int, int], None]
#: A model factory: a ``"module:attr"`` string importable on the workers, or a picklable callable.
ModelFactory = str | Callable[[], object]


# ------------------------------------------------------------------ slide lists

def _is_slide_name(name: str) -> bool:
    lower = name.lower()
    if name.startswith(".") or not lower.endswith(SLIDE_EXTENSIONS):
        return False
    # Outputs of an earlier run (when --out is the input folder) are not slides.
    return not any(lower.endswith(s) for k, s in OUTPUT_SUFFIXES.items() if k != "summary")


def find_slides(input: str | os.PathLike) -> list[Path]:
    """The slides of a folder, a list file, or a single image.

    Parameters
    ----------
    input : path-like
        A folder: its image files (:data:`SLIDE_EXTENSIONS`, not recursive,
        hidden files and outputs of this package left out), sorted by name.
        A text file: one path per line; relative paths are relative to the
        list's folder, blank lines and lines starting with ``#`` are ignored.
        An image file: that one slide.

    Returns
    -------
    list of Path
        Absolute paths, in order, without repeats. Paths in a list are not
        checked here: a missing one is reported as a failed slide.

    Raises
    ------
    ValueError
        If ``input`` does not exist or holds no slide.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "b.svs").write_bytes(b""), (folder / "a.png").write_bytes(b"")
    >>> _ = (folder / "notes.txt").write_text("")
    >>> [p.name for p in find_slides(folder)]
    ['a.png', 'b.svs']
    """
    path = Path(input).expanduser()
    if path.is_dir():
        slides = sorted(p for p in path.iterdir() if p.is_file() and _is_slide_name(p.name))
        if not slides:
            raise ValueError(f"{path}: no slide found (looked for {', '.join(SLIDE_EXTENSIONS)})")
        return [p.resolve() for p in slides]
    if not path.is_file():
        raise ValueError(f"{path}: no such folder or slide list")
    if _is_slide_name(path.name):
        return [path.resolve()]
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the slide list ({exc})") from None
    slides: list[Path] = []
    for line in lines:
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        slide = Path(text).expanduser()
        slide = (slide if slide.is_absolute() else path.parent / slide).resolve()
        if slide not in slides:
            slides.append(slide)
    if not slides:
        raise ValueError(f"{path}: the slide list names no slide")
    return slides


def _check_stems(slides: Sequence[Path]) -> list[str]:
    seen: dict[str, Path] = {}
    clashes = []
    for slide in slides:
        stem = image_stem(slide)
        if stem in seen:
            clashes.append(f"{seen[stem]} and {slide} (stem {stem!r})")
        seen.setdefault(stem, slide)
    if clashes:
        raise ValueError("slides would write the same outputs: " + "; ".join(clashes))
    return list(seen)


# ------------------------------------------------------------------ results

@dataclass(frozen=True)
class SlideResult:
    """What became of one slide.

    Attributes
    ----------
    slide : Path
    stem : str
        Its outputs are ``<out>/<stem>.*``.
    status : {"ok", "skipped", "failed", "cancelled"}
        ``skipped``: finished by an earlier run; ``cancelled``: not run
        because the batch was stopped.
    error : str
        One line; empty unless failed.
    seconds : float or None
        Time spent on the slide (for a skipped one, by the run that made it).
    summary : dict or None
        Its ``summary.json``.
    """

    slide: Path
    stem: str
    status: str
    error: str = ""
    seconds: float | None = None
    summary: dict | None = None

    def row(self) -> dict:
        """The slide's cohort row (:data:`COHORT_COLUMNS`)."""
        summary = self.summary or {}
        model = summary.get("model")
        row = {"slide": str(self.slide), "stem": self.stem, "status": self.status, "error": self.error,
               "seconds": self.seconds, "model": model.get("name") if isinstance(model, dict) else model,
               "device": summary.get("device")}
        row.update({key: summary.get(key) for key in SUMMARY_COLUMNS})
        return {key: row[key] for key in COHORT_COLUMNS}


@dataclass(frozen=True)
class BatchReport:
    """The outcome of :func:`run_batch`.

    Attributes
    ----------
    results : tuple of SlideResult
        One per slide, in input order.
    cohort_path : Path
        The ``cohort.csv`` written.
    scheduler : str
        Address of the scheduler used.
    dashboard_link : str or None
    seconds : float
    """

    results: tuple[SlideResult, ...]
    cohort_path: Path
    scheduler: str = ""
    dashboard_link: str | None = None
    seconds: float = 0.0
    counts: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        counts = {status: 0 for status in ("ok", "skipped", "failed", "cancelled")}
        for result in self.results:
            counts[result.status] = counts.get(result.status, 0) + 1
        object.__setattr__(self, "counts", counts)

    @property
    def failed(self) -> list[SlideResult]:
        """The slides that failed."""
        return [r for r in self.results if r.status == "failed"]

    @property
    def all_done(self) -> bool:
        """True when every slide is ``ok`` or ``skipped``."""
        return all(r.status in ("ok", "skipped") for r in self.results)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if value != value else repr(value)
    return str(value)


def write_cohort(path: str | os.PathLike, results: Iterable[SlideResult]) -> Path:
    """Write the cohort report atomically: one row per slide (:data:`COHORT_COLUMNS`).

    Missing values (no stain, a failed slide, Ki-67's interpretation) are
    empty cells; floats are written at full precision.
    """
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(COHORT_COLUMNS)
        for result in results:
            writer.writerow([_cell(v) for v in result.row().values()])
    return path


def _one_line(exc: BaseException) -> str:
    from napari_ihcseg.io import ImageReadError

    text = exc.reason if isinstance(exc, ImageReadError) else f"{type(exc).__name__}: {exc}"
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


# ------------------------------------------------------------------ the task

_MODEL_LOCK = threading.Lock()
#: The model of this worker process: {key: (model, name)}, at most one entry.
_WORKER_MODEL: dict = {}


def _factory_name(factory: ModelFactory) -> str:
    if isinstance(factory, str):
        return factory
    if hasattr(factory, "__module__") and hasattr(factory, "__qualname__"):
        return f"{factory.__module__}:{factory.__qualname__}"
    return repr(factory)


def _call_factory(factory: ModelFactory, device: str):
    import importlib

    from napari_ihcseg.device import resolve_device

    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        if not module or not attr:
            raise ValueError(f"model factory {factory!r}: expected 'module:attribute'")
        factory = getattr(importlib.import_module(module), attr)
    return factory().to(resolve_device(device)).eval()


def worker_model(options: PipelineOptions, model_factory: ModelFactory | None = None):
    """The model of this process for ``options``, loaded on first use and then kept.

    Sets torch to one thread, so that N single-threaded workers on a machine
    do not oversubscribe its cores.

    Returns
    -------
    model : torch.nn.Module
    name : str
        Recorded as the model in each slide's summary.
    """
    import torch

    key = (None if model_factory is None else _factory_name(model_factory), options.model, options.device)
    with _MODEL_LOCK:
        if key not in _WORKER_MODEL:
            torch.set_num_threads(1)
            _WORKER_MODEL.clear()
            if model_factory is None:
                from napari_ihcseg.pipeline import resolve_model

                with warnings.catch_warnings():
                    # The client has already told the user about an untrained model.
                    warnings.simplefilter("ignore", UserWarning)
                    _WORKER_MODEL[key] = resolve_model(options.model, options.device)
            else:
                _WORKER_MODEL[key] = (_call_factory(model_factory, options.device), _factory_name(model_factory))
        return _WORKER_MODEL[key]


def _clear_previous(out_dir: Path, stem: str) -> None:
    """Remove the slide's summary and any temporary file a killed run left behind."""
    output_paths(out_dir, stem)["summary"].unlink(missing_ok=True)
    prefixes = tuple(f".{stem}{suffix}." for suffix in OUTPUT_SUFFIXES.values())
    for entry in out_dir.iterdir() if out_dir.is_dir() else ():
        if entry.name.startswith(prefixes):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def score_slide(slide: str, out_dir: str, options: PipelineOptions,
                model_factory: ModelFactory | None = None) -> dict:
    """The task run on a worker for one slide; never raises.

    Returns
    -------
    dict
        ``{"status": "ok", "summary": ..., "seconds": ...}`` or
        ``{"status": "failed", "error": <one line>, "seconds": ...}``.
    """
    import dask

    from napari_ihcseg.io import open_image
    from napari_ihcseg.pipeline import process_image

    started = time.perf_counter()
    try:
        out = Path(out_dir)
        # Without its summary the slide never looks finished while it is redone.
        _clear_previous(out, image_stem(slide))
        # The slide's lazy blocks are read in this task's thread, never sent
        # back to the cluster as tasks of their own.
        with dask.config.set(scheduler="synchronous"):
            with open_image(slide):  # an unreadable file fails before a model is loaded for it
                pass
            model, name = worker_model(options, model_factory)
            summary = process_image(slide, out, options, model=model, model_name=name)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a cohort row
        return {"status": "failed", "error": _one_line(exc), "seconds": round(time.perf_counter() - started, 3)}
    return {"status": "ok", "summary": summary, "seconds": summary.get("seconds")}


# ------------------------------------------------------------------ the batch

def _skipped(slide: Path, stem: str, out_dir: Path) -> SlideResult:
    import json

    summary = json.loads(output_paths(out_dir, stem)["summary"].read_text(encoding="utf-8"))
    return SlideResult(slide, stem, "skipped", seconds=summary.get("seconds"), summary=summary)


def _collect(future, slide: Path, stem: str) -> SlideResult:
    """A finished task's result; a task that died with its worker counts as failed."""
    if future.status != "finished":
        exc = future.exception() if future.status == "error" else None
        error = _one_line(exc) if exc is not None else f"task {future.status}"
        if type(exc).__name__ == "KilledWorker":
            error = "its worker died repeatedly (out of memory? see --memory-limit): " + error
        return SlideResult(slide, stem, "failed", error=error)
    out = future.result()
    return SlideResult(slide, stem, out["status"], error=out.get("error", ""), seconds=out.get("seconds"),
                       summary=out.get("summary"))


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
        The slides (see :func:`find_slides`). Every worker must see these
        paths and ``out_dir`` (a shared file system on a multi-machine cluster).
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
        Called with each :class:`SlideResult` as it is known.
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
    started = time.perf_counter()
    options = options or PipelineOptions()
    slides = [Path(s).expanduser().resolve() for s in slides]
    if not slides:
        raise ValueError("no slide to score")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers: expected a positive integer, got {workers!r}")
    _check_memory_limit(memory_limit)
    stems = _check_stems(slides)
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
        if not force and outputs_complete(out_dir, stem, options):
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

    report = BatchReport(tuple(results[i] for i in range(total)), out_dir / COHORT_NAME,
                         scheduler=address, dashboard_link=link,
                         seconds=round(time.perf_counter() - started, 3))
    write_cohort(report.cohort_path, report.results)
    if interrupted:
        raise KeyboardInterrupt
    return report
