"""Where and how a model runs: device, precision, memory layout, batch size.

:func:`resolve_runtime` turns the user's ``device`` and ``amp`` requests into a
:class:`Runtime`: the device from :func:`napari_ihcseg.device.resolve_device`
(``"auto"`` picks CUDA, then MPS, then the CPU), the autocast dtype, and
whether tensors use the ``channels_last`` layout.

Precision, with ``amp=True``:

- CUDA: bfloat16 autocast where the card supports it, else float16.
- CPU: bfloat16 autocast when oneDNN reports native bf16 support (AVX512-BF16
  or AMX); with channels_last and batches of two 512² tiles it ran the registered
  models 1.1–1.7× faster than float32 on an AVX512-BF16 CPU, and moves
  probabilities by at most a few hundredths (``tests/test_predict.py`` checks
  the agreement, ``docs/inference.md`` gives the figures). CPUs without it
  emulate bf16 slowly, so they stay at float32.
- MPS: float16 autocast.

Batch size on CUDA comes from free memory (``torch.cuda.mem_get_info``): one
tile is run once to measure its peak memory (the *per-tile* cost,
``bytes_per_pixel * tile area``), then the batch is
``MEMORY_FRACTION * free / per_tile``, at most :data:`MAX_BATCH`. On MPS the
free memory is the recommended maximum less what the driver holds, and the
per-tile cost is :data:`FALLBACK_BYTES_PER_PIXEL` times the tile area. On the
CPU the batch is :data:`CPU_BATCH_PIXELS` over the tile area.
"""

from __future__ import annotations

import logging
import weakref
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from ..device import describe_device, resolve_device
from .config import PRECISION_NAMES

log = logging.getLogger("napari_ihcseg.inference")

#: Precision names accepted for ``amp`` besides ``True`` / ``False``.
PRECISIONS = dict(zip(PRECISION_NAMES, (torch.bfloat16, torch.float16, torch.float32)))
#: Batch sizes where free memory is not queried (the CPU has its pixel budget).
DEFAULT_BATCH = {"cpu": 1, "mps": 4}
#: Pixels per forward pass on the CPU: the batch is this over the tile area,
#: at least one tile (2 tiles of 512 × 512; one of the default plan's larger
#: tiles, which hold up to 1024² pixels). oneDNN already spreads one tile over
#: every thread; the budget bounds the working memory (a megapixel of
#: harunet-lite needs about 1.6 GB in bf16, 3.3 GB in float32), so
#: ``tile=512`` keeps the memory of a pass at what two 512² tiles need.
CPU_BATCH_PIXELS = 2 * 512 * 512
#: Upper bound for a batch chosen from free memory.
MAX_BATCH = 128
#: Share of the free device memory a batch may use; the rest is left for the
#: stitching buffers, the allocator's fragmentation and other processes.
MEMORY_FRACTION = 0.6
#: Peak memory per input pixel assumed where it is not measured (MPS). The
#: peak working memory of one forward pass, measured on the CPU (growth of the
#: resident set over a 256 × 256 tile), is 3.5 KB/pixel for the full HARU-Net
#: in float32 and 1.3 KB/pixel in bf16; harunet-lite 3.2 / 1.6, r2unet
#: 2.3 / 0.6, unet-resnet50 0.8 / 0.1. 4 KiB covers them all.
FALLBACK_BYTES_PER_PIXEL = 4 * 1024

_TILE_BYTES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cpu_supports_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively on this CPU (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - torch built without oneDNN
        return False


@dataclass(frozen=True)
class Runtime:
    """The device, the autocast dtype and the memory layout for inference.

    Parameters
    ----------
    device : torch.device
        Where the model runs.
    dtype : torch.dtype
        The autocast dtype; ``torch.float32`` means no autocast.
    channels_last : bool
        Use the NHWC memory layout (faster convolutions on tensor cores and
        with oneDNN).
    """

    device: torch.device
    dtype: torch.dtype = torch.float32
    channels_last: bool = True

    @property
    def precision(self) -> str:
        """``"bf16"``, ``"fp16"`` or ``"fp32"``."""
        return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.dtype, "fp32")

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self):
        """A context manager that enables autocast at :attr:`dtype` (or does nothing)."""
        if self.dtype == torch.float32:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def describe(self) -> str:
        """E.g. ``"cuda:0 (NVIDIA H200), bf16, channels_last"``."""
        layout = ", channels_last" if self.channels_last else ""
        return f"{describe_device(self.device)}, {self.precision}{layout}"


