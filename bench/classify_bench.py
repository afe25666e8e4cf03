"""Classifications per second over the test corpus: cold (cache cleared every call) and cached."""

from __future__ import annotations

import json
import time
from pathlib import Path

from shared.classification import classify, clear_cache

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "bounces.jsonl"


def _corpus() -> list[tuple[str | None, str | None]]:
    with CORPUS.open(encoding="utf-8") as f:
        return [(c.get("status"), c.get("statusMessage")) for c in map(json.loads, f)]


def run(n: int = 50_000) -> dict[str, float]:
    """`classifications_per_s` is the cold figure: every call does the full text analysis."""
    cases = _corpus()
    classify(*cases[0])  # build the lazy indexes outside the timing
    k = len(cases)

    start = time.perf_counter()
    for i in range(n):
        clear_cache()
        classify(*cases[i % k])
    cold = n / (time.perf_counter() - start)

    clear_cache()
    start = time.perf_counter()
    for i in range(n):
        classify(*cases[i % k])
    cached = n / (time.perf_counter() - start)

    return {
        "classifications_per_s": round(cold),
        "cached_classifications_per_s": round(cached),
        "corpus_messages": float(k),
    }


if __name__ == "__main__":
    print(json.dumps(run()))
