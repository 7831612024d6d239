"""Table 2 beside the paper from `glintru train` run directories; the same as `glintru reproduce`
(the logic lives in glintru/analysis/reproduction.py, which documents it).

    python analysis/reproduction.py runs/beauty/* --paper beauty --reference glintru --out docs/beauty.md
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import glintru  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from glintru.analysis.reproduction import (
    METRICS,
    REFERENCE_VARIANT,
    arm,
    arm_name,
    label_arms,
    read_run,
    render,
    render_curve,
    summarise,
)
from glintru.analysis.reproduction import main as _main

__all__ = [
    "METRICS",
    "REFERENCE_VARIANT",
    "arm",
    "arm_name",
    "label_arms",
    "main",
    "read_run",
    "render",
    "render_curve",
    "summarise",
]


def main(argv: list[str] | None = None) -> int:
    return _main(argv)


if __name__ == "__main__":
    sys.exit(main())
