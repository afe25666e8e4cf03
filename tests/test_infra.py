"""infra/ and azure.yaml: parsed with pycep-parser and checked against the code (no Bicep compiler
or Azure here, so this is what stands between a template change and a broken `azd up`)."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from pycep import BicepParser

from shared.core.settings import load_settings
from tests.test_settings import names_read, optional_names

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"
SUBSCRIPTIONS = INFRA / "subscriptions.bicep"
TEMPLATES = sorted(INFRA.rglob("*.bicep"))

# Built-in role definition ids (shared/reference/azure-deploy.md; Blob Data Contributor is the
# well-known id of that built-in role).
BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
EVENTGRID_DATA_SENDER = "d5a91429-5739-47e2-a06b-3470a27159e7"
COMMUNICATION_AND_EMAIL_SERVICE_OWNER = "09976791-48a7-449e-bb21-39d1a415f350"

# What each SDK the app calls in Azure needs, and on which resource type. Keyed by the
# requirements.txt name: a new azure-* runtime dependency fails the test until it has a row.
SDK_ROLES = {
    "azure-data-tables": [(TABLE_DATA_CONTRIBUTOR, "Microsoft.Storage/storageAccounts")],
    "azure-storage-queue": [(QUEUE_DATA_CONTRIBUTOR, "Microsoft.Storage/storageAccounts")],
    # Blob Data Owner: the host's own blob use (leases, its containers) plus our payload blobs.
    "azure-storage-blob": [(BLOB_DATA_OWNER, "Microsoft.Storage/storageAccounts")],
    "azure-communication-email": [
        (COMMUNICATION_AND_EMAIL_SERVICE_OWNER, "Microsoft.Communication/communicationServices")
    ],
    # The alerts topic and the outcome-events topic.
    "azure-eventgrid": [
        (EVENTGRID_DATA_SENDER, "Microsoft.EventGrid/topics"),
        (EVENTGRID_DATA_SENDER, "Microsoft.EventGrid/topics"),
    ],
}
# Runtime requirements that call no Azure resource themselves.
NO_ROLE = {"azure-functions", "azure-identity"}
# Runtime requirements whose role the host's own use already needs: the app's OpenTelemetry
# export (shared/edge/telemetry.py) ingests with the Monitoring Metrics Publisher asserted below.
ROLE_SHARED = {"azure-monitor-opentelemetry"}

# Settings load_settings reads with no default that the templates must NOT set: key and
# connection-string forms, which the managed identity replaces in Azure.
NOT_IN_AZURE = {
    "AzureWebJobsStorage": "a connection string (Azurite locally); Azure uses __accountName",
    "ACS_KEY": "ACS local auth is disabled; the identity sends",
    "ACS_CONNECTION_STRING": "ACS local auth is disabled; the identity sends",
    "ALERTS_TOPIC_KEY": "the topic has local auth disabled; the identity publishes",
    "OUTCOME_EVENTS_TOPIC_KEY": "the topic has local auth disabled; the identity publishes",
}
# Settings the templates set that the app does not read: the platform does.
PLATFORM_SETTINGS = {
    "AZURE_CLIENT_ID": "azure-identity: DefaultAzureCredential's user-assigned identity",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Functions host: Entra ingestion",
}
# Settings Flex Consumption rejects or that would bring a key back.
FORBIDDEN_SETTINGS = {
    "FUNCTIONS_WORKER_RUNTIME",  # Flex: functionAppConfig.runtime instead
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",  # Flex: functionAppConfig.deployment instead
    "APPINSIGHTS_INSTRUMENTATIONKEY",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    *NOT_IN_AZURE,
}
# Set by azd for every hook, not by our outputs.
AZD_BUILTINS = {"AZURE_SUBSCRIPTION_ID", "AZURE_ENV_NAME"}
EVENT_TYPES = {
    "record_delivery_report": "Microsoft.Communication.EmailDeliveryReportReceived",
    "record_engagement_report": "Microsoft.Communication.EmailEngagementTrackingReportReceived",
}


@cache
def parse(path: Path) -> dict[str, Any]:
    return dict(BicepParser().parse(file_path=path))


def resources(path: Path) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = parse(path).get("resources", {})
    return found


def body(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource's or module's own config, under any loop or `if` condition."""
    config: dict[str, Any] = resource["config"]
    while "condition" in config and "config" in config:
        config = config["config"]
    return config


