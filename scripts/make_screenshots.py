"""Screenshots of the demo and of each widget, for README.md and docs/user_guide.md.

The field is the demo's synthetic Ki-67 field (nuclear DAB, a hot spot; the
``ki67`` sample), as ``scripts/run.sh`` opens it; the last picture scores the
scikit-image sample (FHL2, cytoplasmic) to show the stain-pattern warning.
Run under a virtual display from the repository root, in one command:

    xvfb-run -a -s "-screen 0 1600x1000x24" env QT_QPA_PLATFORM=xcb \
        python scripts/make_screenshots.py [--model NAME_OR_CHECKPOINT] [--out docs/images]

Without ``--model`` the default shipped model is used. Writes run.png,
segment.png, correct.png, count.png, score.png, score_cytoplasmic.png,
pairs.png and train.png; ``--only count`` (for instance) writes just those
named (the segmentation runs first whatever is asked).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def wait(app, seconds: float = 0.5) -> None:
    end = time.time() + seconds
    while time.time() < end:
        app.processEvents()
        time.sleep(0.02)


def wait_for(app, condition, timeout: float = 900) -> None:
    end = time.time() + timeout
    while not condition():
        if time.time() > end:
            raise TimeoutError("the widget did not finish")
        app.processEvents()
        time.sleep(0.05)


def save(viewer, app, path: Path, width: int) -> None:
    from PIL import Image

    wait(app, 1.0)
    img = viewer.screenshot(str(path), canvas_only=False, flash=False)
    pil = Image.fromarray(np.asarray(img)[..., :3])
    if pil.width > width:
        pil = pil.resize((width, round(pil.height * width / pil.width)), Image.LANCZOS)
    pil.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    print(path, pil.size, path.stat().st_size // 1024, "KiB")


def count_shot(viewer, app, nuclei, store, path: Path, width: int) -> None:
    """Count mode on the segmented sample: a nucleus grown back where it was missed, two classified by hand,
    scored live; the nuclei layer is left as it was."""
    from scipy import ndimage as ndi

    from napari_ihcseg._widgets._session import session_for
    from napari_ihcseg._widgets.count import CountWidget
    from napari_ihcseg._widgets.score import ScoreWidget
    from napari_ihcseg.editing import EditTracker

    before = np.array(nuclei.data, copy=True)
    labels = before.copy()
    ids, sizes = np.unique(labels[labels > 0], return_counts=True)
    centres = np.array(ndi.center_of_mass(labels > 0, labels, ids))
    middle = np.array(labels.shape) / 2
    order = np.argsort(np.hypot(*(centres - middle).T))
    near = [k for k in order if 60 <= sizes[k] <= 600][:4]
    # The model's nucleus nearest the middle is taken out, as if it had been missed (not a human edit)...
    labels[labels == ids[near[0]]] = 0
    nuclei.data = labels
    session = session_for(nuclei, store=store)
    session.sync()
    session.tracker = EditTracker()
    session.edited_mask[:] = False
    score = ScoreWidget(viewer, store=store, choose_path=lambda *a: None)
    count = CountWidget(viewer, ask=lambda *a: False, store=store)
    score_dock = viewer.window.add_dock_widget(score, name="Score nuclei", area="right")
    dock = viewer.window.add_dock_widget(count, name="Count nuclei", area="right")
    score.stain.setCurrentIndex(score.stain.findData("ki67"))
    score.start()
    count.form.image.value = viewer.layers["synthetic Ki-67"]
    count.start()
    # ... and grown back by a click; two more are classified by hand.
    count.set_action("grow")
    count.click(centres[near[0]])
    count.set_action("positive")
    count.click(centres[near[1]])
    count.set_action("negative")
    count.click(centres[near[2]])
    wait_for(app, lambda: not count.points_pending)
    score.refresh()
    cy, cx = centres[near[0]]
    viewer.scene.camera.center = (cy, cx)
    viewer.scene.camera.zoom = 2.5
    viewer.layers.selection.active = count.counts
    nuclei.opacity = 0.6
    save(viewer, app, path, width)
    viewer.window.remove_dock_widget(dock)
    viewer.window.remove_dock_widget(score_dock)
    viewer.layers.remove(count.counts)
    nuclei.data = before
    session.sync()
    session.tracker = EditTracker()
    session.edited_mask[:] = False
    nuclei.opacity = 0.7
    viewer.reset_view()


#: The pictures, in the order they are taken.
SHOTS = ("segment", "count", "correct", "score", "run", "pairs", "train", "cytoplasmic")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None, help="checkpoint name or folder (default: the shipped default)")
    parser.add_argument("--out", default="docs/images")
    parser.add_argument("--scale", type=float, default=1.0, help="the Segment widget's Scale on the Ki-67 field")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--only", nargs="+", default=None, metavar="SHOT",
                        choices=SHOTS,
                        help="write only these screenshots")
    args = parser.parse_args()
    wanted = set(args.only or SHOTS)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ihcseg-shots-"))

    import napari
    from qtpy.QtWidgets import QApplication
    from skimage import data

    from napari_ihcseg._sample_data import KI67_SAMPLE_HOTSPOT_CELLS, ki67_sample
    from napari_ihcseg._widgets.correct import CorrectWidget
    from napari_ihcseg._widgets.pairs import SavePairsWidget
    from napari_ihcseg._widgets.score import ScoreWidget
    from napari_ihcseg._widgets.segment import SegmentWidget
    from napari_ihcseg._widgets.train import TrainWidget
    from napari_ihcseg.editing.recovery import RecoveryStore
    from napari_ihcseg.models import default_checkpoint_name

    model = args.model or default_checkpoint_name("cpu")

    store = RecoveryStore(work / "recovery")
    catalog = work / "catalog.json"
    viewer = napari.Viewer(title="napari-ihcseg")
    app = QApplication.instance()
    viewer.window._qt_window.resize(1500, 950)
    for layer_data, meta, kind in ki67_sample():
        getattr(viewer, f"add_{kind}")(layer_data, **meta)

    # Segment
    seg = SegmentWidget(viewer, ask=lambda *a: False, store=store, catalog=catalog)
    dock = viewer.window.add_dock_widget(seg, name="Segment nuclei", area="right")
    index = seg.model.findData(model)
    if index < 0:
        seg.add_checkpoint(model)
    else:
        seg.model.setCurrentIndex(index)
    seg.tile.setValue(256)
    seg.image_scale.setValue(args.scale)
    seg.run()
    wait_for(app, lambda: not seg.running)
    nuclei = viewer.layers["nuclei"]
    viewer.reset_view()
    if "segment" in wanted:
        save(viewer, app, out / "segment.png", args.width)
    viewer.window.remove_dock_widget(dock)
    if "count" in wanted:
        count_shot(viewer, app, nuclei, store, out / "count.png", args.width)
    if not wanted - {"segment", "count"}:
        viewer.close()
        return

    # Correct: a cut line drawn across a nucleus, ready for K
    corr = CorrectWidget(viewer, ask=lambda *a: False, store=store)
    dock = viewer.window.add_dock_widget(corr, name="Correct nuclei", area="right")
    labels = np.asarray(nuclei.data)
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    from scipy import ndimage as ndi

    centres = np.array(ndi.center_of_mass(labels > 0, labels, ids))
    inner = np.all((centres > 90) & (centres < np.array(labels.shape) - 90), axis=1)
    sized = np.flatnonzero((counts >= 80) & (counts <= 400) & inner)  # a nucleus-sized object, not a blob
    big = int(ids[sized[np.argmax(counts[sized])]] if sized.size else ids[np.argmax(counts)])
    rr, cc = np.nonzero(labels == big)
    cy, cx = rr.mean(), cc.mean()
    half = (rr.max() - rr.min()) / 2 + 4
    cuts = corr.cuts_layer(create=True)
    cuts.add_lines(np.array([[cy - half, cx], [cy + half, cx]]))
    viewer.scene.camera.center = (cy, cx)
    viewer.scene.camera.zoom = 3
    viewer.layers.selection.active = nuclei
    nuclei.mode = "paint"
    if "correct" in wanted:
        save(viewer, app, out / "correct.png", args.width)
    corr.split_with_line()
    viewer.window.remove_dock_widget(dock)
    viewer.layers.remove(cuts)

    # Score
    score = ScoreWidget(viewer, store=store, choose_path=lambda *a: None)
    dock = viewer.window.add_dock_widget(score, name="Score nuclei", area="right")
    score.stain.setCurrentIndex(score.stain.findData("ki67"))
    score.trust.hotspot_cells.setValue(KI67_SAMPLE_HOTSPOT_CELLS)
    score.start()
    wait(app, 1.0)
    viewer.reset_view()
    nuclei.opacity = 0.6
    if "score" in wanted:
        save(viewer, app, out / "score.png", args.width)
    print("scored:", {k: score.summary[k] for k in ("n_nuclei", "ki67_index", "ki67_index_ci",
                                                     "hotspot_ki67_index", "stain_pattern")},
          "truth:", viewer.layers["synthetic Ki-67"].metadata["ihcseg_truth"])

    # What scripts/run.sh opens, once segmented and scored: the three widgets docked side by side.
    seg_dock = viewer.window.add_dock_widget(SegmentWidget(viewer, ask=lambda *a: False, store=store, catalog=catalog),
                                             name="Segment nuclei", area="right")
    corr_dock = viewer.window.add_dock_widget(CorrectWidget(viewer, ask=lambda *a: False, store=store),
                                              name="Correct nuclei", area="right")
    viewer.window._qt_window.tabifyDockWidget(seg_dock, corr_dock)
    viewer.window._qt_window.tabifyDockWidget(corr_dock, dock)
    dock.raise_()
    if "run" in wanted:
        save(viewer, app, out / "run.png", args.width)
    for d in (seg_dock, corr_dock, dock):
        viewer.window.remove_dock_widget(d)
    score.trust.clear_layers()

    # Save pairs
    pairs = SavePairsWidget(viewer, ask=lambda *a: True, store=store)
    dock = viewer.window.add_dock_widget(pairs, name="Save training pairs", area="right")
    pairs.folder.setText(str(work / "ihc-pairs"))
    pairs.mode.setCurrentIndex(pairs.mode.findData("tiles"))
    pairs.stride.setValue(128)
    pairs.save()
    if "pairs" in wanted:
        save(viewer, app, out / "pairs.png", args.width)
    viewer.window.remove_dock_widget(dock)

    # Train (a few steps, to show the curve)
    if "train" in wanted:
        train = TrainWidget(viewer, catalog=catalog)
        dock = viewer.window.add_dock_widget(train, name="Train a model", area="right")
        train.dataset.setText(str(work / "ihc-pairs"))
        base = train.base.findData(model)
        train.base.setCurrentIndex(base if base >= 0 else train.base.findData("r2unet-lite"))
        train.epochs.setValue(2)
        train.tile.setCurrentText("128")
        train.batch.setValue(2)
        train.max_steps.setValue(6)
        train.start()
        wait_for(app, lambda: not train.running, timeout=1800)
        save(viewer, app, out / "train.png", args.width)
        viewer.window.remove_dock_widget(dock)

    if "cytoplasmic" in wanted:
        # The scikit-image sample (FHL2, cytoplasmic): scored, it shows the stain-pattern warning.
        viewer.layers.clear()
        viewer.add_image(data.immunohistochemistry(), name="IHC sample (FHL2)", rgb=True)
        seg = SegmentWidget(viewer, ask=lambda *a: False, store=store, catalog=catalog)
        dock = viewer.window.add_dock_widget(seg, name="Segment nuclei", area="right")
        seg.model.setCurrentIndex(max(seg.model.findData(model), 0))
        seg.image_scale.setValue(2.0)  # its nuclei are about half the size the models were trained on
        seg.run()
        wait_for(app, lambda: not seg.running)
        viewer.window.remove_dock_widget(dock)
        score = ScoreWidget(viewer, store=store, choose_path=lambda *a: None)
        dock = viewer.window.add_dock_widget(score, name="Score nuclei", area="right")
        score.stain.setCurrentIndex(score.stain.findData("ki67"))
        score.start()
        wait(app, 1.0)
        viewer.reset_view()
        save(viewer, app, out / "score_cytoplasmic.png", args.width)
        print("FHL2 sample:", score.summary["stain_pattern"], score.summary["warnings"][:1])
    viewer.close()


if __name__ == "__main__":
    main()
