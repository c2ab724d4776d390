"""Batch scoring on Dask: cohort report, failed slides, resume after a kill, --force, slide lists."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from PIL import Image

from napari_ihcseg.batch import COHORT_COLUMNS, SUMMARY_COLUMNS, find_slides, run_batch
from napari_ihcseg.cli import main
from napari_ihcseg.data.synthetic import make_synthetic_ihc
from napari_ihcseg.data.synthetic_slide import make_synthetic_slide
from napari_ihcseg.inference import InferenceConfig
from napari_ihcseg.io import read_labels
from napari_ihcseg.pipeline import PipelineOptions, output_paths, outputs_complete
from napari_ihcseg.scoring import ScoringConfig

from fakes import ODNet

distributed = pytest.importorskip("distributed")

OPTIONS = PipelineOptions(inference=InferenceConfig(tile=256, overlap=32), scoring=ScoringConfig(stain="ki67"))
PIPELINE_ARGS = ["--stain", "ki67", "--tile", "256", "--overlap", "32"]
#: Picklable by reference: the worker processes import ``fakes`` from tests/ (inherited sys.path).
FACTORY = partial(ODNet, stains=(0, 1))


def _save_field(path: Path, seed: int, size: int) -> None:
    image = make_synthetic_ihc((size, size), seed=seed, density=0.25, positive_fraction=0.4).image
    if path.suffix == ".tif":
        tifffile.imwrite(path, image, photometric="rgb")
    else:
        Image.fromarray(image).save(path)


@pytest.fixture(scope="module")
def client():
    """Two single-threaded worker processes, shared by the tests of this module."""
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       memory_limit="2GB", dashboard_address=":0")
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def slides_dir(tmp_path_factory):
    """Four synthetic fields (PNG, TIFF, JPEG), a broken TIFF, and a file that is no slide."""
    folder = tmp_path_factory.mktemp("slides")
    for i, name in enumerate(["a.png", "b.tif", "c.jpg", "d.png"]):
        _save_field(folder / name, seed=i, size=(192, 224, 256, 192)[i])
    (folder / "broken.tif").write_bytes(b"II*\x00 this is not really a TIFF")
    (folder / "notes.txt").write_text("not a slide")
    return folder


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A real (untrained, very narrow) checkpoint folder, so the CLI runs its usual model path."""
    from napari_ihcseg.models import build_model, save_checkpoint

    model = build_model("harunet-lite", encoder_mid=(4,) * 6, encoder_out=(8,) * 6,
                        decoder_mid=(4,) * 5, decoder_out=(8,) * 5)
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny")


def _worker_state():
    import os

    from napari_ihcseg.batch import worker
    return os.getpid(), len(worker._WORKER_MODEL)


def _as_whole_slides(pixels: int | None, default_scheduler: str | None) -> None:
    """In a worker: treat images above ``pixels`` as whole slides; set dask's default scheduler."""
    import dask

    from napari_ihcseg import pipeline

    pipeline.LARGE_IMAGE_PIXELS = pixels or 64 * 2**20
    dask.config.set(scheduler=default_scheduler)


def _cohort(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "cohort.csv", keep_default_na=False, na_values=[""])


def _assert_rows_match_summaries(cohort: pd.DataFrame, out: Path) -> None:
    for row in cohort[cohort["status"].isin(["ok", "skipped"])].itertuples():
        summary = json.loads(output_paths(out, row.stem)["summary"].read_text())
        for key in SUMMARY_COLUMNS:
            expected, got = summary.get(key), getattr(row, key)
            if expected is None:
                assert pd.isna(got), (row.stem, key)
            elif isinstance(expected, str):
                assert got == expected, (row.stem, key)
            else:
                assert got == pytest.approx(expected, rel=0, abs=0), (row.stem, key)
        assert row.model == summary["model"]["name"] and row.device == summary["device"]
        assert row.seconds == pytest.approx(summary["seconds"])


def _mtimes(out: Path, stems: set[str]) -> dict[str, int]:
    """Modification times of every output of these slides."""
    return {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name.split(".")[0] in stems}


