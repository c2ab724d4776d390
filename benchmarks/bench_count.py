"""Benchmark count mode: one click on a 4096² field with 5,000 nuclei, Labels and live table updated.

Run under a display (the clicks go through a real napari viewer, the Count
and Score widgets)::

    xvfb-run -a -s "-screen 0 1600x1000x24" env QT_QPA_PLATFORM=xcb \\
        python benchmarks/bench_count.py [--size 4096] [--nuclei 5000] [--clicks 20]

For each kind of click (grow a missed nucleus on the hematoxylin + DAB
density, set a class by hand, delete a false nucleus) it times, side by side
in one run, ``CountWidget.click``: the edit computed and applied to the
Labels layer through ``data_setitem``, logged in the correction session, the
live table re-measured where the click changed pixels and redrawn (the Score
widget refreshes at once after a click). It compares that with scoring the
whole field again (``LiveScore`` built from scratch), which is what a click
would cost without the cached per-nucleus table. The goal is well under
100 ms per click. Two steps follow each click and are timed apart: the point
on the counts layer (drawn in the next turn of the event loop) and the
colours by class (redrawn 300 ms after the last click; napari maps the whole
layer again). Medians and maxima over ``--clicks`` clicks of each kind.

Last, a brush stroke that reshapes a nucleus (the live table alone): the
table updated by searching the whole field for the touched nuclei, against
searching only the stroke's box and the nuclei's boxes before it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

GOAL_MS = 100.0


def field(size: int, n_nuclei: int, seed: int = 0):
    """An RGB field with ``n_nuclei`` disk nuclei on a grid (a few left out, to be grown back), and its labels."""
    from napari_ihcseg.stain import compose

    rng = np.random.default_rng(seed)
    per_side = int(np.ceil(np.sqrt(n_nuclei * 1.02)))
    step = size / per_side
    centres = [((i + 0.5) * step + rng.uniform(-3, 3), (j + 0.5) * step + rng.uniform(-3, 3))
               for i in range(per_side) for j in range(per_side)]
    rng.shuffle(centres)
    centres = np.array(centres)
    conc = np.zeros((size, size, 3), np.float32)
    conc[..., 0] = 0.08 + rng.normal(0, 0.01, (size, size))
    labels = np.zeros((size, size), np.int32)
    radius = 7
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    disk = yy ** 2 + xx ** 2 <= radius ** 2
    kept = 0
    for k, (cy, cx) in enumerate(centres):
        r0, c0 = int(cy) - radius, int(cx) - radius
        if r0 < 0 or c0 < 0 or r0 + 2 * radius + 1 > size or c0 + 2 * radius + 1 > size:
            continue
        box = (slice(r0, r0 + 2 * radius + 1), slice(c0, c0 + 2 * radius + 1))
        conc[box][..., 0][disk] = 0.55
        conc[box][..., 1][disk] = 0.5 if k % 4 == 0 else 0.02
        if kept < n_nuclei:
            kept += 1
            labels[box][disk] = kept
    missed = [c for c in centres[kept:] if radius < c[0] < size - radius and radius < c[1] < size - radius]
    return compose(conc), labels, np.array(missed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--nuclei", type=int, default=5000)
    parser.add_argument("--clicks", type=int, default=20)
    args = parser.parse_args()

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_ihcseg.scoring.live import LiveScore
    from napari_ihcseg._widgets.count import CountWidget
    from napari_ihcseg._widgets.score import ScoreWidget
    from napari_ihcseg.editing.recovery import RecoveryStore

    image, labels, missed = field(args.size, args.nuclei)
    print(f"field {args.size}x{args.size}, {int(labels.max())} nuclei, {len(missed)} left out to grow back")
    viewer = napari.Viewer(show=True)
    viewer.add_image(image, name="ihc", rgb=True)
    layer = viewer.add_labels(labels, name="nuclei")
    import tempfile

    store = RecoveryStore(tempfile.mkdtemp(prefix="bench-count-"))
    count = CountWidget(viewer, ask=lambda *a: False, store=store)
    score = ScoreWidget(viewer, store=store, choose_path=lambda *a: None)
    count.form.image.value = viewer.layers["ihc"]
    count._session()._autosave = None  # the autosave runs in a thread after the click; keep it out of the timing
    count.start()
    score.start()
    app = QApplication.instance()
    app.processEvents()

    t0 = time.perf_counter()
    full = LiveScore(image, np.asarray(layer.data), score.config())
    full.result()
    rescore_ms = 1000 * (time.perf_counter() - t0)

    rng = np.random.default_rng(1)
    n = min(args.clicks, len(missed))
    ids = rng.choice(np.arange(1, int(labels.max()) + 1), size=2 * n, replace=False)
    centre_of = {int(i): np.argwhere(labels == i).mean(axis=0) for i in ids}
    plans = {"grow": [("grow", tuple(p)) for p in missed[:n]],
             "class": [("positive" if k % 2 else "negative", tuple(centre_of[int(i)])) for k, i in enumerate(ids[:n])],
             "delete": [("delete", tuple(centre_of[int(i)])) for i in ids[n:]]}
    times: dict[str, list[float]] = {k: [] for k in plans}
    parts: dict[str, list[tuple]] = {k: [] for k in plans}
    for k in range(n):  # the kinds take turns
        for kind, plan in plans.items():
            action, position = plan[k]
            count.set_action(action)
            t0 = time.perf_counter()
            done = count.click(position)  # Labels edit, session, live table (refreshed at once)
            t1 = time.perf_counter()
            while count.points_pending:  # the counted point, drawn right after
                app.processEvents()
            t2 = time.perf_counter()
            score._recolour.cancel()
            score._colour(score.cells)  # the colours by class, redrawn 300 ms after the last click
            t3 = time.perf_counter()
            times[kind].append(1000 * (t1 - t0))
            parts[kind].append((1000 * (t2 - t1), 1000 * (t3 - t2)))
            assert done == ("class" if kind == "class" else kind), (kind, done)
            app.processEvents()
    print(f"scoring the whole field again: {rescore_ms:.0f} ms")
    print("Labels layer + live table per click (the counted point and the class colours follow):")
    print(f"{'click':8s} {'median ms':>10s} {'max ms':>8s} {'vs goal':>8s} {'vs re-score':>12s}")
    for kind, values in times.items():
        med, top = float(np.median(values)), float(np.max(values))
        click_ms, refresh_ms = np.median(np.array(parts[kind]), axis=0)
        print(f"{kind:8s} {med:10.1f} {top:8.1f} {med / GOAL_MS:7.2f}x {rescore_ms / med:11.0f}x faster"
              f"   then the point {click_ms:.0f} ms, the colours {refresh_ms:.0f} ms")
    viewer.close()
    brush_strokes(image, labels, score.config(), ids[:n])


def brush_strokes(image, labels, config, ids) -> None:
    """A brush stroke that reshapes a nucleus: the live table searched in the whole field vs. the stroke's box."""
    from napari_ihcseg.scoring.live import LiveScore

    labels = np.array(labels)
    whole, boxed = LiveScore(image, labels, config), LiveScore(image, labels, config)
    times = {"whole": [], "boxed": []}
    for i in ids:
        ys, xs = np.nonzero(labels == i)
        r, c = int(ys.max()), int(xs[ys.argmax()])
        stroke = (slice(r + 1, min(r + 6, labels.shape[0])), slice(max(c - 2, 0), c + 3))
        touched = {int(j) for j in np.unique(labels[stroke]) if j} | {int(i)}
        labels[stroke] = i
        for name, live, region in (("whole", whole, None), ("boxed", boxed, stroke)):
            t0 = time.perf_counter()
            live.update(labels, touched, region=region)
            times[name].append(1000 * (time.perf_counter() - t0))
    same = whole.cells().equals(boxed.cells())
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"brush stroke reshaping a nucleus, live table only (median of {len(ids)}): "
          f"searching the field {med['whole']:.1f} ms, the stroke's box {med['boxed']:.1f} ms, "
          f"{med['whole'] / med['boxed']:.1f}x faster; same table: {same}")


if __name__ == "__main__":
    main()
