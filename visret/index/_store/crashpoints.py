"""Named points inside a write where the crash tests kill the process.

``VISRET_CRASH_AT=NAME`` kills the process the first time it reaches ``NAME``;
``NAME:N`` the N-th time. Unset, a point costs one environment lookup and does nothing.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENVIRONMENT = "VISRET_CRASH_AT"
_reached: Counter[str] = Counter()


def reached(name: str) -> None:
    wanted = os.environ.get(ENVIRONMENT)
    if not wanted or not wanted.startswith(name):
        return
    point, _, times = wanted.partition(":")
    if point == name:
        _reached[name] += 1
        if _reached[name] >= int(times or 1):
            os.kill(os.getpid(), signal.SIGKILL)