def test_folder_with_a_broken_file_on_two_workers(client, slides_dir, tmp_path, capsys):
    out = tmp_path / "out"
    report = run_batch(find_slides(slides_dir), out, OPTIONS, scheduler=client, model_factory=FACTORY)

    assert report.counts == {"ok": 4, "skipped": 0, "failed": 1, "cancelled": 0}
    (broken,) = report.failed
    assert broken.slide.name == "broken.tif" and "\n" not in broken.error and broken.error
    # The work ran in separate worker processes, which keep their model for the next slide.
    states = client.run(_worker_state)
    assert len(states) == 2 and all(pid != os.getpid() for pid, _ in states.values())
    assert {n for _, n in states.values()} <= {0, 1} and any(n == 1 for _, n in states.values())

    cohort = _cohort(out)
    assert list(cohort.columns) == list(COHORT_COLUMNS)
    assert list(cohort["stem"]) == ["a", "b", "broken", "c", "d"]
    assert dict(zip(cohort["stem"], cohort["status"])) == {
        "a": "ok", "b": "ok", "broken": "failed", "c": "ok", "d": "ok"}
    failed = cohort.set_index("stem").loc["broken"]
    assert failed["error"] == broken.error and pd.isna(failed["n_nuclei"])
    _assert_rows_match_summaries(cohort, out)
    rows = cohort.set_index("stem")
    for stem in "abcd":
        labels = read_labels(output_paths(out, stem)["labels"])
        n = len(np.unique(labels[labels > 0]))
        summary = json.loads(output_paths(out, stem)["summary"].read_text())
        assert n == summary["n_nuclei_segmented"] and 5 < rows.loc[stem, "n_nuclei"] <= n
        assert rows.loc[stem, "ki67_index"] == rows.loc[stem, "positive_percent"]
    assert set(cohort["model"].dropna()) == {report.results[0].summary["model"]["name"]}

    # The same folder through the CLI: the good slides are done, the broken one fails again.
    before = _mtimes(out, set("abcd"))
    code = main(["batch", str(slides_dir), "--out", str(out), "--scheduler", client.scheduler.address,
                 *PIPELINE_ARGS])
    err = capsys.readouterr().err
    assert code == 1
    assert "broken.tif" in err and "Traceback" not in err
    assert _mtimes(out, set("abcd")) == before
    again = _cohort(out)
    assert dict(zip(again["stem"], again["status"])) == {
        "a": "skipped", "b": "skipped", "broken": "failed", "c": "skipped", "d": "skipped"}
    _assert_rows_match_summaries(again, out)
    numbers = list(SUMMARY_COLUMNS)
    pd.testing.assert_frame_equal(again[numbers], cohort[numbers])