def of_type(type_: str) -> list[tuple[Path, str, dict[str, Any]]]:
    return [
        (path, name, res)
        for path in TEMPLATES
        for name, res in resources(path).items()
        if res["type"] == type_ and not res["existing"]
    ]


def one(type_: str) -> dict[str, Any]:
    found = of_type(type_)
    assert len(found) == 1, f"{type_}: {[(p.name, n) for p, n, _ in found]}"
    return body(found[0][2])


def leaves(value: Any) -> Iterator[str]:
    """Every string in a parsed value: keys, identifiers and literals alike."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from leaves(item)
    elif isinstance(value, str):
        yield value


def accessor(value: Any) -> str:
    """`a.b.c` for a parsed property access (pycep nests it as operand trees)."""
    if isinstance(value, str):
        return value
    op = value["operator"]
    assert op["type"] == "property_accessor", op
    return f"{accessor(op['operands']['operand_1'])}.{accessor(op['operands']['operand_2'])}"


def module_calls(path: Path = MAIN) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Module symbol → (its file, its params as called)."""
    calls = {}
    for name, module in parse(path).get("modules", {}).items():
        calls[name] = (path.parent / module["detail"]["path"], body(module)["params"])
    return calls


def resolve(value: Any, path: Path) -> Any:
    """A variable or parameter name in `path` to its value: variables by their value, a module's
    parameters by what main.bicep passes (main's own parameters by their default)."""
    doc = parse(path)
    if not isinstance(value, str):
        return value
    if value in doc.get("variables", {}):
        return resolve(doc["variables"][value]["value"], path)
    if value in doc.get("parameters", {}):
        for called, params in module_calls().values():
            if called == path and value in params:
                return resolve(params[value], MAIN)
        default = doc["parameters"][value]["default"]
        return value if default is None else default
    return value


@cache
def app_settings() -> dict[str, Any]:
    settings: dict[str, Any] = parse(MAIN)["variables"]["appSettings"]["value"]
    return settings


def role_assignments() -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path, _, res in of_type("Microsoft.Authorization/roleAssignments"):
        config = body(res)
        function = config["properties"]["roleDefinitionId"]["function"]
        assert function["type"] == "subscription_resource_id", function
        role = resolve(function["parameters"]["resource_name_1"], path)
        scope = resources(path)[config["scope"]]["type"]
        found.append((path, {"role": role, "scope": scope, **config["properties"]}))
    return found


def trigger_functions(kind: str | None = None) -> set[str]:
    """`def` names under `@app.<...>_trigger`/`@app.route` in function_app.py (not imported)."""
    tree = ast.parse((ROOT / "function_app.py").read_text())
    names = set()
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            call = decorator.func if isinstance(decorator, ast.Call) else decorator
            attr = call.attr if isinstance(call, ast.Attribute) else ""
            is_trigger = attr.endswith("_trigger") or attr == "route"
            if is_trigger and (kind is None or attr == kind):
                names.add(node.name)
    return names


# --- the files parse, and the modules fit together ------------------------------------------


def test_every_template_parses() -> None:
    names = {p.relative_to(INFRA).as_posix() for p in TEMPLATES}
    assert {"main.bicep", "subscriptions.bicep"} <= names
    for path in TEMPLATES:
        doc = parse(path)
        assert doc.get("resources") or doc.get("modules"), path


