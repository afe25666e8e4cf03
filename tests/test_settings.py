"""Settings: every name in one place, listed in the sample and README, every problem at once."""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path

import pytest

from shared.core.settings import SettingsError, load_settings

ROOT = Path(__file__).resolve().parent.parent
KEY = "k" * 32
# Wherever the module lives (it may move into a package), read the file that defines it.
SETTINGS_FILE = Path(inspect.getsourcefile(load_settings) or "")
# The Functions host's own storage setting family, which we read too (mixed case, `__` parts).
HOST_STORAGE = "AzureWebJobsStorage"


def is_setting_name(text: str) -> bool:
    if not text.replace("_", "").isalnum() or text.endswith("_"):
        return False
    return text.isupper() or text == HOST_STORAGE or text.startswith(HOST_STORAGE + "__")


def names_read() -> set[str]:
    """Every environment name the settings module's functions read (the string constants they
    pass around; module-level constants such as the removed names are not reads)."""
    tree = ast.parse(SETTINGS_FILE.read_text())
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert "load_settings" in {fn.name for fn in functions}
    strings = {
        n.value
        for fn in functions
        for n in ast.walk(fn)
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }
    return {s for s in strings if is_setting_name(s)}


def optional_names() -> set[str]:
    """Names read with `_opt` (no default: unset means the feature or that form is off)."""
    tree = ast.parse(SETTINGS_FILE.read_text())
    return {
        call.args[1].value
        for call in ast.walk(tree)
        if isinstance(call, ast.Call)
        and isinstance(call.func, ast.Name)
        and call.func.id == "_opt"
        and len(call.args) == 2
        and isinstance(call.args[1], ast.Constant)
        and isinstance(call.args[1].value, str)
    }


def test_names_read_include_the_host_storage_family() -> None:
    names = names_read()
    assert {"RATE_WINDOW_MINUTES", "SOFT_BOUNCE_STREAK", "AUTO_PAUSE"} <= names
    assert {
        "AzureWebJobsStorage",
        "AzureWebJobsStorage__accountName",
        "AzureWebJobsStorage__credential",
        "AzureWebJobsStorage__clientId",
        "AzureWebJobsStorage__tableServiceUri",
        "AzureWebJobsStorage__queueServiceUri",
        "AzureWebJobsStorage__blobServiceUri",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "OUTCOME_EVENTS_TOPIC_ENDPOINT",
    } <= names
    assert not {"EMAIL_STORAGE_CONNECTION_STRING", "EMAIL_STORAGE_ACCOUNT"} & names
    assert optional_names() <= names


def test_every_setting_is_in_the_sample_and_the_readme() -> None:
    names = names_read()
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    assert sorted(names - set(sample)) == []
    readme = (ROOT / "README.md").read_text()
    assert sorted(n for n in names if f"`{n}`" not in readme) == []


def test_defaults_load_with_only_storage() -> None:
    settings = load_settings(
        {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "ADDRESS_HASH_KEY": KEY}
    )
    policy = settings.rate_policy()
    assert (policy.bounce.warning, policy.bounce.critical) == (5.0, 10.0)
    assert (policy.spam.warning, policy.spam.critical) == (0.1, 0.5)
    assert (policy.min_volume, settings.rate_counter_shards) == (100, 4)
    assert settings.soft_bounce_streak == 3
    assert not settings.auto_pause
    assert settings.storage_connection_string == "UseDevelopmentStorage=true"
    assert settings.storage_account_name is None
    assert settings.storage_table_uri is None
    assert settings.appinsights_connection_string is None
    assert settings.outcome_events_topic_endpoint is None


def test_identity_based_storage_defaults_to_the_account_endpoints() -> None:
    settings = load_settings(
        {
            "AzureWebJobsStorage__accountName": "stemail",
            "ADDRESS_HASH_KEY": KEY,
            "AzureWebJobsStorage__credential": "managedidentity",
            "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-000000000001",
        }
    )
    assert settings.storage_connection_string is None
    assert settings.storage_account_name == "stemail"
    assert settings.storage_client_id == "00000000-0000-0000-0000-000000000001"
    assert settings.storage_table_uri == "https://stemail.table.core.windows.net"
    assert settings.storage_queue_uri == "https://stemail.queue.core.windows.net"
    assert settings.storage_blob_uri == "https://stemail.blob.core.windows.net"
    assert settings.tables_configured


