"""npe2 sample data: a synthetic Ki-67 field, a real IHC field and a synthetic one with its truth."""

from __future__ import annotations

import numpy as np

__all__ = ["ihc_sample", "ki67_sample", "synthetic_sample"]

#: Size and seed of the demo's Ki-67 field.
KI67_SAMPLE_SHAPE, KI67_SAMPLE_SEED = (768, 768), 0
#: The demo field holds about 600 nuclei; its hot spot is the nearest 100 cells.
KI67_SAMPLE_HOTSPOT_CELLS = 100


def ki67_sample() -> list[tuple]:
    """A synthetic Ki-67 field (nuclear DAB, a hot spot) and its truth, hidden.

    The image layer's ``metadata["ihcseg_truth"]`` holds the true Ki-67
    index and the true hot spot (nearest :data:`KI67_SAMPLE_HOTSPOT_CELLS`
    cells, from the true nuclei and classes); the truth Labels layer is
    added hidden, to compare with a segmentation.
    """
    from napari_ihcseg.data.synthetic_ki67 import make_ki67_field
    from napari_ihcseg.scoring import measure_nuclei
    from napari_ihcseg.scoring.hotspot import find_hotspot

    ki67 = make_ki67_field(KI67_SAMPLE_SHAPE, seed=KI67_SAMPLE_SEED)
    cells = measure_nuclei(ki67.field.image, ki67.field.labels)
    positive = ki67.field.intensity_class[cells["label"].to_numpy()] >= 1
    spot = find_hotspot(cells["centroid_y"], cells["centroid_x"], positive, n_cells=KI67_SAMPLE_HOTSPOT_CELLS)
    truth = {"ki67_index": round(ki67.index, 2), "n_nuclei": ki67.field.n_nuclei,
             "hotspot_ki67_index": spot.index, "hotspot_center_yx": [round(v, 1) for v in spot.center]}
    return [
        (ki67.field.image, {"name": "synthetic Ki-67", "rgb": True, "metadata": {"ihcseg_truth": truth}}, "image"),
        (ki67.field.labels, {"name": "synthetic Ki-67 truth", "visible": False, "opacity": 0.4}, "labels"),
    ]


def ihc_sample() -> list[tuple]:
    """The IHC image that ships with scikit-image (DAB + hematoxylin, 512 x 512).

    It loads from the scikit-image installation, without a download. Its
    stain (FHL2) is cytoplasmic, so scoring it shows the stain-pattern
    warning: nuclear scores do not apply to it.
    """
    from skimage import data

    return [(data.immunohistochemistry(), {"name": "IHC sample", "rgb": True}, "image")]


def synthetic_sample(shape: tuple[int, int] = (512, 512), seed: int = 0) -> list[tuple]:
    """A synthetic IHC field and its nucleus truth.

    Returns an RGB image layer and a Labels layer. The Labels layer carries
    per-nucleus ``features`` (``index`` = label, ``intensity_class`` 0..3 for
    negative, 1+, 2+, 3+, -1 for background, and ``dab_od``) that napari
    shows under the cursor.
    """
    from napari_ihcseg.data.synthetic import make_synthetic_ihc

    field = make_synthetic_ihc(shape, seed=seed)
    features = {
        "index": np.arange(field.n_nuclei + 1),
        "intensity_class": field.intensity_class,
        "dab_od": np.round(field.dab_od, 3),
    }
    return [
        (field.image, {"name": "synthetic IHC", "rgb": True}, "image"),
        (field.labels, {"name": "synthetic IHC truth", "features": features, "opacity": 0.4}, "labels"),
    ]