def test_module_calls_match_the_module_parameters() -> None:
    for name, (path, params) in module_calls().items():
        assert path.exists(), f"{name}: {path}"
        declared = parse(path)["parameters"]
        required = {p for p, spec in declared.items() if spec["default"] is None}
        assert sorted(set(params) - set(declared)) == [], f"{name}: unknown parameters"
        assert sorted(required - set(params)) == [], f"{name}: missing parameters"
    used = {path for path, _ in module_calls().values()}
    assert sorted(p.name for p in TEMPLATES if p.parent.name == "modules" and p not in used) == []


def test_one_api_version_per_resource_type() -> None:
    versions: dict[str, set[str]] = {}
    for path in TEMPLATES:
        for res in resources(path).values():
            versions.setdefault(res["type"], set()).add(res["api_version"])
    assert {t: v for t, v in versions.items() if len(v) > 1} == {}
    # Those shared/reference/azure-deploy.md names for these types.
    assert versions["Microsoft.Web/sites"] == {"2024-04-01"}
    assert versions["Microsoft.Authorization/roleAssignments"] == {"2022-04-01"}
    assert versions["Microsoft.Communication/communicationServices"] == {"2025-09-01"}
    assert versions["Microsoft.EventGrid/systemTopics"] == {"2022-06-15"}


# --- app settings --------------------------------------------------------------------------


def test_every_setting_without_a_default_is_set() -> None:
    required = optional_names() - set(NOT_IN_AZURE)
    # The identity-based storage family: the account, and the user-assigned identity.
    assert {"AzureWebJobsStorage__accountName", "AzureWebJobsStorage__clientId"} <= required
    assert sorted(required - set(app_settings())) == []


def test_every_setting_set_is_read_by_the_app_or_the_platform() -> None:
    assert sorted(set(app_settings()) - names_read() - set(PLATFORM_SETTINGS)) == []
    assert sorted(set(app_settings()) & FORBIDDEN_SETTINGS) == []


def deployed_value(name: str, value: Any) -> str:
    """What Azure would put in a setting: literals and parameter defaults as written, the values
    Azure computes (module outputs, ternaries) as placeholders."""
    placeholders = {
        "storage.outputs.name": "stexample",
        "identity.outputs.clientId": "00000000-0000-0000-0000-00000000c11d",
        "storage.outputs.blobEndpoint": "https://stexample.blob.core.windows.net/",
        "storage.outputs.queueEndpoint": "https://stexample.queue.core.windows.net/",
        "storage.outputs.tableEndpoint": "https://stexample.table.core.windows.net/",
        "monitoring.outputs.connectionString": "InstrumentationKey=placeholder;IngestionEndpoint=x",
        "senderDomain": "example.test",
    }
    if isinstance(value, dict) and "function" in value:
        assert value["function"]["type"] == "string", value
        return str(resolve(value["function"]["parameters"]["value_to_convert"], MAIN))
    if isinstance(value, dict) and value["operator"]["type"] == "property_accessor":
        return placeholders.get(accessor(value), f"https://{name.lower()}.example")
    if isinstance(value, dict):  # a ternary: Azure picks one of its branches
        return f"https://{name.lower()}.example"
    if "${" in value:
        return re.sub(r"\$\{([\w.]+)\}", lambda m: deployed_value(name, m.group(1)), value)
    if value in placeholders:
        return placeholders[value]
    resolved = resolve(value, MAIN)
    return resolved if isinstance(resolved, str) else deployed_value(name, resolved)


