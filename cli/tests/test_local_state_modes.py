"""POISE_HOME and the SQLite files in it are private to their owner: they hold candidates' names,
emails, links and demographics. A real `poise` process, under the usual umask 022."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_command_makes_poise_home_0700_and_the_database_0600(tmp_path):
    home = tmp_path / "not-yet" / "poise"
    run = subprocess.run(
        [sys.executable, "-m", "poise", "keys", "create", "--tenant", "acme", "--scopes", "admin"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "POISE_HOME": str(home)},
        preexec_fn=lambda: os.umask(0o022),
    )
    assert run.returncode == 0, run.stderr
    assert mode(home) == 0o700
    files = {p.name: mode(p) for p in home.glob("poise.db*")}
    assert "poise.db" in files and set(files.values()) == {0o600}, files


def test_an_existing_home_open_to_others_is_named_on_stderr(tmp_path):
    home = tmp_path / "poise"
    home.mkdir()
    os.chmod(home, 0o755)
    run = subprocess.run([sys.executable, "-m", "poise", "keys", "list"], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "POISE_HOME": str(home)})
    assert run.returncode == 0, run.stderr
    assert "open to other users (mode 755); `chmod 700` it" in run.stderr
    assert mode(home / "poise.db") == 0o600
