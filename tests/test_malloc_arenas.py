"""`enforcer serve` caps glibc's malloc arenas (issue 14, the one-hour soak).

Without the cap, glibc gives busy threads arenas of their own (up to eight per core), each
keeping the freed memory of its busiest moment: the server's resident memory crept up with no
Python object leaking. The soak figures are in docs/reliability.md.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from enforcer.cli._common import limit_malloc_arenas

CHILD = """
import sys, threading
from enforcer.cli._common import limit_malloc_arenas
capped = limit_malloc_arenas()
barrier = threading.Barrier(12)
def work():
    barrier.wait()  # all at once: each busy thread would get an arena of its own
    for _ in range(20):
        kept = [bytes(2000) for _ in range(200)]
threads = [threading.Thread(target=work) for _ in range(12)]
for t in threads: t.start()
for t in threads: t.join()
# glibc's thread arenas are anonymous mappings aligned to their 64 MiB reservation.
arenas = sum(1 for line in open("/proc/self/maps")
             if int(line.split("-")[0], 16) % (64 << 20) == 0 and len(line.split()) == 5)
print(capped, arenas)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_twelve_busy_threads_share_the_capped_arenas() -> None:
    env = {"PATH": "/usr/bin:/bin"}  # no MALLOC_ARENA_MAX of the caller's
    out = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr
    capped, arenas = out.stdout.split()
    assert capped == "True"
    assert int(arenas) <= 1, "one arena besides the main one (12 without the cap)"


def test_an_explicit_malloc_arena_max_is_left_to_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False