def test_system_assigned_identity_needs_only_the_account_name() -> None:
    settings = load_settings(
        {"AzureWebJobsStorage__accountName": "stemail", "ADDRESS_HASH_KEY": KEY}
    )
    assert settings.storage_client_id is None
    assert settings.storage_queue_uri == "https://stemail.queue.core.windows.net"


def test_service_uris_override_the_defaults() -> None:
    settings = load_settings(
        {
            "AzureWebJobsStorage__accountName": "stemail",
            "ADDRESS_HASH_KEY": KEY,
            "AzureWebJobsStorage__tableServiceUri": "https://stemail.table.core.chinacloudapi.cn/",
            "AzureWebJobsStorage__queueServiceUri": "https://q.example.net/",
        }
    )
    assert settings.storage_table_uri == "https://stemail.table.core.chinacloudapi.cn/"
    assert settings.storage_queue_uri == "https://q.example.net/"
    assert settings.storage_blob_uri == "https://stemail.blob.core.windows.net"


def test_other_settings_are_read() -> None:
    settings = load_settings(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "ADDRESS_HASH_KEY": KEY,
            "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x;IngestionEndpoint=y",
            "OUTCOME_EVENTS_TOPIC_ENDPOINT": "https://t.westeurope-1.eventgrid.azure.net/api/events",
        }
    )
    assert settings.appinsights_connection_string == "InstrumentationKey=x;IngestionEndpoint=y"
    assert settings.outcome_events_topic_endpoint == (
        "https://t.westeurope-1.eventgrid.azure.net/api/events"
    )


@pytest.mark.parametrize("removed", ["EMAIL_STORAGE_CONNECTION_STRING", "EMAIL_STORAGE_ACCOUNT"])
def test_removed_storage_settings_say_why(removed: str) -> None:
    env = {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "ADDRESS_HASH_KEY": KEY,
        removed: "anything",
    }
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    message = str(info.value)
    assert removed in message
    assert "same account" in message
    assert "AzureWebJobsStorage" in message


def test_empty_removed_settings_are_ignored() -> None:
    # Older local.settings.json files list them empty; empty means unset everywhere here.
    env = {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "ADDRESS_HASH_KEY": KEY,
        "EMAIL_STORAGE_CONNECTION_STRING": "",
        "EMAIL_STORAGE_ACCOUNT": " ",
    }
    assert load_settings(env).storage_connection_string == "UseDevelopmentStorage=true"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {
                "AzureWebJobsStorage": "UseDevelopmentStorage=true",
                "ADDRESS_HASH_KEY": KEY,
                "AzureWebJobsStorage__accountName": "s",
            },
            "not both",
        ),
        (
            {"AzureWebJobsStorage__accountName": "s", "AzureWebJobsStorage__credential": "key"},
            "AzureWebJobsStorage__credential must be managedidentity",
        ),
        (
            {"AzureWebJobsStorage__accountName": "s", "AzureWebJobsStorage__clientId": "c"},
            "AzureWebJobsStorage__clientId needs AzureWebJobsStorage__credential",
        ),
        (
            {
                "AzureWebJobsStorage__accountName": "s",
                "AzureWebJobsStorage__blobServiceUri": "http://x",
            },
            "AzureWebJobsStorage__blobServiceUri must be an https URL",
        ),
    ],
)
def test_storage_problems(env: dict[str, str], expected: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    assert expected in str(info.value)


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
    for name in [*env, "AzureWebJobsStorage", "AzureWebJobsStorage__accountName"]:
        assert name in message
    assert "storage is not set" in message


@pytest.mark.parametrize("key", [None, "", "too-short"])
def test_the_address_hash_key_is_required_and_long(key: str | None) -> None:
    env = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}
    if key is not None:
        env["ADDRESS_HASH_KEY"] = key
    with pytest.raises(SettingsError, match="ADDRESS_HASH_KEY must be a secret of at least 32"):
        load_settings(env)


def test_address_hashes_are_keyed() -> None:
    """A plain SHA-256 of an address is reversed by hashing a dictionary of likely addresses;
    the HMAC differs per key and is not the plain hash."""
    import hashlib

    env = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "ADDRESS_HASH_KEY": KEY}
    one = load_settings(env).address_policy().fields("Bob@Example.com")["recipientHash"]
    other_key = {**env, "ADDRESS_HASH_KEY": "z" * 32}
    other = load_settings(other_key).address_policy().fields("bob@example.com")["recipientHash"]
    assert one != other
    assert one != hashlib.sha256(b"bob@example.com").hexdigest()[:32]
    again = load_settings(env).address_policy().fields("bob@example.com ")["recipientHash"]
    assert one == again  # compared as trimmed, lower-cased
