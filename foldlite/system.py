"""The machine this runs on, without JAX: ``available_ram()``, the bytes of memory a new
computation may still take (Linux ``MemAvailable``, else the free physical pages)."""

from __future__ import annotations

import os


def available_ram() -> int | None:
    """Bytes of RAM available to a new computation, or None when the system does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
