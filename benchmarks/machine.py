"""One line naming the machine a benchmark ran on, printed before its numbers.

Numbers without their machine cannot be compared: the CPU model, the cores this process may use,
torch's thread count and version, and the GPU when the benchmark runs on one.
"""

from __future__ import annotations

import os
import platform

import torch


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux), else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe(device: str = "cpu") -> str:
    """``machine: CPU, N logical cores (M usable), torch X with T threads[, GPU]``."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    text = (
        f"machine: {cpu_model()}, {os.cpu_count()} logical cores ({usable} usable), "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads"
    )
    if device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(index)
        text += f", {props.name} ({props.total_memory / 2**30:.0f} GiB)"
    return text
