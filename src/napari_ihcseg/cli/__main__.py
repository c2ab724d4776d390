"""``python -m napari_ihcseg.cli``: the same as the ``ihcseg`` command."""

import sys

from napari_ihcseg.cli import main

sys.exit(main())
