"""``python -m napari_ihcseg``: open napari on a Ki-67 field with the plugin docked.

The demo's field is the project's synthetic Ki-67 field (nuclear DAB in a
fraction of nuclei, a hot spot, and the truth), so the scores it shows mean
something and can be compared with the answer. With ``--headless`` (what
``scripts/run.sh`` does on a machine without a display) the same field goes
through the headless pipeline and the scores are printed beside the truth.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

#: The dock widgets opened by the demo, in order (display names in napari.yaml).
DEMO_WIDGETS = ("Segment nuclei", "Correct nuclei", "Score nuclei")


def _sample_path(folder: Path) -> tuple[Path, dict]:
    """Write the demo's synthetic Ki-67 field to a PNG; return it and its truth."""
    from PIL import Image

    from napari_ihcseg._sample_data import ki67_sample

    (image, meta, _), _truth_labels = ki67_sample()
    path = folder / "ki67_sample.png"
    Image.fromarray(image).save(path)
    return path, meta["metadata"]["ihcseg_truth"]


def run_headless(image: str | None, out: str | None, stain: str, model: str | None, device: str,
                 scale: float | None = None) -> int:
    """Segment and score one image without a display; print the summary."""
    import warnings

    from napari_ihcseg._sample_data import KI67_SAMPLE_HOTSPOT_CELLS
    from napari_ihcseg.inference import InferenceConfig
    from napari_ihcseg.io import ImageReadError
    from napari_ihcseg.pipeline import PipelineOptions, process_image
    from napari_ihcseg.scoring import ScoringConfig

    out_dir = Path(out) if out else Path(tempfile.mkdtemp(prefix="ihcseg-demo-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    source, truth = (Path(image), None) if image else _sample_path(out_dir)
    scale = 1.0 if scale is None else scale
    # The synthetic field draws its DAB in the preset's optical-density terms, which is what the Score
    # widget applies too; a checkpoint's calibrated classifier learned real scanners' colours.
    scoring = ScoringConfig(stain=stain, **({} if image else {"hotspot_cells": KI67_SAMPLE_HOTSPOT_CELLS}))
    options = PipelineOptions(model=model, inference=InferenceConfig(device=device, scale=scale),
                              auto_scale=False, scoring=scoring, model_classifier=bool(image), overlay=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            s = process_image(source, out_dir, options)
        except ImageReadError as exc:
            print(f"ihcseg: error: {exc}", file=sys.stderr)
            return 2
    for w in caught:
        if issubclass(w.category, UserWarning):
            print(f"ihcseg: warning: {w.message}", file=sys.stderr)
    print(f"image      {source}")
    print(f"model      {s['model']['name']} on {s['device']} ({s['seconds']:.1f} s), image scaled ×{scale:g}")
    print(f"nuclei     {s['n_nuclei']}")
    if s.get("positive_percent") is not None:
        print(f"positive   {s['n_positive']} ({s['positive_percent']:.1f} %)   [{s['stain']}, DAB OD cuts "
              f"{', '.join(f'{t:g}' for t in s['thresholds'])}]")
        print(f"H-score    {s['h_score']:.0f}")
        print(f"Allred     {s['allred_proportion_score']} + {s['allred_intensity_score']} = {s['allred_total_score']}")
        if s.get("interpretation"):
            print(f"ER/PR      {s['interpretation']}")
        if s.get("ki67_index") is not None:
            low, high = s["ki67_index_ci"]
            print(f"Ki-67      {s['ki67_index']:.1f} %   (95 % CI {low:.1f}–{high:.1f} %)"
                  + (f"   truth {truth['ki67_index']:.1f} % of {truth['n_nuclei']} nuclei" if truth else ""))
        if s.get("hotspot_ki67_index") is not None:
            y, x = s["hotspot_center_yx"]
            print(f"hot spot   {s['hotspot_ki67_index']:.1f} % of {s['hotspot_n_cells']} cells at row {y:.0f}, "
                  f"column {x:.0f}" + (f"   truth {truth['hotspot_ki67_index']:.1f} % at row "
                                       f"{truth['hotspot_center_yx'][0]:.0f}, column "
                                       f"{truth['hotspot_center_yx'][1]:.0f}" if truth else ""))
        if s.get("stain_pattern"):
            print(f"DAB        {s['stain_pattern']}")
        for warning in s.get("warnings") or []:
            print(f"WARNING    {warning}")
    print(f"outputs    {out_dir}")
    return 0


def run_gui(image: str | None, scale: float | None = None) -> int:  # pragma: no cover - needs a display
    """Open napari with the sample (or ``image``) and the plugin's widgets docked."""
    import napari

    viewer = napari.Viewer(title="napari-ihcseg")
    if image:
        viewer.open(image, plugin="napari-ihcseg")
    else:
        viewer.open_sample("napari-ihcseg", "ki67")
    for name in DEMO_WIDGETS:
        _, widget = viewer.window.add_plugin_dock_widget("napari-ihcseg", name)
        if hasattr(widget, "image_scale"):
            widget.image_scale.setValue(1.0 if scale is None else scale)
        if hasattr(widget, "trust") and not image:
            from napari_ihcseg._sample_data import KI67_SAMPLE_HOTSPOT_CELLS

            widget.trust.hotspot_cells.setValue(KI67_SAMPLE_HOTSPOT_CELLS)
    if not image:
        truth = viewer.layers["synthetic Ki-67"].metadata["ihcseg_truth"]
        from napari.utils.notifications import show_info

        show_info(f"Synthetic Ki-67 field: the true index is {truth['ki67_index']:.1f} % of "
                  f"{truth['n_nuclei']} nuclei, the true hot spot {truth['hotspot_ki67_index']:.1f} %. "
                  "Segment, then Score to compare.")
    napari.run()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m napari_ihcseg", description=__doc__.splitlines()[0])
    parser.add_argument("--headless", action="store_true", help="no window: run the pipeline and print the scores")
    parser.add_argument("--image", default=None, help="an image to open instead of the synthetic Ki-67 field")
    parser.add_argument("--stain", default="ki67", choices=("er", "pr", "ki67"), help="stain to score (headless)")
    parser.add_argument("--out", default=None, help="output folder (headless; default: a new temporary folder)")
    parser.add_argument("--model", default=None, help="checkpoint name or folder (default: the best shipped one)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--scale", type=float, default=None,
                        help="image scale before the model (default 1)")
    args = parser.parse_args(argv)
    if args.headless:
        return run_headless(args.image, args.out, args.stain, args.model, args.device, args.scale)
    return run_gui(args.image, args.scale)


if __name__ == "__main__":
    sys.exit(main())
