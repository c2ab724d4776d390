"""The pixel size an image file records: TIFF tags, OME, ImageJ and Aperio metadata, PNG and JPEG DPI.

A recorded size outside the microscope range (an editor's 72 or 300 dpi) is
no pixel size: it reads as unknown, as does metadata that cannot be parsed.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..pixel_size import PIXEL_SIZE_RANGE_UM
from .content import main_series
from .errors import ImageWarning

_UNIT_TO_UM = {"µm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "\\u00b5m": 1.0, "μm": 1.0,
               "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}


def _plausible(um: float | None) -> float | None:
    if um is None or not np.isfinite(um):
        return None
    # Outside the microscope range a resolution tag is an editor's default
    # (72, 96 or 300 dpi are 353, 265 and 85 µm per pixel) and is ignored.
    return float(um) if PIXEL_SIZE_RANGE_UM[0] <= um <= PIXEL_SIZE_RANGE_UM[1] else None


def tiff_pixel_size(tif, series=None) -> float | None:
    """Pixel size in micrometres from Aperio, OME, ImageJ or resolution tags.

    Parameters
    ----------
    tif : tifffile.TiffFile
    series : tifffile.TiffPageSeries, optional
        The image read (default: :func:`~napari_ihcseg.io.content.main_series`'s
        choice): its own OME ``Pixels`` and its first page's tags, not those of
        a thumbnail stored before it.

    Returns
    -------
    float or None
        ``None`` when the file records none, or an implausible one (outside
        0.01–20 µm).
    """
    try:
        if series is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ImageWarning)
                series = main_series(tif, tif.filehandle.path)
        page = series.keyframe
        if tif.is_svs:
            # Aperio: "Aperio Image Library ...|AppMag = 20|MPP = 0.4990|..."
            for item in tif.pages.first.description.split("|")[1:]:
                key, _, value = item.partition("=")
                if key.strip() == "MPP":
                    return _plausible(float(value))
        if tif.is_ome and tif.ome_metadata:
            import xml.etree.ElementTree as ET

            images = [el for el in ET.fromstring(tif.ome_metadata) if el.tag.endswith("}Image")]
            all_pixels = [next((el for el in image.iter() if el.tag.endswith("}Pixels")), None) for image in images]
            pixels = _ome_pixels_of(series, [p for p in all_pixels if p is not None],
                                    next((i for i, s in enumerate(tif.series) if s is series), 0))
            if pixels is not None and "PhysicalSizeX" in pixels.attrib:
                factor = _unit_to_um(pixels.attrib.get("PhysicalSizeXUnit", "µm"))
                if factor is not None:
                    return _plausible(float(pixels.attrib["PhysicalSizeX"]) * factor)
        tag = page.tags.get("XResolution")
        unit_tag = page.tags.get("ResolutionUnit")
        if tag is None:
            return None
        num, den = tag.value
        if not num:
            return None
        unit = int(unit_tag.value) if unit_tag is not None else 2
        if unit == 2:
            per = 25400.0
        elif unit == 3:
            per = 10000.0
        elif tif.is_imagej and _unit_to_um(str((tif.imagej_metadata or {}).get("unit", ""))) is not None:
            per = _unit_to_um(str(tif.imagej_metadata["unit"]))
        else:
            return None
        return _plausible(per * den / num)
    except Exception:  # noqa: BLE001 - metadata is optional; a bad tag means unknown
        return None


def _ome_pixels_of(series, pixels: list, position: int):
    """The OME ``Pixels`` element of ``series``: among those whose pixels are in the file, the one of its
    width and height (the one at its position among the series when several are), so that an image tifffile
    does not list (a macro image held as metadata only) does not lend it its pixel size."""
    # tifffile makes a series of each Image whose pixels are in the file (TiffData), in their order.
    in_file = [p for p in pixels if any(child.tag.endswith("}TiffData") for child in p)] or pixels
    axes, shape = series.axes, series.shape
    size = (str(shape[axes.index("X")]), str(shape[axes.index("Y")])) if "X" in axes and "Y" in axes else None
    same = [i for i, p in enumerate(in_file) if (p.attrib.get("SizeX"), p.attrib.get("SizeY")) == size]
    if same:
        return in_file[position] if position in same else in_file[same[0]]
    return in_file[position] if position < len(in_file) else None


def _unit_to_um(unit: str) -> float | None:
    """Micrometres per ``unit`` as OME and ImageJ write it (ImageJ escapes µ as ``\\u00B5``); None if unknown.

    >>> _unit_to_um("\\u00B5m"), _unit_to_um("Micron"), _unit_to_um("mm"), _unit_to_um("pixel")
    (1.0, 1.0, 1000.0, None)
    """
    return _UNIT_TO_UM.get(unit.strip().lower())


def dpi_to_um(dpi) -> float | None:
    """Micrometres per pixel of a PNG's or JPEG's ``dpi`` (``None`` outside the microscope range)."""
    try:
        value = float(dpi[0])
    except (TypeError, ValueError, IndexError):
        return None
    return _plausible(25400.0 / value) if value > 0 else None
