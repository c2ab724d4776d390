"""Inference speed: every model on the CPU (fp32 and bf16 side by side), a full field end to end, and the GPU.

1. **CPU throughput** per registered model, on a 512 × 960 image (two
   overlapping 512 × 512 tiles, one batch of the default CPU batch size),
   float32 and bfloat16 autocast measured alternately in the same run, with
   the agreement of the two (largest and mean probability difference, share
   of pixels whose mask decision flips). Untrained weights are fine for speed;
   pass ``--model`` with a trained checkpoint for a meaningful agreement.
2. **End to end on the CPU**: ``segment_image`` (tiles, blending, instances)
   on a 4096 × 3286 field with the default model (the default shipped
   checkpoint, else harunet-lite), at the default precision. An untrained
   network finds no nuclei, which would leave the instance step idle, so its
   outputs are replaced by a fixed hematoxylin detector's (the network still
   runs and is timed).
3. **CUDA** (when present): the full HARU-Net at bf16 on the 4096 × 3286 field
   end to end, including the instance step, with the achieved TFLOP/s
   (FLOPs of one tile counted by ``torch.utils.flop_counter.FlopCounterMode``,
   times the tiles run) beside the card's dense bf16 peak.

Usage::

    python benchmarks/bench_inference.py                  # all of it
    python benchmarks/bench_inference.py --skip-models    # only the end-to-end runs
    python benchmarks/bench_inference.py --field 2048x1643 --models harunet-lite r2unet-lite
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from napari_ihcseg.data.synthetic import make_synthetic_ihc
from napari_ihcseg.inference import plan_tiles, predict, resolve_runtime, segment_image
from napari_ihcseg.models import build_model, default_checkpoint_name, list_models, load_model
from napari_ihcseg.stain import H_DAB

#: Dense bf16 tensor-core peaks from the vendors' spec sheets, TFLOP/s.
BF16_PEAK_TFLOPS = {"H200": 989.5, "H100 SXM": 989.5, "H100 PCIe": 756.0, "H100": 989.5, "A100": 312.0,
                    "L40S": 362.0, "L4": 121.0, "A10": 125.0, "RTX 4090": 165.2}


class HematoxylinDetector(nn.Module):
    """A fixed nucleus detector: smoothed hematoxylin OD as the mask, its gradient as the contour.

    It finds the synthetic nuclei well enough (AJI about 0.7) to give the
    instance step a realistic load when the network's weights are untrained.
    """

    size_multiple = 32

    def __init__(self) -> None:
        super().__init__()
        inv = np.linalg.inv(H_DAB.matrix).astype(np.float32)
        self.register_buffer("h_vec", torch.from_numpy(inv[:, 0].copy()).view(1, 3, 1, 1))
        g = np.exp(-0.5 * np.arange(-2, 3) ** 2)
        g = np.outer(g, g) / np.outer(g, g).sum()
        self.register_buffer("blur", torch.from_numpy(g.astype(np.float32)).view(1, 1, 5, 5))
        sx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32) / 8
        self.register_buffer("sobel", torch.from_numpy(np.stack([sx, sx.T])).view(2, 1, 3, 3))

    def forward(self, x):
        x = x.float()
        od = -torch.log10(x.clamp_min(1 / 255))
        h = F.conv2d((od * self.h_vec).sum(1, keepdim=True), self.blur, padding=2)
        edge = F.conv2d(h, self.sobel, padding=1).pow(2).sum(1, keepdim=True).add(1e-6).sqrt()
        return 12.0 * (h - 0.3), 40.0 * (edge - 0.07)


class NetworkWithDetector(nn.Module):
    """Runs ``net`` (its time and memory count) but returns the detector's output.

    For benchmarks of whole pipelines with untrained weights, whose output
    holds no nuclei and would leave the instance step idle.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.detector = HematoxylinDetector()
        self.size_multiple = getattr(net, "size_multiple", 32)

    def forward(self, x):
        self.net(x)
        with torch.autocast(x.device.type, enabled=False):
            return self.detector(x)


def is_untrained(spec: str) -> bool:
    """Whether ``spec`` names an architecture (random weights) rather than a checkpoint."""
    return spec in list_models()


