"""Printing: one headed section per figure, and the summary table of figures against targets."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """`value <op> bound`, e.g. Target(">=", 0.5); a figure without one is informational."""

    op: str
    bound: float

    def met(self, value: float) -> bool:
        check: Callable[[float, float], bool] = {"<=": operator.le, ">=": operator.ge}[self.op]
        return check(value, self.bound)

    def __str__(self) -> str:
        return f"{'≥' if self.op == '>=' else '≤'} {self.bound:g}"


@dataclass(frozen=True)
class Figure:
    section: str
    name: str
    value: float
    unit: str = ""
    target: Target | None = None
    digits: int = 2

    def shown(self) -> str:
        text = f"{self.value:,.{self.digits}f}"
        return f"{text} {self.unit}".rstrip()

    def verdict(self) -> str:
        if self.target is None:
            return ""
        return "✓" if self.target.met(self.value) else "✗"


def heading(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 76 - len(title)), flush=True)


def line(label: str, value: str) -> None:
    print(f"  {label:<52} {value}", flush=True)


def figure(
    section: str,
    name: str,
    value: float,
    unit: str = "",
    *,
    at_least: float | None = None,
    at_most: float | None = None,
    digits: int = 2,
) -> Figure:
    """Print one figure as a line of its section and hand it back for the summary."""
    target = None
    if at_least is not None:
        target = Target(">=", at_least)
    elif at_most is not None:
        target = Target("<=", at_most)
    fig = Figure(section, name, value, unit, target, digits)
    shown = f"  (target {fig.target} {fig.verdict()})" if fig.target else ""
    line(fig.name, fig.shown() + shown)
    return fig


def summary(figures: list[Figure], failed: list[str]) -> None:
    heading("Summary")
    width = max([len(f"{f.section}: {f.name}") for f in figures] + [20])
    print(f"  {'figure':<{width}}  {'measured':>18}  {'target':>8}", flush=True)
    for f in figures:
        label = f"{f.section}: {f.name}"
        target = str(f.target) if f.target else "—"
        print(f"  {label:<{width}}  {f.shown():>18}  {target:>8}  {f.verdict()}")
    targeted = [f for f in figures if f.target is not None]
    met = sum(1 for f in targeted if f.target is not None and f.target.met(f.value))
    print(f"\n  {met}/{len(targeted)} targets met.", flush=True)
    for name in failed:
        print(f"  section {name!r} did not finish (see the traceback above).", flush=True)
