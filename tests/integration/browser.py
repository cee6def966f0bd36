"""Headless Debian Chromium for the browser tests, driven by Playwright through executable_path.

Chromium is a system package (scripts/ensure_system_packages.sh installs it); Playwright never
downloads a browser of its own. Run as root, Chromium gives its audio threads SCHED_FIFO
priority 99; with a fake microphone those threads can spin and starve every other process on the
machine (seen: a 2-core box at load 110 for ten minutes). So it is started without CAP_SYS_NICE,
and the real-time request simply fails.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def launch_chromium(playwright, folder: Path, extra_flags: list[str] = ()):
    """A Playwright Browser on the system Chromium, unable to raise itself to real-time priority."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Chromium with scripts/ensure_system_packages.sh")
    wrapper = folder / "chromium-no-realtime"
    wrapper.write_text(
        "#!/bin/sh\n"
        "# Normal scheduling whatever the caller had, and without CAP_SYS_NICE (bounding and\n"
        "# inheritable sets) so that RLIMIT_RTPRIO 0 refuses Chromium's own SCHED_FIFO requests.\n"
        f'exec chrt --other 0 setpriv --bounding-set=-sys_nice --inh-caps=-sys_nice -- {CHROMIUM} "$@"\n'
    )
    wrapper.chmod(0o755)
    return playwright.chromium.launch(executable_path=str(wrapper), headless=True, args=[*FLAGS, *extra_flags])
