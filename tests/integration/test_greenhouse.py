"""Greenhouse Assessment Partner API on a real `poise serve`, against a local stand-in for Greenhouse.

The same flow runs on the distributed stack in test_distributed.py.
"""

from __future__ import annotations

from greenhouse_flow import (
    PRIVATE_TARGETS, Deployment, assert_no_candidate_data, greenhouse_stand_in, run_greenhouse_flow,
)
from serve_process import serve


def test_greenhouse_orders_scores_and_calls_back(tmp_path, monkeypatch):
    for name, value in PRIVATE_TARGETS.items():  # the stand-in runs on 127.0.0.1
        monkeypatch.setenv(name, value)
    with greenhouse_stand_in() as callback, serve(tmp_path / "home") as served:
        key = served.key("acme", "interviews:write,scores:read")
        other = served.key("globex", "interviews:write,scores:read")
        run_greenhouse_flow(Deployment(served.base, served.base, served.base, key, other), callback)
    assert_no_candidate_data(served.log.read_text())
