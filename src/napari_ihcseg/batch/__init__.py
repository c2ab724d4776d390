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

The names above are defined in these modules and importable from here:

* :mod:`~napari_ihcseg.batch.slides`: :func:`find_slides` and
  :data:`SLIDE_EXTENSIONS`;
* :mod:`~napari_ihcseg.batch.report`: :class:`SlideResult`,
  :class:`BatchReport`, :func:`write_cohort` and the cohort's columns;
* :mod:`~napari_ihcseg.batch.worker`: :func:`score_slide`, the task run on a
  worker for one slide, and :func:`worker_model`;
* :mod:`~napari_ihcseg.batch.run`: :func:`run_batch`, which drives the
  cluster.
"""

from .report import (
    COHORT_COLUMNS,
    COHORT_NAME,
    MAX_ERROR_CHARS,
    SUMMARY_COLUMNS,
    BatchReport,
    SlideResult,
    write_cohort,
)
from .run import DEFAULT_MEMORY_LIMIT, ProgressCallback, run_batch
from .slides import SLIDE_EXTENSIONS, find_slides
from .worker import ModelFactory, score_slide, worker_model

__all__ = [
    "COHORT_COLUMNS",
    "COHORT_NAME",
    "DEFAULT_MEMORY_LIMIT",
    "MAX_ERROR_CHARS",
    "SLIDE_EXTENSIONS",
    "SUMMARY_COLUMNS",
    "BatchReport",
    "ModelFactory",
    "ProgressCallback",
    "SlideResult",
    "find_slides",
    "run_batch",
    "score_slide",
    "worker_model",
    "write_cohort",
]
