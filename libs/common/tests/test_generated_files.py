"""Generated artefacts in the repository match the code that generates them."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_score_event_schema_is_current():
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_event_schema.py"), "--check"],
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
