"""Write the JSON Schema of the score events on ``scorecards.v1`` (docs/events/).

    python scripts/gen_event_schema.py [--check]

``--check`` exits 1 when the committed schema differs from the code's (a test runs it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "events" / "scorecards.v1.schema.json"


def schema() -> str:
    from pydantic import BaseModel, Field

    from poise_common.messages import SCHEMA_VERSION, ScoreEvent

    class ScoreEventEnvelope(BaseModel):
        """A message on scorecards.v1: the common envelope around a ScoreEvent. Key: interview_id."""

        interview_id: str
        answer_id: str = Field("", description="Set for answer.scored; empty for interview events.")
        tenant: str
        stream: str = Field(description='Always "score".')
        seq: int
        schema_version: int = Field(SCHEMA_VERSION)
        created_at: float = Field(description="Unix time the event was made.")
        trace_id: str
        payload: ScoreEvent

    document = ScoreEventEnvelope.model_json_schema()
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    document["$id"] = "https://poise.invalid/schemas/scorecards.v1.schema.json"
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed schema is stale")
    args = parser.parse_args()
    text = schema()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.relative_to(REPO)} is stale: run python scripts/gen_event_schema.py", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
