"""A search's seed reruns beside a preset at the same seeds; the same as `glintru compare` (the logic
lives in glintru/analysis/rerun.py, which documents it).

    python analysis/compare.py results/beauty-tpe results/beauty-preset --json cmp.json
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import glintru  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from glintru.analysis.rerun import main as _main


def main(argv: list[str] | None = None) -> int:
    return _main(argv)


if __name__ == "__main__":
    sys.exit(main())
