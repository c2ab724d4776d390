#!/usr/bin/env bash
# Create or update the environment, then run the whole test suite.
# Widget tests need a display: without one, they run under xvfb-run when it is
# installed (Debian: apt-get install xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0),
# and are skipped otherwise.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$ROOT"

PYTEST=(python -m pytest "$@")
if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ] && command -v xvfb-run >/dev/null 2>&1; then
    export QT_QPA_PLATFORM=xcb
    exec xvfb-run -a -s "-screen 0 1600x1000x24" "${PYTEST[@]}"
fi
exec "${PYTEST[@]}"
