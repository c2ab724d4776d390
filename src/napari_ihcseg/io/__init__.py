"""Read IHC images and label images; write label images.

Every image comes out as RGB ``uint8`` of shape ``(H, W, 3)``, whatever the
file holds:

* **Formats**: PNG, JPEG and TIFF in all its forms that tifffile reads
  (BigTIFF, OME-TIFF, tiled pyramidal TIFF, Aperio SVS, ...). The format is
  recognised from the file's first bytes, not its name.
* **Alpha** is composited onto white (``rgb * a + 255 * (1 - a)``;
  premultiplied TIFF alpha as ``rgb + 255 * (1 - a)``).
* **16-bit** (and other unsigned integer) images are rescaled by the type's
  full range, ``round(v * 255 / 65535)``, not by the image's own range: the
  mapping is the same for every block of a large image and for every image,
  so optical densities (``I0 = 255``) keep their meaning. The exception is
  16-bit data that uses only 8, 10, 12 or 14 bits (a camera's range, the
  largest value read from the smallest level): it is scaled by that range,
  e.g. ``v * 255 / 4095``, with an :class:`ImageWarning`, rather than read as
  a nearly black image; a bright-field background keeps every image of one
  camera in the same range. Floating-point images are scaled by the range
  they use, [0, 1], [0, 255] or [0, 65535] (read from the smallest level; up
  to 2 % over it is clipped); other ranges are refused. Not-a-number pixels
  read as white background, with an :class:`ImageWarning`.
* **Several images** in one TIFF: the largest is read, with an
  :class:`ImageWarning` when it is not the first.
* **Blank** images, every pixel one colour (e.g. fully transparent), are
  read with an :class:`ImageWarning`: no nucleus can be found in them.
* **Planar** RGB (channels first, ``(3, H, W)``) is transposed.
* **Palette** images are expanded through their colour map.
* **Grayscale** images are refused: IHC scoring separates hematoxylin from
  DAB by colour.

:func:`read_image` loads the full-resolution level into memory (up to
:data:`MAX_READ_PIXELS`); :func:`open_image` opens TIFFs lazily as a list of
dask arrays, one per pyramid level, read tile by tile through
``tifffile``'s Zarr store, so a whole slide never has to fit in memory.

Any problem with a file (missing, a folder, empty, truncated, corrupt,
unsupported) raises :class:`ImageReadError`, whose message is one line,
``"<path>: <reason>"``; errors of the decoding libraries never escape as
another type, also not from lazy reads.

The names above are defined in these modules and importable from here:

* :mod:`~napari_ihcseg.io.errors`: :class:`ImageReadError`; the checks of a
  path and the recognition of its format;
* :mod:`~napari_ihcseg.io.layout`: conversion of any supported pixel layout
  to RGB ``uint8``;
* :mod:`~napari_ihcseg.io.image`: :func:`read_image`, the TIFF, PNG and JPEG
  readers, and :func:`file_pixel_size`;
* :mod:`~napari_ihcseg.io.recorded_pixel_size`: the pixel size a file's
  metadata records (TIFF tags, OME, ImageJ, Aperio, DPI);
* :mod:`~napari_ihcseg.io.lazy`: :func:`open_image` and :class:`LazyImage`;
* :mod:`~napari_ihcseg.io.labels`: :func:`read_labels` and
  :func:`write_labels`;
* :mod:`~napari_ihcseg.io.names`: :func:`image_stem`, the stem outputs are
  named after;
* :mod:`~napari_ihcseg.io.pyramid`: :func:`strided_pyramid`, lazy lower
  resolutions of a single-level image.
"""

from .errors import ImageReadError, ImageWarning
from .image import IMAGE_SUFFIXES, MAX_READ_PIXELS, file_pixel_size, read_image, read_image_and_pixel_size
from .labels import binary_mask_regions, labels_placement, read_labels, split_components, write_labels
from .lazy import CHUNK_SIDE as CHUNK_SIDE  # a public setting, though not in __all__
from .lazy import LazyImage, open_image
from .names import image_stem
from .pyramid import strided_pyramid

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_READ_PIXELS",
    "ImageReadError",
    "ImageWarning",
    "LazyImage",
    "image_stem",
    "strided_pyramid",
    "binary_mask_regions",
    "labels_placement",
    "open_image",
    "file_pixel_size",
    "read_image",
    "read_image_and_pixel_size",
    "read_labels",
    "split_components",
    "write_labels",
]
