# Shared by scripts/run.sh and scripts/test.sh: create or update ./.venv.
#
# CPU machines get the CPU build of torch 2.13.0 first (a plain "torch" pulls
# several GB of CUDA wheels). GPU users: install a CUDA build of torch into
# .venv first (see README); an installed torch is kept as it is.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${IHCSEG_VENV:-$ROOT/.venv}"
PYTHON_BIN="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[ihcseg] creating the environment in $VENV"
    "$PYTHON_BIN" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"

if ! python -c "import torch" >/dev/null 2>&1; then
    echo "[ihcseg] installing torch==2.13.0 (CPU build)"
    python -m pip install --quiet "torch==2.13.0"
fi

# Reinstall only when the dependency list changed.
STAMP="$VENV/.ihcseg-installed"
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    echo "[ihcseg] installing napari-ihcseg and its dependencies"
    python -m pip install --quiet -e "$ROOT[pyqt6,dev]"
    echo "$WANT" > "$STAMP"
fi
