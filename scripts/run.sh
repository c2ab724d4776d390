#!/usr/bin/env bash
# Create the environment if needed, install, and open napari with the plugin
# docked on the bundled IHC sample. Without a display, run the headless
# pipeline on the same sample and print the score summary instead.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$ROOT"

if [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ] || [ "$(uname)" = "Darwin" ]; then
    exec python -m napari_ihcseg "$@"
fi
echo "[ihcseg] no display found: running the headless pipeline on the synthetic Ki-67 field"
exec python -m napari_ihcseg --headless "$@"
