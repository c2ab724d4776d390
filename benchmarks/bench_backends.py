"""CPU back ends for the shipped default model: eager with or without fused layers, and ``torch.compile``.

One 512 × 512 input at the default CPU precision of this machine, 2 threads,
best of three after a warm-up, side by side in one run and alternated so
that all see the same load: eager with the convolution, the eval-mode batch
norm and the activation as separate passes and a new buffer for every sum
(as before :mod:`napari_ihcseg.models.layer_fusion`), with the batch norm
folded into the convolution, with the activation fused into it as well,
with the sums written in place too, and with the decoder's 1×1 convolution
applied before the upsampling, without the concatenation (today); then, with ``--compile``, the
compiled module (its first call, which compiles, timed apart). Each prints
its speed-up over the first and the largest probability difference from it. ``torch.compile`` needs a C++ compiler; where it
fails, the error is printed.

Usage::

    python benchmarks/bench_backends.py [--compile] [--size 512] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from napari_ihcseg.inference import resolve_runtime
from napari_ihcseg.models import default_checkpoint_name, layer_fusion, load_model


def best_of(fn, x, repeats: int = 3):
    best, out = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        out = fn(x)
        best = min(best, time.perf_counter() - started)
    return best, out


def max_dp(ref, out) -> float:
    return max(float((torch.sigmoid(a.float()) - torch.sigmoid(b.float())).abs().max()) for a, b in zip(ref, out))


VARIANTS = {  # name: the layer_fusion switches
    "separate passes, new buffer per sum (before)": dict(FOLD_BATCH_NORM=False, FUSE_ACTIVATION=False,
                                                         SUM_IN_PLACE=False, SPLIT_SKIP_CONV=False),
    "batch norm folded": dict(FUSE_ACTIVATION=False, SUM_IN_PLACE=False, SPLIT_SKIP_CONV=False),
    "+ activation fused": dict(SUM_IN_PLACE=False, SPLIT_SKIP_CONV=False),
    "+ sums in place": dict(SPLIT_SKIP_CONV=False),
    "+ decoder 1x1 conv before upsampling (today)": {},
}


def eager(model, x, *, flags):
    with layer_fusion.switched(**flags):
        return model(x)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="input side (a multiple of 32)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the alternated eager variants")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (minutes to compile)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    runtime = resolve_runtime("cpu")
    model = load_model(default_checkpoint_name(), device="cpu").eval().to(memory_format=runtime.memory_format)
    x = torch.rand(1, 3, args.size, args.size).contiguous(memory_format=runtime.memory_format)
    print(f"{default_checkpoint_name()}, {runtime.describe()}, {args.size} × {args.size}, 2 threads")
    with torch.inference_mode(), runtime.autocast():
        times = dict.fromkeys(VARIANTS, float("inf"))
        outputs = {}
        for flags in VARIANTS.values():  # warm-up
            eager(model, x, flags=flags)
        for _ in range(args.repeats):  # alternated, so that every variant sees the same load
            for name, flags in VARIANTS.items():
                t, outputs[name] = best_of(lambda v, flags=flags: eager(model, v, flags=flags), x, 1)
                times[name] = min(times[name], t)
        base = next(iter(VARIANTS))
        ref = outputs[base]
        for name in VARIANTS:
            print(f"eager, {name:<46} {times[name]:7.3f} s  {times[base] / times[name]:5.2f}x  "
                  f"max |dp| vs before {max_dp(ref, outputs[name]):.1e}", flush=True)
        t_eager, ref = times[name], outputs[name]
        if not args.compile:
            return 0
        started = time.perf_counter()
        try:
            compiled = torch.compile(model, dynamic=False)
            compiled(x)
        except Exception as error:  # noqa: BLE001 - report whatever stops the compiler
            print(f"torch.compile failed: {type(error).__name__}: {str(error)[:300]}")
            return 0
        print(f"torch.compile first call {time.perf_counter() - started:.1f} s", flush=True)
        t_comp, out = best_of(compiled, x)
        print(f"compiled {t_comp:.2f} s: {t_eager / t_comp:.2f}x eager, max |dp| {max_dp(ref, out):.1e}")
        print(f"eager again {best_of(model, x)[0]:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
