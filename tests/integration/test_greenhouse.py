"""Greenhouse Assessment Partner API on a real `poise serve`, against a local stand-in for Greenhouse.

The same flow runs on the distributed stack in test_distributed.py.
"""

from __future__ import annotations

import httpx

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


def test_a_default_server_refuses_orders_it_cannot_keep_and_opens_nothing(tmp_path):
    """Without the opt-in, a callback into the server's own network is refused, as is a malformed email."""
    with serve(tmp_path / "home") as served:
        key = served.key("acme", "interviews:write,scores:read")
        order = {"partner_test_id": "generic", "url": "https://app.greenhouse.io/v1/partner_callback/abc123",
                 "candidate": {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"}}
        refused = [
            {**order, "url": f"{served.base}/metrics"},
            {**order, "url": "http://localhost:1/"},
            {**order, "url": "http://169.254.169.254/latest/meta-data/"},
            {**order, "candidate": {**order["candidate"], "email": "ada.l@"}},
        ]
        for body in refused:
            response = httpx.post(f"{served.base}/ats/greenhouse/send_test", json=body, auth=(key, ""), timeout=30)
            assert response.status_code == 422, response.text
        listed = httpx.get(f"{served.base}/v1/interviews", headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert listed.status_code == 200 and listed.json()["items"] == []
    assert_no_candidate_data(served.log.read_text())
