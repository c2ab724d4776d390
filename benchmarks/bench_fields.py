"""Field-of-view speed: tiles fitted to the image, against one forward pass and the CPU's matmul peak.

For each field, measured side by side in one run with the shipped default
model at the default precision of the device:

- **computed / image**: pixels the network computes (tiles × tile area, from
  :func:`~napari_ihcseg.inference.planning.plan_tiles`) over the field's own
  pixels, beside the same ratio for the former fixed grid of 512-pixel tiles;
- **e2e / forward**: ``segment_image`` (tiling, blending, the instance step)
  over the time of one forward pass over the field's own pixels. Up to a
  megapixel that pass is timed on the field itself (padded to the size
  multiple); beyond, it is the field's pixels times the time per pixel of a
  1024 × 1024 pass (marked ``*``), as one pass over a larger field would not
  fit in memory;
- **network GFLOP/s**: FLOPs of the forward pass (``FlopCounterMode``, per
  pixel, from a 256 × 256 input) over its time, against the peak of a
  ``torch.matmul`` microbenchmark in the same run at the same precision,
  the better of one run before the fields and one after them (a shared
  machine's matmul varies from minute to minute; the bf16 peak is printed
  too).

The whole-slide row is the plan of ``segment_large`` over a slide of
``--slide`` pixels: every block with its halo (the default blocks, fitted
by :func:`~napari_ihcseg.inference.planning.fit_block` so that each region
is whole tiles, and the former 4096-pixel blocks), computed pixels summed
over blocks (halos included) over the slide's pixels;
``--time-block`` also times one such block end to end. The fields are
synthetic IHC (a 1024 × 1024 field repeated). Every timing is the best of
``--repeats`` after a warm-up.

Usage::

    python benchmarks/bench_fields.py                                   # 640², 1024², 2048², 4096 × 3286
    python benchmarks/bench_fields.py --fields 640x640 1024x1024 --repeats 3
    python benchmarks/bench_fields.py --time-block                      # and one whole-slide block
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from bench_inference import field_image, tile_flops

from napari_ihcseg.inference import InferenceConfig, plan_tiles, resolve_runtime, segment_image
from napari_ihcseg.inference.blocks import block_grid
from napari_ihcseg.inference.large import default_halo
from napari_ihcseg.inference.planning import fit_block
from napari_ihcseg.inference.runtime import cpu_supports_bf16
from napari_ihcseg.inference.tiling import round_up, tile_starts
from napari_ihcseg.models import default_checkpoint_name, load_model

FIELDS = ["640x640", "1024x1024", "2048x2048", "4096x3286"]
#: Largest field whose forward pass is timed on the field itself.
DIRECT_FORWARD_PIXELS = 1024 * 1024


def best_of(fn, repeats: int) -> float:
    """Best wall time of ``repeats`` calls of ``fn``."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of an ``n × n`` matmul at ``dtype``, best of ``repeats`` after a warm-up."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.matmul(a, b)
    return 2 * n**3 / best_of(lambda: torch.matmul(a, b), repeats) / 1e9


def forward_seconds(model, shape, runtime, repeats: int) -> float:
    """Time of one forward pass over an input of ``shape`` (padded to 32), at the runtime's precision."""
    x = torch.rand(1, 3, round_up(shape[0], 32), round_up(shape[1], 32))
    x = x.contiguous(memory_format=runtime.memory_format)
    with torch.inference_mode(), runtime.autocast():
        model(x)
        return best_of(lambda: model(x), repeats)


def fixed_grid_pixels(shape) -> int:
    """Pixels computed by the former fixed grid: 512-pixel tiles stepping by 448, the last one shifted back."""
    def axis(length: int) -> int:
        return 512 * len(tile_starts(length, 512, 64)) if length >= 512 else round_up(length, 32)
    return axis(shape[0]) * axis(shape[1])


#: The block size of ``segment_large`` before blocks were fitted to the tiles.
FORMER_BLOCK = 4096


def default_block(config: InferenceConfig) -> tuple[int, int]:
    """``(block, halo)`` of ``segment_large`` at its defaults for ``config``."""
    halo = default_halo(config)
    return fit_block(halo, tile=config.tile, overlap=config.overlap), halo


def slide_computed_ratios(shape, config: InferenceConfig, block: int, halo: int) -> tuple[float, float]:
    """Pixels computed for a whole slide by ``segment_large`` in blocks of ``block`` with ``halo``
    over its pixels: with the fitted tiles, and with the former fixed 512 grid."""
    fitted = fixed = 0
    for _, region in block_grid(shape, block, halo):
        plan = plan_tiles(region.shape, tile=config.tile, overlap=config.overlap)
        fitted += len(plan.boxes) * plan.tile_shape[0] * plan.tile_shape[1]
        fixed += fixed_grid_pixels(region.shape)
    return fitted / (shape[0] * shape[1]), fixed / (shape[0] * shape[1])


