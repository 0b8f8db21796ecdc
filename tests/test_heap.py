"""io/heap.py's allocator setting: large freed blocks are reused instead of being unmapped and
page-faulted in again at the next step; the user's own allocator choices are left alone."""

import os
import platform
import subprocess
import sys

import pytest

from visionkit.io import heap

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
# glibc < 2.35 caps the mmap threshold at 32 MiB: the probe's tensors stay mmapped there
VERSION = tuple(int(v) for v in platform.libc_ver()[1].split(".")[:2]) if GLIBC else (0, 0)

# a step's pattern of large tensors (64, 48, 36 and 64 MiB: above glibc's largest automatic mmap
# threshold, 32 MiB), made and freed 60 times (the heap's layout settles), then 20 times: the minor
# page faults per step of those 20, and the peak resident memory before and after them
PROBE = """
import resource, sys, torch
from visionkit.io.heap import keep_large_blocks
applied = keep_large_blocks() if sys.argv[1] == "on" else False
def step():
    a = torch.empty(16 << 20).fill_(1.0)
    b = torch.empty(12 << 20).fill_(1.0)
    del a
    c = torch.empty(9 << 20).fill_(1.0)
    d = torch.empty(16 << 20).fill_(1.0)
    del b, c, d
for _ in range(60):
    step()
r0 = resource.getrusage(resource.RUSAGE_SELF)
for _ in range(20):
    step()
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(applied, (r1.ru_minflt - r0.ru_minflt) // 20, r0.ru_maxrss, r1.ru_maxrss)
"""
PAGES = (64 + 48 + 36 + 64 << 20) // 4096  # 54,272 pages of 4 KiB per step


def _probe(mode: str, **env: str) -> tuple[str, int, int, int]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | env
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=environ, check=True
    ).stdout.split()
    return out[0], int(out[1]), int(out[2]), int(out[3])


@pytest.mark.skipif(VERSION < (2, 35), reason="needs glibc >= 2.35 (mmap threshold above 32 MiB)")
def test_freed_large_blocks_are_reused_instead_of_faulted_in_again():
    applied, faults, rss_warm, rss_end = _probe("on")
    default_applied, default_faults, _, _ = _probe("off")
    assert applied == "True" and default_applied == "False"
    assert default_faults > PAGES // 2, default_faults  # glibc: each a fresh, zeroed mmap
    # the large tensors reuse their pages (a few hundred faults of small allocations remain)
    assert faults < PAGES // 20, faults
    assert rss_end == rss_warm  # the heap, once settled, does not grow step after step


@pytest.mark.skipif(not GLIBC, reason="mallopt thresholds are glibc's (Linux)")
def test_the_users_glibc_tuning_is_left_alone():
    applied, faults, _, _ = _probe("on", MALLOC_MMAP_THRESHOLD_="131072")
    assert applied == "False" and faults > PAGES // 2


@pytest.mark.parametrize(
    "env",
    [
        {"MALLOC_TRIM_THRESHOLD_": "0"},
        {"MALLOC_TOP_PAD_": "0"},
        {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=131072"},
        {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"},
        {"LD_PRELOAD": "libtcmalloc_minimal.so.4"},
    ],
)
def test_other_allocators_and_tuning_are_not_touched(env, monkeypatch):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert heap._set_thresholds() is False


def test_off_glibc_it_does_nothing(monkeypatch):
    monkeypatch.setattr(heap.platform, "libc_ver", lambda: ("musl", ""))
    assert heap._set_thresholds() is False


def test_decided_once_per_process(monkeypatch):
    monkeypatch.setattr(heap, "_kept", None)
    calls = []
    monkeypatch.setattr(heap, "_set_thresholds", lambda: calls.append(1) or True)
    assert heap.keep_large_blocks() and heap.keep_large_blocks() and calls == [1]


def test_glibc_before_2_35_gets_the_most_it_accepts(monkeypatch):
    """Older glibc refuses an mmap threshold above 32 MiB (mallopt returns 0): 32 MiB then."""
    calls = []

    class Mallopt:  # a ctypes function: argtypes and restype are set on it
        def __call__(self, param, value):
            calls.append((param, value))
            return int(param != heap.M_MMAP_THRESHOLD or value <= 32 << 20)

    class OldLibc:
        mallopt = Mallopt()

    monkeypatch.setattr(heap.ctypes, "CDLL", lambda name: OldLibc())
    monkeypatch.setattr(heap.platform, "libc_ver", lambda: ("glibc", "2.31"))
    monkeypatch.setattr(heap.sys, "platform", "linux")
    for key in [k for k in os.environ if k.startswith("MALLOC_")] + [
        "LD_PRELOAD",
        "GLIBC_TUNABLES",
    ]:
        monkeypatch.delenv(key, raising=False)
    assert heap._set_thresholds() is True
    assert calls == [
        (heap.M_MMAP_THRESHOLD, 256 << 20),
        (heap.M_MMAP_THRESHOLD, 32 << 20),
        (heap.M_TRIM_THRESHOLD, 512 << 20),
    ]
