"""The classifier against real bounce replies (tests/data/bounces_real.jsonl): accuracy per reason.

`python -m tests.test_classification_real` prints the same table the test prints. The corpus has
no ACS status, so each text is classified with none (the text alone decides). Where we disagree
with a label, the line carries `label_override` and `why`; both agreements are reported and
asserted.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.core.classification import BounceType, Reason, classify

REAL_PATH = Path(__file__).parent / "data" / "bounces_real.jsonl"
HARD = {"userunknown", "hostunknown", "hasmoved", "notaccept"}


def _load() -> list[dict[str, object]]:
    return [json.loads(line) for line in REAL_PATH.read_text(encoding="utf-8").splitlines()]


REAL = _load()


@dataclass(frozen=True)
class Score:
    items: int
    reason_original: float  # agreement with the corpus's own labels
    reason_ours: float  # agreement with our overrides where there are some
    hard_soft: float  # hard/soft agreement with our labels (overrides never change it)
    undefined_share: float  # share of texts with a recognisable (labelled) reason left undefined
    per_reason: dict[str, tuple[int, int, int]]  # label -> (items, right vs original, vs ours)
    confusion: Counter[tuple[str, str]]  # (our label, got) for misses


def score() -> Score:
    per: dict[str, list[int]] = {}
    confusion: Counter[tuple[str, str]] = Counter()
    right_orig = right_ours = hard_ok = undefined = recognisable = 0
    for row in REAL:
        original = str(row["reason"])
        ours = str(row.get("label_override", original))
        result = classify(None, str(row["status_message"]))
        got = str(result.reason)
        counts = per.setdefault(ours, [0, 0, 0])
        counts[0] += 1
        counts[1] += got == original
        counts[2] += got == ours
        right_orig += got == original
        right_ours += got == ours
        hard_ok += (result.bounce_type is BounceType.hard) == (ours in HARD)
        if ours != "undefined":
            recognisable += 1
            undefined += got == "undefined"
        if got != ours:
            confusion[(ours, got)] += 1
    n = len(REAL)
    return Score(
        n,
        right_orig / n,
        right_ours / n,
        hard_ok / n,
        undefined / recognisable,
        {k: (v[0], v[1], v[2]) for k, v in per.items()},
        confusion,
    )


def report(s: Score) -> str:
    lines = [
        f"real corpus: {s.items} replies; reason {s.reason_original:.1%} against the original "
        f"labels, {s.reason_ours:.1%} against ours (with overrides); hard/soft "
        f"{s.hard_soft:.1%}; undefined on {s.undefined_share:.1%} of recognisable texts",
        f"  {'reason':16} {'items':>5} {'original':>9} {'ours':>6}",
    ]
    for reason, (items, orig, ours) in sorted(s.per_reason.items(), key=lambda kv: -kv[1][0]):
        lines.append(f"  {reason:16} {items:5} {orig / items:9.0%} {ours / items:6.0%}")
    lines.append("  confusion (our label -> classified as):")
    for (want, got), count in s.confusion.most_common():
        lines.append(f"    {count} x {want} -> {got}")
    return "\n".join(lines)


def test_real_corpus_accuracy(capsys: pytest.CaptureFixture[str]) -> None:
    s = score()
    with capsys.disabled():
        print("\n" + report(s))
    assert s.items == 626
    assert s.reason_ours >= 0.90
    assert s.reason_original >= 0.90
    assert s.hard_soft >= 0.98
    assert s.undefined_share <= 0.03


def test_overrides_are_explained_and_few() -> None:
    overridden = [row for row in REAL if "label_override" in row]
    assert 0 < len(overridden) <= 20
    for row in overridden:
        assert row["label_override"] != row["reason"]
        assert row["label_override"] in {str(r) for r in Reason}
        assert len(str(row.get("why", ""))) > 40
        # An override never moves a text across the hard/soft line: that is the corpus's call.
        assert (row["label_override"] in HARD) == (row["reason"] in HARD)


def test_every_real_reply_keeps_its_source() -> None:
    assert all(row["source"] and row["label_origin"] for row in REAL)


def test_real_corpus_sources_file_is_copied() -> None:
    assert "bounces_real.jsonl" in (REAL_PATH.parent / "SOURCES.md").read_text(encoding="utf-8")


if __name__ == "__main__":
    sys.stdout.write(report(score()) + "\n")
