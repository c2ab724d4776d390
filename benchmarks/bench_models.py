"""Forward time per tile of every model: CPU fp32 vs channels_last + bf16, and CUDA.

Usage::

    python benchmarks/bench_models.py                       # lite models, 256 and 512 tiles
    python benchmarks/bench_models.py --models all --sizes 256 --repeats 2
    python benchmarks/bench_models.py --models runs/harunet-lite/best  # a checkpoint folder
    python benchmarks/bench_models.py --params              # parameter-count table only

For each model and tile size it prints the time of one forward pass on the
CPU (batch 1, best of ``--repeats`` after a warm-up pass; wall-clock and
process CPU seconds, the latter being steadier on a busy machine) in float32
with the default memory format, then with ``channels_last`` under
``torch.autocast("cpu", dtype=torch.bfloat16)``, their ratio, and how far the
bf16 outputs are from the fp32 ones: the largest absolute difference of the
sigmoid probabilities and the largest logit difference relative to the largest
fp32 logit. With CUDA available it does the same on the GPU (fp32 vs bf16
autocast). Random weights give logits near zero; pass a trained checkpoint
folder for differences representative of real use.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch

from napari_ihcseg.models import build_model, get_spec, list_models, load_checkpoint


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=["lite"],
        help="registry names, checkpoint folders, 'lite' (the lite models) or 'all' (default: lite)",
    )
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 512], help="tile sides (multiples of 32)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per setting; the best is reported")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-cuda", action="store_true", help="skip the GPU even if one is available")
    parser.add_argument("--params", action="store_true", help="print the parameter-count table and exit")
    return parser.parse_args()


def resolve_models(specs: list[str]) -> list[str]:
    names: list[str] = []
    for spec in specs:
        if spec == "all":
            names += list_models()
        elif spec == "lite":
            names += [n for n in list_models() if get_spec(n).lite]
        else:
            names.append(spec)
    return names


def make_model(spec: str) -> torch.nn.Module:
    """A registry model with batch-norm statistics primed on random input, or a checkpoint."""
    if Path(spec).is_dir():
        return load_checkpoint(spec, device="cpu")
    torch.manual_seed(0)
    model = build_model(spec)
    with torch.no_grad():
        model.train()(torch.rand(2, 3, 64, 64))
    return model.eval()


def time_forward(model, x, *, bf16: bool, device: str, repeats: int) -> tuple[float, float, tuple[torch.Tensor, ...]]:
    """Best wall time and best process CPU time of one forward pass, and its outputs."""
    with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
        outputs = model(x)  # warm-up: kernel selection, oneDNN primitive creation
        best_wall = best_cpu = float("inf")
        for _ in range(repeats):
            if device == "cuda":
                torch.cuda.synchronize()
            wall, cpu = time.perf_counter(), time.process_time()
            outputs = model(x)
            if device == "cuda":
                torch.cuda.synchronize()
            best_wall = min(best_wall, time.perf_counter() - wall)
            best_cpu = min(best_cpu, time.process_time() - cpu)
    return best_wall, best_cpu, tuple(o.float().cpu() for o in outputs)


def differences(reference, other) -> tuple[float, float]:
    sig = max(float((a.sigmoid() - b.sigmoid()).abs().max()) for a, b in zip(reference, other))
    rel = max(float((a - b).abs().max() / a.abs().max().clamp_min(1e-12)) for a, b in zip(reference, other))
    return sig, rel


def print_params(names: list[str]) -> None:
    rows = [(name, build_model(name)) for name in names]
    rows.append(("r2unet, share_recurrent_weights=False", build_model("r2unet", share_recurrent_weights=False)))
    print(f"{'model':<40}{'parameters':>14}")
    for label, model in rows:
        print(f"{label:<40}{sum(p.numel() for p in model.parameters()):>14,}")


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.params:
        print_params(list_models())
        return
    names = resolve_models(args.models)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; batch 1, best of {args.repeats}")
    print("\nCPU: wall = best wall-clock seconds; cpu = process CPU seconds of that pass (all threads)")
    print(
        f"{'model':<14}{'tile':>5}{'fp32 wall':>10}{'fp32 cpu':>9}{'bf16 wall':>10}{'bf16 cpu':>9}"
        f"{'speed-up wall':>14}{'cpu':>7}{'max|Δσ|':>10}{'max|Δz|/max|z|':>16}"
    )
    for name in names:
        model = make_model(name)
        fast = copy.deepcopy(model).to(memory_format=torch.channels_last)
        for size in args.sizes:
            x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(size))
            w32, c32, ref = time_forward(model, x, bf16=False, device="cpu", repeats=args.repeats)
            xc = x.contiguous(memory_format=torch.channels_last)
            w16, c16, out = time_forward(fast, xc, bf16=True, device="cpu", repeats=args.repeats)
            sig, rel = differences(ref, out)
            print(
                f"{name:<14}{size:>5}{w32:>10.3f}{c32:>9.3f}{w16:>10.3f}{c16:>9.3f}"
                f"{w32 / w16:>13.2f}×{c32 / c16:>6.2f}×{sig:>10.2e}{rel:>16.2e}"
            )
    if args.no_cuda or not torch.cuda.is_available():
        print("\nCUDA: not available")
        return
    tf32 = torch.backends.cudnn.allow_tf32
    print(f"\nCUDA ({torch.cuda.get_device_name(0)}; cuDNN TF32 for fp32 convolutions: {tf32})")
    print(
        f"{'model':<16}{'tile':>6}{'fp32 s':>9}{'bf16 s':>11}{'speed-up':>10}{'max|Δσ|':>10}{'max|Δz|/max|z|':>16}"
    )
    for name in names:
        model = make_model(name).cuda().to(memory_format=torch.channels_last)
        for size in args.sizes:
            x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(size))
            x = x.cuda().contiguous(memory_format=torch.channels_last)
            t32, _, ref = time_forward(model, x, bf16=False, device="cuda", repeats=args.repeats)
            t16, _, out = time_forward(model, x, bf16=True, device="cuda", repeats=args.repeats)
            sig, rel = differences(ref, out)
            print(f"{name:<16}{size:>6}{t32:>9.4f}{t16:>11.4f}{t32 / t16:>9.2f}×{sig:>10.2e}{rel:>16.2e}")


if __name__ == "__main__":
    main()