def test_the_settings_as_set_load() -> None:
    """The templates' values, with placeholders where Azure fills them in, pass load_settings."""
    env = {name: deployed_value(name, value) for name, value in app_settings().items()}
    settings = load_settings(env)
    assert settings.storage_connection_string is None
    assert settings.storage_account_name == "stexample"
    assert settings.storage_client_id == "00000000-0000-0000-0000-00000000c11d"
    assert settings.storage_queue_uri == "https://stexample.queue.core.windows.net/"
    assert settings.acs_endpoint == "https://acs_endpoint.example"
    assert (settings.default_sender, settings.sender_domain) == (
        "DoNotReply@example.test",
        "example.test",
    )
    assert settings.alerts_topic_endpoint == "https://alerts_topic_endpoint.example"
    assert settings.outcome_events_topic_endpoint == "https://outcome_events_topic_endpoint.example"
    assert settings.appinsights_connection_string == (
        "InstrumentationKey=placeholder;IngestionEndpoint=x"
    )
    assert (settings.send_rate_per_minute, settings.send_rate_per_hour) == (30, 100)
    assert env["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == (
        "ClientId=00000000-0000-0000-0000-00000000c11d;Authorization=AAD"
    )


def test_storage_and_identity_settings_use_the_one_identity() -> None:
    settings = app_settings()
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    client_id = "identity.outputs.clientId"
    assert accessor(settings["AzureWebJobsStorage__clientId"]) == client_id
    assert accessor(settings["AZURE_CLIENT_ID"]) == client_id
    auth = settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
    assert auth == "ClientId=${identity.outputs.clientId};Authorization=AAD"
    assert accessor(settings["AzureWebJobsStorage__accountName"]) == "storage.outputs.name"
    assert accessor(settings["ALERTS_TOPIC_ENDPOINT"]) == "eventGrid.outputs.alertsTopicEndpoint"
    assert settings["DEFAULT_SENDER"] == "${senderUsername}@${senderDomain}"
    assert settings["SENDER_DOMAIN"] == "senderDomain"


def test_app_settings_come_from_one_place() -> None:
    _, params = module_calls()["functionApp"]
    assert params["appSettings"] == "appSettings"
    config = of_type("Microsoft.Web/sites/config")
    assert [(p.name, body(r)["name"]) for p, _, r in config] == [
        ("functionapp.bicep", "appsettings")
    ]
    assert body(config[0][2])["properties"] == "appSettings"
    site = one("Microsoft.Web/sites")
    assert "appSettings" not in site["properties"].get("siteConfig", {})


# --- hosting -------------------------------------------------------------------------------


