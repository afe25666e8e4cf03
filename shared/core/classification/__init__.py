"""Bounce classification for ACS delivery reports: pure, table-driven, no Azure imports."""

from .classifier import MAX_CHARS, Classification, TextAnalysis, analyse_text, classify, clear_cache
from .codes import Codes, explain_enhanced_code, explain_smtp_code, extract_codes
from .phrasebook import RULES, PhraseRule
from .taxonomy import (
    KNOWN_ACS_STATUSES,
    REASONS,
    AcsStatus,
    BounceType,
    Confidence,
    Reason,
    ReasonInfo,
)

__all__ = [
    "KNOWN_ACS_STATUSES",
    "MAX_CHARS",
    "REASONS",
    "RULES",
    "AcsStatus",
    "BounceType",
    "Classification",
    "Codes",
    "Confidence",
    "PhraseRule",
    "Reason",
    "ReasonInfo",
    "TextAnalysis",
    "analyse_text",
    "classify",
    "clear_cache",
    "explain_enhanced_code",
    "explain_smtp_code",
    "extract_codes",
]
