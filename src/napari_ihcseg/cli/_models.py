"""``ihcseg models``: registered architectures and shipped checkpoints."""

from __future__ import annotations

import argparse
import json

from ._common import EXIT_OK, EXIT_SOME_FAILED, print_error


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "models", help="list architectures and shipped checkpoints",
        description="List the registered architectures with their parameter counts, and the "
                    "shipped checkpoints with their sha256, training data and validation metrics.",
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.set_defaults(func=run)


def _param_count(name: str) -> int:
    from napari_ihcseg.models import build_model

    return sum(p.numel() for p in build_model(name).parameters())


def collect() -> dict:
    """Architectures and shipped checkpoints as plain data."""
    from napari_ihcseg.models import default_checkpoint_name, list_models, read_checkpoint_config, shipped_checkpoints
    from napari_ihcseg.models.checkpoint import verify_weights

    archs = [{"name": n, "parameters": _param_count(n)} for n in list_models()]
    checkpoints = []
    errors = []
    for name, folder in shipped_checkpoints().items():
        try:
            doc = read_checkpoint_config(folder)
            verify_weights(folder, doc)
        except ValueError as exc:  # a damaged installation: the other checkpoints are still listed
            errors.append(str(exc) if str(folder) in str(exc) else f"{folder}: {exc}")
            continue
        card = doc.get("card", {}) or {}
        checkpoints.append({
            "name": name,
            "arch": doc.get("arch"),
            "sha256": doc.get("sha256"),
            "path": str(folder),
            "data": card.get("data"),
            "licence": card.get("licence") or card.get("license"),
            "metrics": card.get("metrics", {}),
            "instances": doc["instances"],
        })
    return {"architectures": archs, "checkpoints": checkpoints, "errors": errors,
            "default": {"cpu": default_checkpoint_name("cpu"), "cuda": default_checkpoint_name("cuda")}}


def run(args: argparse.Namespace) -> int:
    info = collect()
    for error in info["errors"]:
        print_error(f"{error}; reinstall napari-ihcseg to repair the shipped checkpoints")
    status = EXIT_SOME_FAILED if info["errors"] else EXIT_OK
    if args.json:
        print(json.dumps(info, indent=2))
        return status
    print("Architectures")
    for a in info["architectures"]:
        print(f"  {a['name']:<16} {a['parameters'] / 1e6:8.2f} M parameters")
    print("\nShipped checkpoints")
    if not info["checkpoints"]:
        print("  none (train one with `ihcseg train`)")
    for c in info["checkpoints"]:
        default = [d for d, n in info["default"].items() if n == c["name"]]
        print(f"  {c['name']}  ({c['arch']})" + (f"  default on {', '.join(default)}" if default else ""))
        print(f"    sha256   {c['sha256']}")
        if c["data"]:
            data = c["data"] if isinstance(c["data"], str) else ", ".join(
                f"{d.get('name')} ({d.get('use')})" if isinstance(d, dict) else str(d) for d in c["data"])
            print(f"    data     {data}")
        if c["licence"]:
            print(f"    licence  {c['licence']}")
        if c["metrics"]:
            shown = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in c["metrics"].items()
                              if not isinstance(v, (dict, list)))
            print(f"    metrics  {shown}")
        if c["instances"]:
            print("    instances " + ", ".join(f"{k} {v:g}" for k, v in c["instances"].items())
                  + " (tuned; used unless set)")
    return status