@pytest.mark.slow
def test_killed_batch_resumes_without_touching_finished_slides(client, tiny_checkpoint, tmp_path):
    slides = tmp_path / "slides"
    slides.mkdir()
    stems = [f"k{i}" for i in range(6)]
    for i, stem in enumerate(stems):
        _save_field(slides / f"{stem}.png", seed=10 + i, size=192)
    out = tmp_path / "out"
    args = ["batch", str(slides), "--out", str(out), "--model", str(tiny_checkpoint), *PIPELINE_ARGS]

    # The command with its own local cluster, in a process group of its own, killed outright
    # (client, scheduler and worker) once a slide is done.
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from napari_ihcseg.cli import main; sys.exit(main())",
         *args, "--workers", "1", "--memory-limit", "2GB"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not list(out.glob("*.summary.json")):
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "no slide finished in time"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert not (out / "cohort.csv").exists()

    done = [s for s in stems if outputs_complete(out, s, OPTIONS)]
    assert 1 <= len(done) < len(stems)
    finished = _mtimes(out, set(done))

    code = main([*args, "--scheduler", client.scheduler.address])
    assert code == 0
    assert all(outputs_complete(out, s, OPTIONS) for s in stems)
    assert _mtimes(out, set(done)) == finished
    cohort = _cohort(out)
    assert dict(zip(cohort["stem"], cohort["status"])) == {s: "skipped" if s in done else "ok" for s in stems}
    _assert_rows_match_summaries(cohort, out)
    # Nothing half-written is left behind by the killed run.
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_force_recomputes_and_a_plain_rerun_does_not(client, slides_dir, tmp_path):
    slides = [slides_dir / "a.png", slides_dir / "d.png"]
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".a.labels.tif.x1y2.part.tif"  # what a killed run may leave
    other = out / ".ab.labels.tif.x1y2.part.tif"  # another slide's, not touched
    stale.write_bytes(b"partial")
    other.write_bytes(b"partial")

    first = run_batch(slides, out, OPTIONS, scheduler=client, model_factory=FACTORY)
    assert first.counts["ok"] == 2 and not stale.exists() and other.exists()
    made = _mtimes(out, {"a", "d"})
    assert len(made) == 2 * 4  # labels, cells, geojson, summary

    again = run_batch(slides, out, OPTIONS, scheduler=client, model_factory=FACTORY)
    assert [r.status for r in again.results] == ["skipped", "skipped"]
    assert _mtimes(out, {"a", "d"}) == made

    forced = run_batch(slides, out, OPTIONS, scheduler=client, model_factory=FACTORY, force=True)
    assert [r.status for r in forced.results] == ["ok", "ok"]
    remade = _mtimes(out, {"a", "d"})
    assert remade.keys() == made.keys() and all(remade[k] > made[k] for k in made)
    assert [r.summary["n_nuclei"] for r in forced.results] == [r.summary["n_nuclei"] for r in first.results]

    # Options that ask for more outputs make the old ones incomplete.
    overlay = run_batch(slides, out, PipelineOptions(inference=InferenceConfig(tile=256, overlap=32),
                                                     scoring=ScoringConfig(stain="ki67"), overlay=True),
                        scheduler=client, model_factory=FACTORY)
    assert [r.status for r in overlay.results] == ["ok", "ok"]
    assert (out / "a.overlay.png").is_file()


def test_relative_region_and_checkpoint_paths_reach_workers_running_elsewhere(client, tmp_path, monkeypatch):
    """Workers of a scheduler run in folders of their own: relative paths are sent as absolute ones."""
    from napari_ihcseg.batch.run import _for_remote_workers

    here = tmp_path / "here"
    here.mkdir()
    _save_field(here / "case1.png", seed=0, size=192)
    ring = [[0, 0], [192, 0], [192, 120], [0, 120], [0, 0]]
    (here / "tumour.geojson").write_text(json.dumps(
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}))
    (here / "my_model").mkdir()
    monkeypatch.chdir(here)  # the workers were started in another folder
    report = run_batch(["case1.png"], tmp_path / "out", OPTIONS.replace(roi="tumour.geojson"), scheduler=client,
                       model_factory=FACTORY)
    assert [r.status for r in report.results] == ["ok"], report.results[0].error
    assert report.results[0].summary["options"]["roi"] == str(here / "tumour.geojson")
    sent = _for_remote_workers(OPTIONS.replace(model="my_model"))
    assert sent.model == str(here / "my_model")
    for name in ("r2unet-lite-ihc", "r2unet-lite"):  # a shipped checkpoint, an architecture: names, not files
        assert _for_remote_workers(OPTIONS.replace(model=name)).model == name


def test_the_warnings_of_a_slide_name_it(client, tmp_path, capsys):
    slides = tmp_path / "slides"
    slides.mkdir()
    _save_field(slides / "few.png", seed=3, size=192)
    code = main(["batch", str(slides), "--out", str(tmp_path / "out"), "--scheduler", client.scheduler.address,
                 *PIPELINE_ARGS])
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"ihcseg: warning: {slides / 'few.png'}: only " in err and "cells counted" in err, err


