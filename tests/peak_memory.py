"""Peak memory of a piece of work, measured in a fresh process of its own.

``ru_maxrss`` inside the test process reads no growth after an earlier test peaked higher (a pytest-xdist
worker touching 250 MB after a 300 MB peak read 0 KiB); here the set-up runs first, the kernel's
high-water mark is reset (``/proc/self/clear_refs``), and only the measured code's peak counts.
"""

from __future__ import annotations

import os
import subprocess
import sys

_SCRIPT = """
import re
def status(field):
    return int(re.search(field + r':\\s+(\\d+)', open('/proc/self/status').read()).group(1))
{setup}
import gc; gc.collect()
open('/proc/self/clear_refs', 'w').write('5')
resident = status('VmRSS')
{measured}
print('PEAK-GROWTH-KIB', status('VmHWM') - resident)
"""


def peak_growth_mib(setup: str, measured: str, timeout: float = 300) -> float:
    """How far the resident memory rose above where it stood while ``measured`` ran (after ``setup``)."""
    done = subprocess.run([sys.executable, "-c", _SCRIPT.format(setup=setup, measured=measured)], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ})
    assert done.returncode == 0, done.stderr[-2000:]
    line = [row for row in done.stdout.splitlines() if row.startswith("PEAK-GROWTH-KIB")][-1]
    return int(line.split()[1]) / 1024

