"""How many CPUs this process can use: the ones it may run on, capped by its container's CPU quota.

``os.cpu_count()`` counts the machine's CPUs. A Kubernetes pod limited to two CPUs still sees
every CPU of its node there and in its affinity; only the cgroup's quota (``cpu.max``) says two.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def usable_cpus() -> int:
    """CPUs this process can keep busy at once (at least 1)."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return max(1, min(count, quota) if quota is not None else count)


def cgroup_cpu_quota(root: Path = CGROUP_ROOT, membership: Path = Path("/proc/self/cgroup")) -> int | None:
    """The tightest CPU quota on this process's cgroup (v2) and the cgroups above it, rounded up to
    whole CPUs; None when unlimited or unknown (cgroup v1, no /sys/fs/cgroup)."""
    own = root
    try:
        for line in membership.read_text().splitlines():
            if line.startswith("0::"):  # the v2 hierarchy; inside a container usually "/"
                own = root / line[3:].strip().lstrip("/")
    except OSError:
        pass
    quotas = []
    for folder in (own, *own.parents):
        try:
            limit, period = (folder / "cpu.max").read_text().split()[:2]
            if limit != "max":
                quotas.append(max(1, math.ceil(int(limit) / int(period))))
        except (OSError, ValueError):
            pass
        if folder == root:
            break
    return min(quotas) if quotas else None
