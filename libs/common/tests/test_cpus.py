"""How many CPUs a process can use: affinity, capped by the container's CPU quota (cgroup v2)."""

from __future__ import annotations

import os

from poise_common.cpus import cgroup_cpu_quota, usable_cpus


def _cgroup(tmp_path, own: str, limits: dict[str, str]):
    root = tmp_path / "cgroup"
    for folder, limit in limits.items():
        path = root / folder if folder else root
        path.mkdir(parents=True, exist_ok=True)
        (path / "cpu.max").write_text(limit + "\n")
    (root / own.lstrip("/")).mkdir(parents=True, exist_ok=True)
    membership = tmp_path / "cgroup-of-self"
    membership.write_text(f"12:memory:/elsewhere\n0::{own}\n")
    return root, membership


def test_a_pod_limited_to_one_and_a_half_cpus_counts_two(tmp_path):
    root, membership = _cgroup(tmp_path, "/", {"": "150000 100000"})
    assert cgroup_cpu_quota(root, membership) == 2


def test_the_tightest_limit_above_the_process_counts(tmp_path):
    root, membership = _cgroup(tmp_path, "/kubepods/pod1/container", {
        "kubepods": "800000 100000", "kubepods/pod1": "300000 100000", "kubepods/pod1/container": "max 100000",
    })
    assert cgroup_cpu_quota(root, membership) == 3


def test_no_limit_or_no_cgroup_means_none(tmp_path):
    root, membership = _cgroup(tmp_path, "/", {"": "max 100000"})
    assert cgroup_cpu_quota(root, membership) is None
    assert cgroup_cpu_quota(tmp_path / "absent", tmp_path / "absent-too") is None


def test_usable_cpus_is_this_process_affinity_on_an_unlimited_machine():
    assert 1 <= usable_cpus() <= len(os.sched_getaffinity(0))
    if cgroup_cpu_quota() is None:
        assert usable_cpus() == len(os.sched_getaffinity(0))
