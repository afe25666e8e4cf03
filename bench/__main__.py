"""`make bench`: `python -m bench [pipeline classify imports stack deliverability]` (all).

Figures are throughputs, latencies and ratios against a baseline measured in the same run, since
the machine is shared; a missed target is reported, never turned into a failing exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback

from .report import Figure, figure, heading, summary

SECTIONS = ("pipeline", "classify", "imports", "stack", "deliverability")


def classify_section() -> list[Figure]:
    from .classify_bench import run

    heading("2. Classifier: bench.classify_bench over tests/data/bounces.jsonl (one core)")
    result = run()
    cold, cached = result["classifications_per_s"], result["cached_classifications_per_s"]
    return [
        figure(
            "classify",
            "classifications/s (cache cleared each call)",
            cold,
            "/s",
            at_least=50_000,
            digits=0,
        ),
        figure("classify", "classifications/s (text cache on)", cached, "/s", digits=0),
    ]


def _section(name: str) -> list[Figure]:
    if name == "classify":
        return classify_section()
    module = importlib.import_module(f".{name}_bench", __package__)
    figures: list[Figure] = module.run()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("sections", nargs="*", help=f"any of {', '.join(SECTIONS)}")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    chosen = args.sections or list(SECTIONS)
    figures: list[Figure] = []
    failed: list[str] = []
    started = time.perf_counter()
    for name in SECTIONS:
        if name not in chosen:
            continue
        began = time.perf_counter()
        try:
            figures += _section(name)
        except Exception:
            traceback.print_exc()
            failed.append(name)
        print(f"  ({name}: {time.perf_counter() - began:,.0f} s)", flush=True)
    summary(figures, failed)
    print(f"  total {time.perf_counter() - started:,.0f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