def resolve_runtime(device: str | torch.device = "auto", *, amp: bool | str = True,
                    channels_last: bool = True) -> Runtime:
    """Choose the device and the precision for inference.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``. A device that
        this machine lacks raises :class:`ValueError`.
    amp : bool or {"bf16", "fp16", "fp32"}
        ``True`` picks the fastest accurate precision for the device (see the
        module notes); ``False`` or ``"fp32"`` runs in float32.
    channels_last : bool
        Use the NHWC memory layout.

    Returns
    -------
    Runtime

    Examples
    --------
    >>> resolve_runtime("cpu", amp=False).describe().startswith("cpu")
    True
    """
    dev = resolve_device(device)
    if isinstance(amp, str):
        key = amp.strip().lower()
        if key not in PRECISIONS:
            raise ValueError(f"unknown precision {amp!r}; choose True, False or one of {', '.join(PRECISIONS)}")
        dtype = PRECISIONS[key]
    elif not isinstance(amp, bool):
        raise TypeError(f"amp must be a bool or one of {', '.join(PRECISIONS)}, got {amp!r}")
    elif not amp:
        dtype = torch.float32
    elif dev.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    elif dev.type == "cpu":
        dtype = torch.bfloat16 if cpu_supports_bf16() else torch.float32
    elif dev.type == "mps":
        dtype = torch.float16
    else:  # pragma: no cover - resolve_device knows no other kind
        dtype = torch.float32
    return Runtime(device=dev, dtype=dtype, channels_last=bool(channels_last))


def prepare_model(model: torch.nn.Module, runtime: Runtime) -> bool:
    """Put ``model`` in eval mode on the runtime's device and layout.

    Returns the model's previous ``training`` flag so the caller can restore it.
    The device and the memory layout stay changed (as with ``model.to``).
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    was_training = model.training
    model.eval()
    model.to(device=runtime.device, memory_format=runtime.memory_format)
    return was_training


def measure_tile_bytes(model: torch.nn.Module, tile_shape: tuple[int, int], runtime: Runtime) -> int | None:
    """Peak CUDA memory of one forward pass of one tile, in bytes (cached).

    Returns ``None`` off CUDA. The figure includes the input, every activation
    alive at the peak, and convolution workspaces.
    """
    if runtime.device.type != "cuda":
        return None
    key = (tuple(tile_shape), runtime.dtype, runtime.channels_last, str(runtime.device))
    cache = _TILE_BYTES.setdefault(model, {})
    if key in cache:
        return cache[key]
    dev = runtime.device
    torch.cuda.synchronize(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    base = torch.cuda.memory_allocated(dev)
    x = torch.zeros((1, 3, *tile_shape), device=dev).contiguous(memory_format=runtime.memory_format)
    with torch.inference_mode(), runtime.autocast():
        model(x)
    torch.cuda.synchronize(dev)
    cache[key] = max(int(torch.cuda.max_memory_allocated(dev) - base), 1)
    return cache[key]


def choose_batch_size(
    model: torch.nn.Module,
    tile_shape: tuple[int, int],
    runtime: Runtime,
    *,
    n_tiles: int | None = None,
    free_bytes: int | None = None,
    tile_bytes: int | None = None,
) -> int:
    """A batch size for ``tile_shape`` tiles that fits the device's free memory.

    Parameters
    ----------
    model : torch.nn.Module
        Measured once per tile shape on CUDA (see :func:`measure_tile_bytes`).
    tile_shape : (int, int)
        Tile height and width.
    runtime : Runtime
        Device and precision.
    n_tiles : int, optional
        The number of tiles to run; the batch is never larger.
    free_bytes, tile_bytes : int, optional
        Override the free memory and the per-tile cost (for tests and planning).

    Returns
    -------
    int
        At least 1. On the CPU: :data:`CPU_BATCH_PIXELS` over the tile area
        unless ``free_bytes`` is given.
    """
    if free_bytes is None and runtime.device.type == "cuda":
        free_bytes = int(torch.cuda.mem_get_info(runtime.device)[0])
    elif free_bytes is None and runtime.device.type == "mps":  # pragma: no cover - no MPS on the test machines
        free_bytes = max(int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory()), 0)
    if tile_bytes is None and free_bytes is not None:
        try:
            tile_bytes = measure_tile_bytes(model, tile_shape, runtime)
        except torch.OutOfMemoryError:
            free_cached_memory(runtime)
            log.warning("one %d×%d tile does not fit in free memory on %s; trying batch size 1",
                        tile_shape[0], tile_shape[1], runtime.device)
            return 1
        if tile_bytes is None:
            tile_bytes = FALLBACK_BYTES_PER_PIXEL * tile_shape[0] * tile_shape[1]
    if (free_bytes is None or tile_bytes is None) and runtime.device.type == "cpu":
        batch = CPU_BATCH_PIXELS // (tile_shape[0] * tile_shape[1])
    elif free_bytes is None or tile_bytes is None:
        batch = DEFAULT_BATCH.get(runtime.device.type, 1)
    else:
        batch = int(MEMORY_FRACTION * free_bytes // max(tile_bytes, 1))
        log.debug("batch size %d from %.1f GiB free and %.0f bytes/pixel", batch, free_bytes / 2**30,
                  tile_bytes / (tile_shape[0] * tile_shape[1]))
    batch = min(max(batch, 1), MAX_BATCH)
    if n_tiles is not None:
        batch = min(batch, max(int(n_tiles), 1))
    return batch


def free_cached_memory(runtime: Runtime) -> None:
    """Release the caching allocator's unused blocks (after an out-of-memory error)."""
    if runtime.device.type == "cuda":
        torch.cuda.empty_cache()
    elif runtime.device.type == "mps":  # pragma: no cover - no MPS on the test machines
        torch.mps.empty_cache()
