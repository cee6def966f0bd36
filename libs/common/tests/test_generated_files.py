"""Generated artefacts in the repository match the code that generates them."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("script", ["gen_event_schema.py", "gen_framework_schema.py"])
def test_generated_schema_is_current(script):
    result = subprocess.run([sys.executable, str(REPO / "scripts" / script), "--check"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_score_event_schema_validates_a_real_event():
    import json

    from poise_common.messages import Envelope, ScoreEvent

    schema = json.loads((REPO / "docs" / "events" / "scorecards.v1.schema.json").read_text())
    event = Envelope(interview_id="i", tenant="t", stream="score", seq=0,
                     payload=ScoreEvent(type="interview.scored", scorecard={"competencies": []}))
    document = json.loads(event.to_bytes())
    assert set(schema["required"]) <= set(document)
    assert document["payload"]["type"] in schema["$defs"]["ScoreEvent"]["properties"]["type"]["enum"]
