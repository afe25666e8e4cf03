"""Settings: every name in one place, listed in the sample and README, every problem at once."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from shared.core.settings import SettingsError, load_settings

ROOT = Path(__file__).resolve().parent.parent


def names_read() -> set[str]:
    """Every environment name load_settings reads (the string constants it passes around)."""
    tree = ast.parse((ROOT / "shared" / "core" / "settings.py").read_text())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "load_settings")
    constants = [n.value for n in ast.walk(fn) if isinstance(n, ast.Constant)]
    strings = [c for c in constants if isinstance(c, str)]
    names = {c for c in strings if c.isupper() and c.replace("_", "").isalnum()}
    return names | ({"AzureWebJobsStorage"} & set(strings))


def test_every_setting_is_in_the_sample_and_the_readme() -> None:
    names = names_read()
    assert {"RATE_WINDOW_MINUTES", "SOFT_BOUNCE_STREAK", "AUTO_PAUSE"} <= names
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    assert sorted(names - set(sample)) == []
    readme = (ROOT / "README.md").read_text()
    assert sorted(n for n in names if f"`{n}`" not in readme) == []


def test_defaults_load_with_only_storage() -> None:
    settings = load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    policy = settings.rate_policy()
    assert (policy.bounce.warning, policy.bounce.critical) == (5.0, 10.0)
    assert (policy.spam.warning, policy.spam.critical) == (0.1, 0.5)
    assert (policy.min_volume, settings.rate_counter_shards) == (100, 4)
    assert settings.soft_bounce_streak == 3
    assert not settings.auto_pause


def test_every_problem_is_named_at_once() -> None:
    env = {
        "RATE_WINDOW_MINUTES": "soon",
        "BOUNCE_RATE_WARNING": "12",
        "SPAM_RATE_CRITICAL": "150",
        "SOFT_BOUNCE_STREAK": "-1",
        "RATE_COUNTER_SHARDS": "65",
    }
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    message = str(info.value)
    for name in [*env, "EMAIL_STORAGE_CONNECTION_STRING"]:
        assert name in message
