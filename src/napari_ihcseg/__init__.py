"""Segment and score cell nuclei in immunohistochemistry images.

The package import is deliberately light: torch, Qt and napari load only when a
submodule that needs them is imported (``napari_ihcseg.models``,
``napari_ihcseg.inference``, the widgets).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
