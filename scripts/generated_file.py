"""The shared command line of the scripts that write a generated file: write it, or --check it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_or_check(out: Path, make: Callable[[], str], description: str, script: str) -> int:
    """Write ``make()`` to ``out``; with --check, exit 1 (naming ``script``) when ``out`` differs."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true", help="fail if the committed file is stale")
    args = parser.parse_args()
    text = make()
    if args.check:
        if not out.exists() or out.read_text() != text:
            print(f"{out.relative_to(REPO)} is stale: run python scripts/{script}", file=sys.stderr)
            return 1
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out.relative_to(REPO)}")
    return 0
