"""Copy a trained checkpoint into the package as a shipped default, with its model card.

The card gets the licences of the training data, the validation figures of
the training run (``metrics``: dice, aji, pq on the held-out split), and, when
given, the held-out evaluation written by ``benchmarks/evaluate_models.py
--json`` (H&E per source, Ki-67 detection F1 and |Δ % positive|). The weights
are re-saved through ``save_checkpoint``, so the sha256 in ``config.json`` is
recomputed and checked on every load; the instance settings tuned for the
checkpoint (``scripts/tune_instances.py``, or the end of a training run) go
with them.

Usage::

    python scripts/ship_checkpoint.py /work/runs/harunet-lite/best harunet-lite-ihc \\
        --evaluation results.json --recommended-for cpu
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "src" / "napari_ihcseg" / "weights"
#: Shipped weights must stay small enough for the package.
MAX_BYTES = 10 * 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="checkpoint folder (e.g. OUT/best of a training run)")
    parser.add_argument("name", help="name of the shipped checkpoint (its folder under napari_ihcseg/weights)")
    parser.add_argument("--evaluation", default=None, help="JSON from benchmarks/evaluate_models.py --json")
    parser.add_argument("--recommended-for", action="append", default=[], help="device types (cpu, cuda)")
    parser.add_argument("--lineage", default=None,
                        help="how the weights came about when they were fine-tuned from another checkpoint "
                             "(goes into the card; replaces a local base_checkpoint path)")
    parser.add_argument("--weights-dtype", choices=["float32", "float16"], default="float32",
                        help="storage type of the weights (float16 halves the file; loading casts back)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)

    from napari_ihcseg.models import load_checkpoint, read_checkpoint_config, save_checkpoint

    doc = read_checkpoint_config(args.checkpoint)
    card = dict(doc.get("card") or {})
    data = card.get("data") or []
    licences = sorted({str(d.get("licence")) for d in data if isinstance(d, dict) and d.get("use") == "train"
                       and d.get("licence")})
    if licences:
        card["licence"] = "; ".join(licences)
    validation = (card.get("validation") or {}).get("metrics") or {}
    metrics = {k: validation[f"val_{k}"] for k in ("dice", "aji", "pq") if f"val_{k}" in validation}
    if args.evaluation:
        results = json.loads(Path(args.evaluation).read_text())
        if isinstance(results, dict):
            results = [results]
        # The model's own row: not the classical baseline, not the test-time-augmented run,
        # not the run with the default instance settings.
        plain = [r for r in results if not r.get("tta") and not r.get("default_instances")
                 and r.get("model") != "classical watershed"]
        if not plain:
            raise SystemExit(f"{args.evaluation}: no plain evaluation of a model in it")
        result = plain[0]
        card["held_out_evaluation"] = {
            "command": f"python benchmarks/evaluate_models.py --model {args.name} --baseline",
            "he": result["he"], "ki67": result["ki67"],
        }
        he = result["he"]["all"]
        metrics = {"dice": he["dice"], "aji": he["aji"], "pq": he["pq"],
                   "ki67_detection_f1": result["ki67"]["mean_f1"],
                   "ki67_abs_delta_percent_positive": result["ki67"]["mean_abs_delta_percent_positive"]}
    card["metrics"] = metrics
    if args.recommended_for:
        card["recommended_for"] = args.recommended_for
    training = dict(doc.get("training") or {})
    if args.lineage:
        card["lineage"] = args.lineage
        if training.get("base_checkpoint"):
            # A path on the training machine means nothing to a user: name the release instead.
            training["base_checkpoint"] = args.lineage
    model = load_checkpoint(args.checkpoint, device="cpu")
    out = WEIGHTS / args.name
    if args.weights_dtype != "float32":
        card["weights_dtype"] = args.weights_dtype
    size = sum(v.numel() * (2 if args.weights_dtype == "float16" and v.is_floating_point() else v.element_size())
               for v in model.state_dict().values())
    if size > MAX_BYTES:
        raise SystemExit(f"{args.checkpoint}: weights would be {size / 2**20:.1f} MB as {args.weights_dtype}, over "
                         f"the {MAX_BYTES / 2**20:.0f} MB limit" + ("" if args.weights_dtype == "float16" else
                                                                  "; try --weights-dtype float16"))
    save_checkpoint(model, out, training=training, card=card, overwrite=args.overwrite,
                    weights_dtype=args.weights_dtype, instances=doc["instances"])
    print(f"shipped {out} ({(out / 'weights.safetensors').stat().st_size / 2**20:.1f} MB), metrics {metrics}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
