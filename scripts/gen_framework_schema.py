"""Write the JSON Schema of a competency framework file (docs/frameworks/).

    python scripts/gen_framework_schema.py [--check]

``--check`` exits 1 when the committed schema differs from the code's (a test runs it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from generated_file import write_or_check

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "frameworks" / "framework.schema.json"


def schema() -> str:
    from poise_fusion.framework import Framework

    document = Framework.model_json_schema()
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    document["$id"] = "https://poise.invalid/schemas/framework.schema.json"
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def main() -> int:
    return write_or_check(OUT, schema, __doc__.splitlines()[0], "gen_framework_schema.py")


if __name__ == "__main__":
    sys.exit(main())
