"""The machine line every benchmark prints beside its figures."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine(threads: int | None = None) -> str:
    """CPU model, cores, bf16 units, the torch version and the torch threads the benchmark runs with."""
    import torch

    from rnnmt.training import bf16_units

    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.is_file() else []
    model = names[0] if names else platform.processor() or platform.machine()
    units = ", ".join(bf16_units()) or "none"
    return (f"{model}, {os.cpu_count()} cores, bf16 units: {units}; torch {torch.__version__}, "
            f"{threads or torch.get_num_threads()} thread(s)")
