"""Scheduling priority of the work that has slack, so that the face model (the critical path of
an answer) gets the CPU first where they share it."""

from __future__ import annotations

import os


def run_nicer(pid: int, steps: int) -> None:
    """Make process (or, on Linux, thread) ``pid`` run ``steps`` steps nicer than this process.

    Called by the parent right after it starts a child, rather than in the child: preexec_fn is
    unsafe in a threaded service, and the few milliseconds before the call are the child's start.
    """
    if steps <= 0:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, pid, os.getpriority(os.PRIO_PROCESS, 0) + steps)
    except OSError:  # already gone (its job will say so), or not allowed here: it runs as it is
        pass
