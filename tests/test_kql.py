"""kql/: the taxonomy datatables are what the generator writes from our code tables today, parse
as KQL datatables row by row, and the queries speak the app's own vocabularies."""

from __future__ import annotations

import re
from pathlib import Path

from kql.generate import OUT, render
from shared.core.classification import REASONS, Reason
from shared.core.classification.codes import rule_for_enhanced
from shared.core.rollups import Outcome, SizeClass

KQL = Path(__file__).resolve().parent.parent / "kql"
_STRING = r'"(?:[^"\\]|\\.)*"'
_ROW = re.compile(rf"^    ({_STRING}(?:, (?:{_STRING}|true|false))*),?$")


def datatable(name: str) -> tuple[list[str], list[list[str]]]:
    """(column names, rows of raw values) of one `let <name> = datatable(...) [...]`."""
    text = OUT.read_text(encoding="utf-8")
    _, _, rest = text.partition(f"let {name} = datatable(")
    assert rest, f"{name} missing"
    columns_text, _, body = rest.partition(") [\n")
    columns = [c.split(":")[0].strip() for c in columns_text.replace("\n", " ").split(",")]
    rows = []
    for line in body.split("\n];", 1)[0].splitlines():
        match = _ROW.match(line)
        assert match, f"not a datatable row: {line[:80]}"
        values = re.findall(rf"{_STRING}|true|false", match.group(1))
        assert len(values) == len(columns), line[:80]
        rows.append([v[1:-1] if v.startswith('"') else v for v in values])
    return columns, rows


def test_taxonomy_file_is_what_the_generator_writes() -> None:
    assert OUT.read_text(encoding="utf-8") == render(), "run `python -m kql.generate`"


def test_every_reason_with_its_hard_soft_rule() -> None:
    _, rows = datatable("AcsEmailReasons")
    assert [r[0] for r in rows] == [r.value for r in Reason]
    for reason, bounce, suppress, retryable, meaning, action in rows:
        info = REASONS[Reason(reason)]
        assert (bounce, suppress, retryable) == (
            info.bounce_type.value,
            str(info.suppress).lower(),
            str(info.retryable).lower(),
        )
        assert meaning.replace('\\"', '"') == info.meaning
        assert action.replace('\\"', '"') == info.action


def test_every_mapped_enhanced_code_with_the_classifiers_reason() -> None:
    _, rows = datatable("AcsEmailEnhancedCodes")
    codes = {r[0]: r for r in rows}
    assert len(codes) == len(rows)
    for code in ("5.1.1", "4.2.2", "5.7.26", "5.7.606", "4.7.500", "5.4.310", "5.1.10"):
        rule = rule_for_enhanced(code)
        assert rule is not None
        assert codes[code][1] == rule.reason.value, code
    assert codes["5.1.1"][2] == "hard"
    assert codes["4.1.1"][2] == "soft"  # temporary, whatever it says
    assert codes["5.7.1"][2] == "soft"  # policy: not about the address
    assert all(row[3] for row in rows)  # each explained


def test_queries_speak_our_vocabularies() -> None:
    joined = (KQL / "deliveries.kql").read_text(encoding="utf-8")
    # the outcome column's case(): exactly our Outcome vocabulary
    case = joined.split("Outcome = case(", 1)[1].split("LatencySeconds", 1)[0]
    in_case = set(re.findall(r'"(delivered|expanded|suppressed|spamFiltered|quarantined|'
                             r'hardBounced|softBounced|failed)"', case))  # fmt: skip
    assert in_case == {o.value for o in Outcome}
    for size in SizeClass:
        assert f'"{size.value}"' in joined
    dashboards = sorted((KQL / "dashboards").glob("*.kql"))
    assert {d.stem for d in dashboards} == {
        "success_rate_by_recipient_domain",
        "delivery_time_by_hour",
        "top_failure_reasons",
        "bounce_rate_by_sender",
        "size_distribution",
    }
    for query in dashboards:
        text = query.read_text(encoding="utf-8")
        assert text.lstrip().startswith("//")
        assert "AcsEmailDeliveries" in text
        used = set(re.findall(r'Outcome (?:==|!=) "(\w+)"', text))
        used |= {w for group in re.findall(r"Outcome !?in \(([^)]*)\)", text)
                 for w in re.findall(r'"(\w+)"', group)}  # fmt: skip
        assert used <= {o.value for o in Outcome}, query.name
