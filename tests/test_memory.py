"""A job's freed memory is kept for reuse: allocating a large tensor again faults in no new pages
(sweetspot.runtime.memory)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# 64 MiB, above glibc's largest mmap threshold: by default it is mapped afresh on every allocation
PROBE = """
import resource, sys, torch
if sys.argv[1].startswith("job"):
    from sweetspot.runtime import device
    device.setup(threads=1, seed=0, keep_freed_memory=sys.argv[1] == "job")  # what every model job runs first
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
counts = []
for _ in range(6):  # allocated, touched, freed; the heap settles within the first few rounds
    before = faults()
    torch.empty(16 * 2**20).fill_(1.0)
    counts.append(faults() - before)
print(min(counts[2:]))
"""


def page_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, timeout=120)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_a_job_reuses_freed_memory_instead_of_faulting_in_new_pages():
    default, job, switched_off = page_faults("default"), page_faults("job"), page_faults("job-off")
    if default < 1000:
        pytest.skip(f"this kernel maps 64 MiB with {default} faults (transparent huge pages): nothing to measure")
    assert job < default / 10, (default, job)
    assert switched_off > default / 2, (default, switched_off)  # reuse_freed_memory: false