def field_image(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A synthetic IHC field of ``shape``: a 1024 × 1024 field repeated (fast to make)."""
    base = make_synthetic_ihc((1024, 1024), seed=seed).image
    reps = (-(-shape[0] // 1024), -(-shape[1] // 1024), 1)
    return np.ascontiguousarray(np.tile(base, reps)[: shape[0], : shape[1]])


def tile_flops(model: torch.nn.Module, tile: int | tuple[int, int], device: torch.device,
               dtype: torch.dtype) -> int:
    """FLOPs of one forward pass of one ``tile`` × ``tile`` (or ``(h, w)``) input.

    Counted with the layers unfused: ``FlopCounterMode`` knows ``aten``
    convolutions, not the oneDNN fused ones, which compute the same
    products.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from napari_ihcseg.models import layer_fusion

    h, w = (tile, tile) if isinstance(tile, int) else tile
    x = torch.rand(1, 3, h, w, device=device)
    counter = FlopCounterMode(display=False)
    with (layer_fusion.switched(FUSE_ACTIVATION=False), torch.inference_mode(),
          torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32), counter):
        model(x)
    return int(counter.get_total_flops())


def timed_predict(image, model, **kwargs) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
    started = time.perf_counter()
    out = predict(image, model, **kwargs)
    return time.perf_counter() - started, (out.mask_prob, out.contour_prob)