def test_a_slide_replaced_under_the_same_name_is_scored_again(client, slides_dir, tmp_path):
    """A rescan in place, or another cohort's slide of the same name, never inherits the old results."""
    cohort_a, cohort_b = tmp_path / "a", tmp_path / "b"
    for folder, seed in ((cohort_a, 0), (cohort_b, 7)):
        folder.mkdir()
        _save_field(folder / "case1.png", seed=seed, size=192)
    out = tmp_path / "out"
    first = run_batch([cohort_a / "case1.png"], out, OPTIONS, scheduler=client, model_factory=FACTORY)
    assert [r.status for r in first.results] == ["ok"]
    assert [r.status for r in run_batch([cohort_a / "case1.png"], out, OPTIONS, scheduler=client,
                                        model_factory=FACTORY).results] == ["skipped"]

    other = run_batch([cohort_b / "case1.png"], out, OPTIONS, scheduler=client, model_factory=FACTORY)
    assert [r.status for r in other.results] == ["ok"]
    assert other.results[0].summary["image"] == str(cohort_b / "case1.png")

    _save_field(cohort_b / "case1.png", seed=8, size=224)  # rescanned in place
    rescan = run_batch([cohort_b / "case1.png"], out, OPTIONS, scheduler=client, model_factory=FACTORY)
    assert [r.status for r in rescan.results] == ["ok"]
    assert rescan.results[0].summary["width"] == 224


def test_whole_slides_are_read_block_by_block_on_the_workers(client, tmp_path):
    slide = make_synthetic_slide(tmp_path / "slides" / "ws.ome.tif", (512, 768), tile=256, seed=5,
                                 tissue_fraction=0.6, compression="zlib")
    out = tmp_path / "out"
    # Workers of a cluster started from a session with a default client inherit
    # "dask.distributed" as dask's scheduler; the slide's blocks must still be read in the task.
    client.run(_as_whole_slides, 256 * 256, "dask.distributed")
    try:
        report = run_batch([slide], out, PipelineOptions(inference=InferenceConfig(tile=128, overlap=32),
                                                         scoring=ScoringConfig(stain="ki67"), block=256),
                           scheduler=client, model_factory=FACTORY)
    finally:
        client.run(_as_whole_slides, None, None)
    (result,) = report.results
    assert result.status == "ok", result.error
    assert result.stem == "ws" and result.summary["large"]
    labels = read_labels(output_paths(out, "ws")["labels"])
    assert labels.shape == (512, 768)
    assert result.summary["n_nuclei_segmented"] == len(np.unique(labels[labels > 0])) > 10
    assert _cohort(out)["n_nuclei"].tolist() == [result.summary["n_nuclei"]]


def test_slide_list_resolves_relative_paths_and_reports_missing_ones(client, slides_dir, tiny_checkpoint,
                                                                     tmp_path, capsys):
    listing = tmp_path / "lists" / "cohort.txt"
    listing.parent.mkdir()
    rel = os.path.relpath(slides_dir / "b.tif", listing.parent)
    listing.write_text(f"\ufeff# cohort 1\n{rel}\n\n  {slides_dir / 'c.jpg'}  \n# {slides_dir / 'a.png'}\n"
                       f"{rel}\nmissing.svs\n", encoding="utf-8")  # with the BOM Windows Notepad writes
    assert find_slides(listing) == [slides_dir / "b.tif", slides_dir / "c.jpg", listing.parent / "missing.svs"]

    out = tmp_path / "out"
    code = main(["batch", str(listing), "--out", str(out), "--scheduler", client.scheduler.address,
                 "--model", str(tiny_checkpoint), *PIPELINE_ARGS])
    assert code == 1
    assert "missing.svs: no such file" in capsys.readouterr().err
    cohort = _cohort(out)
    assert list(cohort["status"]) == ["ok", "ok", "failed"]
    assert cohort["model"].iloc[0] == str(tiny_checkpoint)
    assert output_paths(out, "b")["labels"].is_file() and output_paths(out, "c")["labels"].is_file()


def test_a_slide_error_is_kept_to_one_short_line():
    from napari_ihcseg.batch.report import MAX_ERROR_CHARS, one_line_error
    from napari_ihcseg.io import ImageReadError

    assert one_line_error(ImageReadError("/slides/a.tif", "truncated\n  file")) == "truncated file"
    assert one_line_error(MemoryError()) == "MemoryError"
    long = one_line_error(ValueError("word " * 200))
    assert len(long) == MAX_ERROR_CHARS and long.startswith("ValueError: word word") and long.endswith("…")


