"""This machine's process tree, read from /proc (Linux): the threads and descendants of a process."""

from __future__ import annotations

import os
from pathlib import Path


def threads(pid: int) -> list[int]:
    """The thread ids of ``pid`` (none when it has ended)."""
    try:
        return [int(name) for name in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def descendants(root: int) -> list[int]:
    """The live processes below ``root``: its children, theirs, and so on."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # ended meanwhile
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found
