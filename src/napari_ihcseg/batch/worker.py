"""The task that scores one slide on a Dask worker.

:func:`score_slide` is what the cluster runs for each slide: it receives the
slide's path, opens the file itself, segments and scores it with
:func:`napari_ihcseg.pipeline.process_image`, and returns a plain dict; it
never raises. :func:`worker_model` loads the model once per worker process and
keeps it for the following slides. Workers import these functions from this
module when they unpickle a task.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from napari_ihcseg.pipeline import PipelineOptions

from .report import one_line_error

#: A model factory: a ``"module:attr"`` string importable on the workers, or a picklable callable.
ModelFactory = str | Callable[[], object]

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


def _tuned_stamp(options: PipelineOptions) -> tuple:
    """The checkpoint's weights (sha256), tuned instance settings and classifiers: a worker reloads a
    checkpoint retrained, tuned or recalibrated meanwhile."""
    from napari_ihcseg.models import (checkpoint_classifiers_stamp, checkpoint_sha256, default_checkpoint_name,
                                      recommended_instance_params)

    spec = options.model if options.model is not None else default_checkpoint_name(options.inference.device)
    try:
        if spec is None:
            return ()
        return (checkpoint_sha256(spec), checkpoint_classifiers_stamp(spec),
                *sorted(recommended_instance_params(spec).items()))
    except ValueError:
        return ()  # loading reports the problem


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

    device = options.inference.device
    key = (None if model_factory is None else _factory_name(model_factory), options.model, device,
           _tuned_stamp(options) if model_factory is None else None)
    with _MODEL_LOCK:
        if key not in _WORKER_MODEL:
            torch.set_num_threads(1)
            _WORKER_MODEL.clear()
            if model_factory is None:
                from napari_ihcseg.pipeline import resolve_model

                with warnings.catch_warnings():
                    # The client has already told the user about an untrained model.
                    warnings.simplefilter("ignore", UserWarning)
                    _WORKER_MODEL[key] = resolve_model(options.model, device)
            else:
                _WORKER_MODEL[key] = (_call_factory(model_factory, device), _factory_name(model_factory))
        return _WORKER_MODEL[key]


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
        # The slide's lazy blocks are read in this task's thread, never sent
        # back to the cluster as tasks of their own.
        with dask.config.set(scheduler="synchronous"):
            with open_image(slide):  # an unreadable file fails before a model is loaded for it
                pass
            model, name = worker_model(options, model_factory)
            summary = process_image(slide, out, options, model=model, model_name=name)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a cohort row
        return {"status": "failed", "error": one_line_error(exc), "seconds": round(time.perf_counter() - started, 3)}
    return {"status": "ok", "summary": summary, "seconds": summary.get("seconds")}
