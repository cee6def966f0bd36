"""Write the JSON Schema of the score events on ``scorecards.v1`` (docs/events/).

    python scripts/gen_event_schema.py [--check]

``--check`` exits 1 when the committed schema differs from the code's (a test runs it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from generated_file import write_or_check

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
    return write_or_check(OUT, schema, __doc__.splitlines()[0], "gen_event_schema.py")


if __name__ == "__main__":
    sys.exit(main())
