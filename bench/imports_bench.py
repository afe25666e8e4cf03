"""Cold import of the app against the floor every Functions app pays: `import azure.functions`.

Each run is a fresh interpreter (bytecode caches warm, as on a scaled-out instance that has the
deployment package). The two commands alternate so drift on a shared machine hits both.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import time

from local.azurite import ROOT

from .report import Figure, figure, heading, line

SECTION = "imports"
RUNS = 7
APP = "import function_app"
FLOOR = "import azure.functions"


def _once(code: str, *flags: str) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *flags, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return time.perf_counter() - start, done.stderr


def _heaviest(limit: int = 5) -> list[tuple[int, str]]:
    """Modules function_app pulls in (one or two levels down) that azure.functions does not,
    by cumulative import time in µs."""
    _, app_log = _once(APP, "-X", "importtime")
    _, floor_log = _once(FLOOR, "-X", "importtime")
    pattern = re.compile(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)")
    floor = {m.group(3) for m in map(pattern.match, floor_log.splitlines()) if m}
    rows = []
    for m in map(pattern.match, app_log.splitlines()):
        # -X importtime indents by two spaces a level: 3 = function_app's own imports, 5 = theirs
        if m and m.group(3) not in floor and len(m.group(2)) in (3, 5):
            rows.append((int(m.group(1)), m.group(2)[3:] + m.group(3)))  # nested: indented
    return sorted(rows, key=lambda r: -r[0])[:limit]


def run() -> list[Figure]:
    heading("3. Cold import: function_app vs azure.functions (fresh interpreters)")
    _once(APP)
    _once(FLOOR)  # compile/refresh bytecode caches outside the timing
    app, floor = [], []
    for _ in range(RUNS):
        app.append(_once(APP)[0])
        floor.append(_once(FLOOR)[0])
    app_ms, floor_ms = statistics.median(app) * 1000, statistics.median(floor) * 1000
    line(f"python -c '{FLOOR}' (median of {RUNS})", f"{floor_ms:,.0f} ms")
    line(f"python -c '{APP}' (median of {RUNS})", f"{app_ms:,.0f} ms")
    line("app's own share", f"{app_ms - floor_ms:,.0f} ms")
    line("heaviest imports beyond azure.functions (cumulative, one -X importtime run)", "")
    for micros, name in _heaviest():
        line(f"  {name}", f"{micros / 1000:,.1f} ms")
    return [
        figure(SECTION, "import function_app, median", app_ms, "ms", digits=0),
        figure(SECTION, "import azure.functions, median", floor_ms, "ms", digits=0),
        figure(SECTION, "function_app ÷ azure.functions", app_ms / floor_ms, at_most=1.3),
    ]