def parse_shape(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", nargs="+", default=FIELDS, help="fields as HxW (default: %(default)s)")
    parser.add_argument("--slide", default="40000x40000", help="whole slide for the block row (default %(default)s)")
    parser.add_argument("--time-block", action="store_true", help="also time one whole-slide block end to end")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    name = default_checkpoint_name()
    model = load_model(name, device="cpu")
    config = InferenceConfig(device="cpu")
    runtime = resolve_runtime("cpu", amp=config.amp, channels_last=config.channels_last)
    model.eval().to(memory_format=runtime.memory_format)
    print(f"{name}, {runtime.describe()}, {args.threads} threads, torch {torch.__version__}; "
          f"largest tile {config.tile}, least overlap {config.overlap}; CUDA: not measured here")

    # Without native bf16 the CPU emulates it at a small fraction of fp32: a 512² product is enough.
    native_bf16 = cpu_supports_bf16()
    peaks = {"fp32": matmul_peak(torch.float32),
             "bf16": matmul_peak(torch.bfloat16, 2048 if native_bf16 else 512, 5 if native_bf16 else 1)}
    peak = peaks[runtime.precision] if runtime.precision in peaks else peaks["fp32"]
    flops_per_px = tile_flops(model, 256, runtime.device, runtime.dtype) / 256**2
    print(f"torch.matmul: fp32 {peaks['fp32']:.1f} GFLOP/s, bf16 {peaks['bf16']:.1f} GFLOP/s"
          f"{'' if native_bf16 else ' (no native bf16 here: emulated)'}; "
          f"network {flops_per_px * 1e6 / 1e9:.0f} GFLOP per megapixel")

    header = (f"{'field':>12} {'tiles':>14} {'computed/image':>15} {'(512 grid)':>10} {'e2e s':>8} "
              f"{'forward s':>10} {'e2e/forward':>11} {'net GFLOP/s':>11} {'of peak':>8}")
    rows = [(parse_shape(f), False) for f in args.fields]
    if args.time_block:
        block, halo = default_block(config)
        rows.append(((block + 2 * halo, block + 2 * halo), True))
    lines = []
    for shape, is_block in rows:
        image = field_image(shape)
        plan = plan_tiles(shape, tile=config.tile, overlap=config.overlap)
        old_ratio = fixed_grid_pixels(shape) / (shape[0] * shape[1])
        segment_image(image[:64, :64], model, config)  # warm-up of the whole path
        e2e = best_of(lambda image=image: segment_image(image, model, config), args.repeats)
        pixels = shape[0] * shape[1]
        if pixels <= DIRECT_FORWARD_PIXELS:
            fwd, mark = forward_seconds(model, shape, runtime, args.repeats), " "
            fwd_pixels = round_up(shape[0], 32) * round_up(shape[1], 32)
        else:
            # Timed next to the field, not once at the start: a shared machine's speed drifts.
            per_px_1mp = forward_seconds(model, (1024, 1024), runtime, args.repeats) / 1024**2
            fwd, mark, fwd_pixels = per_px_1mp * pixels, "*", pixels
        gflops = flops_per_px * fwd_pixels / fwd / 1e9
        label = f"{shape[0]}x{shape[1]}" + (" blk" if is_block else "")
        tiles = f"{len(plan.boxes)}×{plan.tile_shape[0]}×{plan.tile_shape[1]}"
        lines.append((f"{label:>12} {tiles:>14} {plan.computed_ratio:>15.3f} {old_ratio:>10.3f} {e2e:>8.2f} "
                      f"{fwd:>9.2f}{mark} {e2e / fwd:>11.2f} {gflops:>11.1f}", gflops))
        print(f"  {label}: {e2e:.2f} s end to end", flush=True)
    # A shared machine's matmul varies from minute to minute: the peak is the best of two
    # microbenchmarks, one before the fields and one after, so that a slow moment does not inflate the shares.
    if runtime.precision == "fp32":
        after = matmul_peak(torch.float32)
        print(f"torch.matmul fp32 again after the fields: {after:.1f} GFLOP/s")
        peak = max(peak, after)
    print(header)
    for line, gflops in lines:
        print(f"{line} {gflops / peak:>7.0%}")
    slide = parse_shape(args.slide)
    block, halo = default_block(config)
    for size, name in ((block, "fitted"), (FORMER_BLOCK, "former")):
        fitted, fixed = slide_computed_ratios(slide, config, size, halo)
        print(f"whole slide {slide[0]}x{slide[1]} in {name} blocks of {size} with halos: computed/image "
              f"{fitted:.3f} (512 grid: {fixed:.3f})")
    print(f"peak used: {runtime.precision} matmul, {peak:.1f} GFLOP/s (the better of the two); "
          "* forward time from the per-pixel time of a 1024² pass timed right after the field")
    return 0


if __name__ == "__main__":
    sys.exit(main())