def bench_models(names: list[str], image: np.ndarray, tile: int, repeats: int) -> None:
    mpx = image.shape[0] * image.shape[1] / 1e6
    print(f"\n== CPU throughput, {torch.get_num_threads()} thread(s), {image.shape[1]}x{image.shape[0]} image, "
          f"tile {tile} ==")
    print(f"{'model':<16} {'params M':>9} {'GFLOP/tile':>11} {'fp32 MP/s':>10} {'bf16 MP/s':>10} {'speed-up':>9} "
          f"{'max |dp|':>9} {'mean |dp|':>10} {'mask flips':>11}")
    for name in names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an untrained architecture warns
            model = load_model(name, device="cpu")
        params = sum(p.numel() for p in model.parameters()) / 1e6
        flops = tile_flops(model, tile, torch.device("cpu"), torch.float32)
        options = dict(tile=tile, overlap=min(64, tile // 4), device="cpu")
        times: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for _ in range(repeats + 1):  # the first round warms up oneDNN for this shape and dtype
            for amp in times:
                t, (probs, _) = timed_predict(image, model, amp=amp, **options)
                times[amp].append(t)
                if amp == "fp32":
                    m32 = probs
                else:
                    m16 = probs
        t32, t16 = min(times["fp32"][1:]), min(times["bf16"][1:])
        diff = np.abs(m16 - m32)
        flips = np.mean((m16 > 0.5) != (m32 > 0.5))
        print(f"{name:<16} {params:>9.1f} {flops / 1e9:>11.1f} {mpx / t32:>10.4f} {mpx / t16:>10.4f} "
              f"{t32 / t16:>8.2f}x {diff.max():>9.4f} {diff.mean():>10.5f} {flips:>10.4%}", flush=True)


def load_for_pipeline(spec: str | None, device: str) -> tuple[str, nn.Module]:
    """The model for an end-to-end run: ``spec`` or the default; untrained ones get the detector."""
    name = spec or default_checkpoint_name(device) or "harunet-lite"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an untrained architecture warns
        model = load_model(name, device=device)
    if is_untrained(name):
        return f"{name} (untrained; outputs from a fixed hematoxylin detector)", NetworkWithDetector(model)
    return name, model


def bench_field_cpu(image: np.ndarray, spec: str | None) -> None:
    name, model = load_for_pipeline(spec, "cpu")
    print(f"\n== End to end on the CPU: {name}, {image.shape[1]}x{image.shape[0]} field ==")
    predict(image[:512, :512], model, device="cpu")  # warm up oneDNN
    n_tiles = len(plan_tiles(image.shape).boxes)
    tiles_done_at = []

    def progress(done: int, total: int) -> None:
        if done == n_tiles:  # every tile predicted and blended; the instance step is next
            tiles_done_at.append(time.perf_counter())

    started = time.perf_counter()
    labels = segment_image(image, model, device="cpu", progress=progress).labels
    total = time.perf_counter() - started
    t_predict = tiles_done_at[0] - started
    print(f"{n_tiles} tiles, {labels.max()} nuclei, precision {resolve_runtime('cpu').precision}")
    print(f"tiles {t_predict:.1f} s + instances {total - t_predict:.1f} s = {total:.1f} s end to end "
          f"({image.shape[0] * image.shape[1] / 1e6 / total:.3f} MP/s)", flush=True)


def peak_for(card: str) -> float | None:
    for key, value in BF16_PEAK_TFLOPS.items():
        if key.lower() in card.lower():
            return value
    return None


def bench_cuda(image: np.ndarray, repeats: int) -> None:
    device = torch.device("cuda")
    card = torch.cuda.get_device_name(0)
    torch.backends.cudnn.benchmark = True
    net = build_model("harunet").to(device).eval()
    model = NetworkWithDetector(net).to(device)  # untrained weights: the detector supplies the nuclei
    print(f"\n== CUDA: harunet (full, untrained + detector outputs), bf16, {image.shape[1]}x{image.shape[0]} field, "
          f"{card} ==")
    segment_image(image, model, device="cuda", amp="bf16")  # warm up: cuDNN autotuning, batch-size probe
    runs = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        started = time.perf_counter()
        info = predict(image, model, device="cuda", amp="bf16").info
        torch.cuda.synchronize()
        t_predict = time.perf_counter() - started
        started = time.perf_counter()
        labels = segment_image(image, model, device="cuda", amp="bf16").labels
        torch.cuda.synchronize()
        runs.append((time.perf_counter() - started, t_predict, info, int(labels.max())))
    total, t_predict, info, nuclei = min(runs, key=lambda r: r[0])
    flops = tile_flops(net, info.tile_shape, device, torch.bfloat16) * info.tiles
    achieved = flops / t_predict / 1e12
    peak = peak_for(card)
    print(f"{info.tiles} tiles, batch {info.batch_size}, {nuclei} nuclei")
    print(f"end to end (tiles + blending + instances): {total:.3f} s   target < 1 s: "
          f"{'met' if total < 1 else 'NOT met'}")
    print(f"prediction alone: {t_predict:.3f} s, {flops / 1e12:.2f} TFLOP -> {achieved:.1f} TFLOP/s achieved")
    print(f"card bf16 dense peak: {peak if peak else 'unknown'} TFLOP/s"
          + (f" -> {achieved / peak:.1%} of peak" if peak else ""), flush=True)


def parse_shape(text: str) -> tuple[int, int]:
    w, h = (int(v) for v in text.lower().split("x"))
    return h, w


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    parser.add_argument("--models", nargs="+", default=None, help="models for the throughput table (default: all)")
    parser.add_argument("--model", default=None,
                        help="checkpoint for the CPU end-to-end run (default: the shipped default)")
    parser.add_argument("--tile", type=int, default=512, help="tile size for the throughput table (default: 512)")
    parser.add_argument("--field", type=parse_shape, default=(3286, 4096), help="field WxH (default: 4096x3286)")
    parser.add_argument("--skip-models", action="store_true", help="skip the per-model throughput table")
    parser.add_argument("--skip-field", action="store_true", help="skip the CPU end-to-end run")
    parser.add_argument("--cpu-repeats", type=int, default=2,
                        help="timed runs per model and precision after a warm-up run; the fastest counts (default: 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed CUDA runs (default: 3)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, "
          f"CUDA {'yes: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no'}")
    if not args.skip_models:
        # Two overlapping tiles side by side: one batch of the default CPU batch size (2).
        overlap = min(64, args.tile // 4)
        bench_models(args.models or list_models(), field_image((args.tile, 2 * args.tile - overlap), seed=1),
                     args.tile, args.cpu_repeats)
    field = field_image(args.field)
    if not args.skip_field:
        bench_field_cpu(field, args.model)
    if torch.cuda.is_available():
        bench_cuda(field, args.repeats)
    else:
        print("\nno CUDA device: the GPU figures need a machine with one")
    return 0


if __name__ == "__main__":
    sys.exit(main())
