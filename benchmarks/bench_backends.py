"""CPU back ends for the shipped default model: torch eager against ``torch.compile`` (inductor).

One 512 × 512 input at the default CPU precision of this machine, 2 threads,
best of three after a warm-up: eager, then the compiled module (its first
call, which compiles, timed apart), then eager again, with the largest
probability difference of the two. ``torch.compile`` needs a C++ compiler;
where it fails, the error is printed.

Usage::

    python benchmarks/bench_backends.py
"""

from __future__ import annotations

import sys
import time

import torch

from napari_ihcseg.inference import resolve_runtime
from napari_ihcseg.models import default_checkpoint_name, load_model


def best_of(fn, x, repeats: int = 3):
    best, out = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        out = fn(x)
        best = min(best, time.perf_counter() - started)
    return best, out


def main() -> int:
    torch.set_num_threads(2)
    runtime = resolve_runtime("cpu")
    model = load_model(default_checkpoint_name(), device="cpu").eval().to(memory_format=runtime.memory_format)
    x = torch.rand(1, 3, 512, 512).contiguous(memory_format=runtime.memory_format)
    print(f"{default_checkpoint_name()}, {runtime.describe()}, 512 × 512, 2 threads")
    with torch.inference_mode(), runtime.autocast():
        model(x)
        t_eager, ref = best_of(model, x)
        print(f"eager {t_eager:.2f} s", flush=True)
        started = time.perf_counter()
        try:
            compiled = torch.compile(model, dynamic=False)
            compiled(x)
        except Exception as error:  # noqa: BLE001 - report whatever stops the compiler
            print(f"torch.compile failed: {type(error).__name__}: {str(error)[:300]}")
            return 0
        print(f"torch.compile first call {time.perf_counter() - started:.1f} s", flush=True)
        t_comp, out = best_of(compiled, x)
        diff = max(float((torch.sigmoid(a.float()) - torch.sigmoid(b.float())).abs().max()) for a, b in zip(ref, out))
        print(f"compiled {t_comp:.2f} s: {t_eager / t_comp:.2f}x eager, max |dp| {diff:.1e}")
        print(f"eager again {best_of(model, x)[0]:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
