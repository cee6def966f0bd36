"""A writer of audit entries in a process of its own, for the concurrency tests (run as a script).

``python audit_writer.py DATABASE_URL ACTOR COUNT GO_FILE``: prints "ready" once connected, waits for
GO_FILE to exist (so that every writer starts together), then appends COUNT entries.
"""

import sys
import time
from pathlib import Path

from poise_common.audit_trail import AuditTrail
from poise_common.db.engine import create_db_engine, session_factory

if __name__ == "__main__":
    url, actor, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    engine = create_db_engine(url)
    trail = AuditTrail(session_factory(engine))
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.005)
    for i in range(count):
        trail.record(tenant="acme", actor=actor, action="scorecard.read", interview_id=f"iv{i}", detail={"i": i})
        time.sleep(0.002)  # requests come a little apart; back to back, SQLite's busy wait lets one writer run ahead
    engine.dispose()
