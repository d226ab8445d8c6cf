"""What machine a measurement ran on, for validation reports and benchmarks."""

from __future__ import annotations

import platform


def cpu_name() -> str:
    """The CPU's model name ("AMD EPYC 7B13"); platform's vaguer answer where /proc/cpuinfo is absent."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