def test_flex_consumption_with_our_python() -> None:
    plan = one("Microsoft.Web/serverfarms")
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan["properties"]["reserved"] is True
    site = one("Microsoft.Web/sites")
    assert site["kind"] == "functionapp,linux"
    assert site["properties"]["httpsOnly"] is True
    config = site["properties"]["functionAppConfig"]
    makefile = (ROOT / "Makefile").read_text()
    major, minor = re.search(r"sys\.version_info\[:2\] == \((\d+), (\d+)\)", makefile).groups()  # type: ignore[union-attr]
    assert config["runtime"] == {"name": "python", "version": f"{major}.{minor}"}
    storage = config["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["value"] == "${blobEndpoint}${deploymentContainerName}"
    assert storage["authentication"] == {
        "type": "UserAssignedIdentity",
        "userAssignedIdentityResourceId": "identityId",
    }
    scale = config["scaleAndConcurrency"]
    assert scale == {
        "instanceMemoryMB": "instanceMemoryMB",
        "maximumInstanceCount": "maximumInstanceCount",
    }
    main_params = parse(MAIN)["parameters"]
    _, params = module_calls()["functionApp"]
    assert {params["instanceMemoryMB"], params["maximumInstanceCount"]} <= set(main_params)
    assert site["identity"]["type"] == "UserAssigned"
    assert accessor(params["identityId"]) == "identity.outputs.id"
    policies = of_type("Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert sorted(body(r)["name"] for _, _, r in policies) == ["ftp", "scm"]
    assert all(body(r)["properties"]["allow"] is False for _, _, r in policies)


def test_one_storage_account_without_shared_keys() -> None:
    account = one("Microsoft.Storage/storageAccounts")
    assert account["properties"]["allowSharedKeyAccess"] is False
    assert account["properties"]["allowBlobPublicAccess"] is False
    containers = {
        resolve(body(r)["name"], p)
        for p, _, r in of_type("Microsoft.Storage/storageAccounts/blobServices/containers")
    }
    # The deployment package's container (functionAppConfig) and the dead-letter container.
    assert containers == {"app-package-${functionAppName}", "eventgrid-deadletters"}
    assert parse(MAIN)["outputs"]["DEAD_LETTER_CONTAINER"]["value"] == "deadLetterContainerName"
    site = one("Microsoft.Web/sites")["properties"]["functionAppConfig"]["deployment"]
    assert site["storage"]["value"] == "${blobEndpoint}${deploymentContainerName}"


# --- roles ---------------------------------------------------------------------------------


def test_every_sdk_the_app_calls_has_its_role() -> None:
    requirements = {
        re.split(r"[<>=\s]", line, maxsplit=1)[0]
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.startswith("azure-")
    }
    assert sorted(requirements - NO_ROLE - ROLE_SHARED - set(SDK_ROLES)) == []
    app_roles = [
        (r["role"], r["scope"])
        for _, r in role_assignments()
        if r["principalId"] == "appPrincipalId" and r["principalType"] == "ServicePrincipal"
    ]
    needed = [
        role for sdk in sorted(requirements - NO_ROLE - ROLE_SHARED) for role in SDK_ROLES[sdk]
    ]
    # Entra ingestion into Application Insights (APPLICATIONINSIGHTS_AUTHENTICATION_STRING).
    needed.append((MONITORING_METRICS_PUBLISHER, "Microsoft.Insights/components"))
    for role in needed:
        assert needed.count(role) <= app_roles.count(role), role


def test_every_app_principal_is_the_app_identity() -> None:
    for name, (path, params) in module_calls().items():
        if "appPrincipalId" in parse(path)["parameters"]:
            assert accessor(params["appPrincipalId"]) == "identity.outputs.principalId", name


def test_the_system_topic_may_write_dead_letters_only() -> None:
    writers = [
        r for _, r in role_assignments() if r["principalId"] == "deadLetterWriterPrincipalId"
    ]
    assert [(r["role"], r["scope"]) for r in writers] == [
        (BLOB_DATA_CONTRIBUTOR, "Microsoft.Storage/storageAccounts/blobServices/containers")
    ]
    _, params = module_calls()["storage"]
    writer = params["deadLetterWriterPrincipalId"]["operator"]["operands"]
    assert accessor(writer["false_value"]) == "eventGrid.outputs.systemTopicPrincipalId"
    assert accessor(writer["true_value"]) == "existingSystemTopic.identity.principalId"
    assert one("Microsoft.EventGrid/systemTopics")["identity"] == {"type": "SystemAssigned"}


# --- ACS, Event Grid -----------------------------------------------------------------------


def test_acs_email_with_managed_and_custom_domains() -> None:
    acs = one("Microsoft.Communication/communicationServices")
    assert acs["location"] == "global"
    assert acs["properties"]["disableLocalAuth"] is True
    linked = acs["properties"]["linkedDomains"]["operator"]["operands"]
    assert [accessor(d) for d in linked["false_value"]] == ["managedDomain.id"]
    assert [accessor(d) for d in linked["true_value"]] == ["managedDomain.id", "customDomain.id"]
    path = INFRA / "modules" / "communication.bicep"
    domains = resources(path)
    assert body(domains["managedDomain"])["name"] == "AzureManagedDomain"
    assert body(domains["managedDomain"])["properties"]["domainManagement"] == "AzureManaged"
    assert domains["customDomain"]["config"]["condition"] == "useCustomDomain"
    assert body(domains["customDomain"])["properties"]["domainManagement"] == "CustomerManaged"
    for sender in ("managedSender", "customSender"):
        assert body(domains[sender])["properties"]["username"] == "senderUsername"
    records = parse(path)["outputs"]["customDomainDnsRecords"]["value"]["operator"]["operands"]
    assert accessor(records["true_value"]) == "customDomain.properties.verificationRecords"
    main = parse(MAIN)
    assert "CUSTOM_DOMAIN_DNS_RECORDS" in main["outputs"]
    existing = main["resources"]["existingCommunicationService"]
    assert existing["existing"] is True
    assert existing["config"]["condition"] == "useExistingAcs"
    assert main["modules"]["communication"]["config"]["condition"] == {
        "operator": {"type": "not", "operands": {"bool_value": "useExistingAcs"}}
    }
    assert main["variables"]["useExistingAcs"]["value"] == {
        "operator": {
            "type": "not",
            "operands": {
                "bool_value": {
                    "function": {
                        "type": "empty",
                        "parameters": {"item_to_test": "existingCommunicationServiceName"},
                    }
                }
            },
        }
    }


def test_alert_and_outcome_topics_take_cloudevents_with_entra_only() -> None:
    topics = of_type("Microsoft.EventGrid/topics")
    assert sorted(name for _, name, _ in topics) == ["alertsTopic", "outcomeEventsTopic"]
    for _, _, topic in topics:
        properties = body(topic)["properties"]
        assert properties["inputSchema"] == "CloudEventSchemaV1_0"
        assert properties["disableLocalAuth"] is True
    outputs = parse(INFRA / "modules" / "eventgrid.bicep")["outputs"]
    assert accessor(outputs["alertsTopicEndpoint"]["value"]) == "alertsTopic.properties.endpoint"
    assert accessor(outputs["outcomeEventsTopicEndpoint"]["value"]) == (
        "outcomeEventsTopic.properties.endpoint"
    )
    system_topic = one("Microsoft.EventGrid/systemTopics")["properties"]
    assert system_topic == {
        "source": "communicationServiceId",
        "topicType": "Microsoft.Communication.CommunicationServices",
    }


def test_subscriptions_deliver_to_functions_that_exist() -> None:
    subscriptions = of_type("Microsoft.EventGrid/systemTopics/eventSubscriptions")
    assert {p for p, _, _ in subscriptions} == {SUBSCRIPTIONS}, "after deploy, not in main.bicep"
    event_grid_functions = trigger_functions("event_grid_trigger")
    assert event_grid_functions == set(EVENT_TYPES)
    subscribed = set()
    for _, _, res in subscriptions:
        properties = body(res)["properties"]
        destination = properties["destination"]
        assert destination["endpointType"] == "AzureFunction"
        target = destination["properties"]["resourceId"]
        match = re.fullmatch(r"\$\{functionAppId\}/functions/(\w+)", target)
        assert match, target
        function = match.group(1)
        assert function in event_grid_functions
        subscribed.add(function)
        assert properties["filter"]["includedEventTypes"] == [EVENT_TYPES[function]]
        assert destination["properties"]["maxEventsPerBatch"] == "maxEventsPerBatch"
        retry = resolve(properties["retryPolicy"], SUBSCRIPTIONS)
        assert set(retry) == {"maxDeliveryAttempts", "eventTimeToLiveInMinutes"}
        dead_letter = resolve(properties["deadLetterWithResourceIdentity"], SUBSCRIPTIONS)
        assert dead_letter["identity"] == {"type": "SystemAssigned"}
        destination = dead_letter["deadLetterDestination"]
        assert destination["endpointType"] == "StorageBlob"
        assert set(destination["properties"]) == {"resourceId", "blobContainerName"}
    assert subscribed == event_grid_functions
    batch = parse(SUBSCRIPTIONS)["parameters"]["maxEventsPerBatch"]["decorators"]
    assert {"type": "max_value", "argument": 5000} in batch


# --- no secrets ----------------------------------------------------------------------------

SECRET_PATTERNS = re.compile(
    r"listKeys|listConnectionStrings|list\w*Keys|AccountKey|SharedAccessKey|InstrumentationKey"
    r"|primaryKey|secondaryKey|@secure|keys list|show-connection-string|connection-string",
    re.IGNORECASE,
)


# The one secret the app has (no key or connection string: an HMAC key of address hashes) is a
# @secure parameter that azd generates and keeps in Key Vault; the app reads a Key Vault
# reference. These are the only places it may appear.
SECRET_PARAMETER = "addressHashKey"
SECURE_ALLOWED = {"main.bicep": 1, "keyvault.bicep": 1}


def test_no_keys_or_connection_strings() -> None:
    texts = [*TEMPLATES, INFRA / "main.parameters.json", ROOT / "azure.yaml"]
    texts += sorted((INFRA / "hooks").glob("*.sh"))
    for path in texts:
        found = SECRET_PATTERNS.findall(path.read_text())
        allowed = ["@secure"] * SECURE_ALLOWED.get(path.name, 0)
        assert found == allowed, path
    for path in TEMPLATES:
        for leaf in leaves(parse(path)):
            assert not SECRET_PATTERNS.search(leaf), (path, leaf)
            if "connectionstring" in leaf.lower():
                # Only Application Insights' connection string, which grants nothing with
                # DisableLocalAuth (ingestion then needs an Entra token).
                assert path.name in {"monitoring.bicep", "main.bicep"}, (path, leaf)
    connection_strings = [
        (p.name, name, accessor(o["value"]) if isinstance(o["value"], dict) else o["value"])
        for p in TEMPLATES
        for name, o in parse(p).get("outputs", {}).items()
        if "connectionstring" in json.dumps(o).lower()
    ]
    assert connection_strings == [
        ("monitoring.bicep", "connectionString", "applicationInsights.properties.ConnectionString")
    ]
    assert one("Microsoft.Insights/components")["properties"]["DisableLocalAuth"] is True


# --- azd: parameters, hooks, azure.yaml ----------------------------------------------------

ENV_REFERENCE = re.compile(r"\$\{(\w+)(?:=([^}]*))?\}")


def parameter_env() -> dict[str, tuple[str, str | None]]:
    """main.parameters.json: parameter → (azd environment name, default)."""
    values = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    mapped = {}
    for name, spec in values.items():
        if name == SECRET_PARAMETER:  # generated once by azd, then read back from Key Vault
            assert spec["value"] == (
                "$(secretOrRandomPassword ${AZURE_KEY_VAULT_NAME} address-hash-key)"
            )
            mapped[name] = ("AZURE_KEY_VAULT_NAME", None)
            continue
        match = ENV_REFERENCE.fullmatch(spec["value"])
        assert match, name
        mapped[name] = (match.group(1), match.group(2))
    return mapped


def test_every_parameter_comes_from_the_azd_environment_with_the_same_default() -> None:
    declared = parse(MAIN)["parameters"]
    mapped = parameter_env()
    assert set(mapped) == set(declared)
    for name, (env_name, default) in mapped.items():
        bicep_default = declared[name]["default"]
        if bicep_default is None:
            assert default is None, name
            assert env_name in {"AZURE_ENV_NAME", "AZURE_LOCATION", "AZURE_KEY_VAULT_NAME"}, name
        else:
            expected = (
                str(bicep_default).lower()
                if isinstance(bicep_default, bool)
                else str(bicep_default)
            )
            assert default == expected, name


def test_azure_yaml_deploys_the_app_and_runs_the_hooks() -> None:
    project = yaml.safe_load((ROOT / "azure.yaml").read_text())
    assert project["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    assert project["services"] == {
        "api": {"project": ".", "language": "python", "host": "function"}
    }
    _, params = module_calls()["functionApp"]
    assert params["serviceName"] == "api"
    for hook in ("preprovision", "postdeploy", "predown"):
        run = project["hooks"][hook]["run"]
        script = ROOT / run.removeprefix("bash ")
        assert script.exists(), run
    funcignore = (ROOT / ".funcignore").read_text().split()
    assert {"infra", "azure.yaml", ".azure", "tests", "local"} <= set(funcignore)


def test_postdeploy_passes_every_subscription_parameter() -> None:
    script = (INFRA / "hooks" / "postdeploy.sh").read_text()
    assert "az deployment group create" in script
    assert '--template-file "$here/../subscriptions.bicep"' in script
    arguments = script[script.index("--parameters") :].split("\n\n", 1)[0]
    passed = set(re.findall(r"^\s+(\w+)=\"\$", arguments, re.MULTILINE))
    declared = parse(SUBSCRIPTIONS)["parameters"]
    required = {name for name, spec in declared.items() if spec["default"] is None}
    assert required <= passed <= set(declared)


def test_hooks_read_only_what_azd_provides() -> None:
    provided = set(parse(MAIN)["outputs"]) | AZD_BUILTINS
    provided |= {env for env, _ in parameter_env().values()}
    for script in sorted((INFRA / "hooks").glob("*.sh")):
        text = script.read_text()
        read = set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)", text))
        read |= {
            w
            for line in re.findall(r"for name in ([^;]*);", text, re.DOTALL)
            for w in re.findall(r"[A-Z][A-Z0-9_]{3,}", line)
        }
        assert sorted(read - provided - {"BASH_SOURCE"}) == [], script.name
        assert set(re.findall(r"^\s*(\w+) ", text, re.MULTILINE)) & {"curl", "wget"} == set()


def run_preprovision(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("EXISTING_", "CUSTOM_"))}
    return subprocess.run(
        ["bash", str(INFRA / "hooks" / "preprovision.sh")],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({}, None),
        ({"CUSTOM_DOMAIN_NAME": "mail.example.com"}, None),
        (
            {"EXISTING_COMMUNICATION_SERVICE_NAME": "acs", "EXISTING_SENDER_DOMAIN": "x.test"},
            None,
        ),
        ({"EXISTING_COMMUNICATION_SERVICE_NAME": "acs"}, "EXISTING_SENDER_DOMAIN"),
        ({"EXISTING_SYSTEM_TOPIC_NAME": "t"}, "EXISTING_SYSTEM_TOPIC_NAME"),
        ({"CUSTOM_DOMAIN_VERIFIED": "true"}, "CUSTOM_DOMAIN_VERIFIED=true needs"),
    ],
)
def test_preprovision_refuses_what_the_templates_cannot_do(
    env: dict[str, str], problem: str | None
) -> None:
    result = run_preprovision(env)
    if problem is None:
        assert (result.returncode, result.stderr) == (0, "")
    else:
        assert result.returncode == 1
        assert problem in result.stderr


# --- README and sample in step with the templates -------------------------------------------


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_sample_readme_and_templates_in_step() -> None:
    names = names_read()
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    host_only = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsFeatureFlags"}  # for `func start`
    assert sorted(set(sample) ^ (names | host_only)) == []
    settings = readme_section("Settings")
    rows = [line for line in settings.splitlines() if line.startswith("| `")]
    listed = {n for row in rows for n in re.findall(r"`([A-Za-z_0-9]+)`", row.split("|")[1])}
    assert sorted(listed ^ names) == []
    documented = set(re.findall(r"`([A-Za-z_0-9]+)`", settings))
    assert sorted(set(app_settings()) - documented) == []


def test_readme_deploying_names_the_commands_and_every_parameter() -> None:
    section = readme_section("Deploying to Azure")
    for text in ("azd auth login", "azd up", "azd down --purge", "postdeploy", "az login"):
        assert text in section, text
    for env_name, _ in parameter_env().values():
        if env_name not in {"AZURE_ENV_NAME", "AZURE_LOCATION", "AZURE_RESOURCE_GROUP"}:
            assert f"`{env_name}`" in section, env_name
    for function in EVENT_TYPES:
        assert f"`{function}`" in section, function
