"""npe2 sample data: a real IHC field and a synthetic one with its truth."""

from __future__ import annotations

import numpy as np

__all__ = ["ihc_sample", "synthetic_sample"]


def ihc_sample() -> list[tuple]:
    """The IHC image that ships with scikit-image (DAB + hematoxylin, 512 x 512).

    It loads from the scikit-image installation, without a download.
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