def test_folder_scan_leaves_out_hidden_files_and_earlier_outputs(tmp_path):
    for name in ["z.svs", "y.ome.tif", "x.TIFF", "w.btf", ".hidden.png", "v.labels.tif", "v.overlay.png",
                 "readme.md", "u.summary.json"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in find_slides(tmp_path)] == ["w.btf", "x.TIFF", "y.ome.tif", "z.svs"]
    assert find_slides(tmp_path / "z.svs") == [tmp_path / "z.svs"]


@pytest.mark.parametrize("case, message", [
    ("empty", "no slide found"),
    ("clash", "same outputs"),
    ("scheduler", "scheduler 'not-an-address'"),
    ("workers", "--workers"),
    ("memory", "memory limit"),
    ("model", "--model: 'no-such-model' is not"),
    ("device", "cuda"),
])
def test_usage_errors_exit_2_with_one_line(case, message, slides_dir, tmp_path, capsys):
    source, extra = str(slides_dir), []
    if case == "empty":
        source = str(tmp_path)
    elif case == "clash":
        other = tmp_path / "other"
        other.mkdir()
        (other / "a.svs").write_bytes(b"")
        source = str(tmp_path / "list.txt")
        Path(source).write_text(f"{slides_dir / 'a.png'}\n{other / 'a.svs'}\n")
    elif case == "scheduler":
        extra = ["--scheduler", "not-an-address"]
    elif case == "workers":
        extra = ["--workers", "0"]
    elif case == "memory":
        extra = ["--memory-limit", "lots"]
    model = "no-such-model" if case == "model" else "harunet-lite"
    if case == "device":
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        extra = ["--device", "cuda"]
    code = main(["batch", source, "--out", str(tmp_path / "out"), "--model", model, *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert message in err[-1] and err[-1].startswith("ihcseg: error:")
    assert not (tmp_path / "out" / "cohort.csv").exists()


def test_workers_and_scheduler_exclude_each_other(slides_dir, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["batch", str(slides_dir), "--out", str(tmp_path), "--workers", "2", "--scheduler", "tcp://h:8786"])
    assert exit_info.value.code == 2


def test_a_slide_written_while_the_batch_stops_counts_as_done_not_cancelled(client, slides_dir, tmp_path):
    """cohort.csv said 'cancelled' for a slide whose task finished writing it during the shutdown."""
    import napari_ihcseg.batch.run as batch_run
    from napari_ihcseg.batch.report import SlideResult

    slide, out = slides_dir / "a.png", tmp_path / "out"
    assert run_batch([slide], out, OPTIONS, scheduler=client, model_factory=FACTORY).counts["ok"] == 1
    summary = output_paths(out, "a")["summary"]
    missing = slides_dir / "b.tif"

    def stopped():
        return {0: SlideResult(slide, "a", "cancelled", error="not run: the batch was stopped"),
                1: SlideResult(missing, "b", "cancelled", error="not run: the batch was stopped")}

    # Outputs of an earlier run are not this run's work: the slide stays cancelled.
    results = stopped()
    batch_run._count_finished_while_stopping(results, out, OPTIONS, since=time.time() + 60)
    assert [r.status for r in results.values()] == ["cancelled", "cancelled"]
    # Written whole since the batch started: done, with its scores; a slide with no outputs stays cancelled.
    results = stopped()
    batch_run._count_finished_while_stopping(results, out, OPTIONS, since=summary.stat().st_mtime)
    assert [r.status for r in results.values()] == ["ok", "cancelled"]
    assert results[0].summary["n_nuclei"] == json.loads(summary.read_text())["n_nuclei"]


def test_a_checkpoint_with_damaged_weights_stops_the_batch_before_any_slide(tiny_checkpoint, slides_dir, tmp_path,
                                                                             capsys):
    """Each slide failed on its own with the same checksum error, and the exit code was 1, not 2."""
    import shutil

    damaged = shutil.copytree(tiny_checkpoint, tmp_path / "damaged")
    weights = damaged / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    code = main(["batch", str(slides_dir), "--out", str(tmp_path / "out"), "--model", str(damaged), "--workers", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("ihcseg: error: --model: ") and "checksum mismatch" in err[-1]
    assert not (tmp_path / "out" / "cohort.csv").exists()
