#!/usr/bin/env bash
# azd postdeploy: subscribe record_delivery_report and record_engagement_report to the ACS
# system topic (infra/subscriptions.bicep). Not in main.bicep because Event Grid checks that an
# AzureFunction endpoint exists when the subscription is created, i.e. after the code is
# deployed (Azure/bicep#11656). Idempotent: every `azd deploy` re-applies the same deployment.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
for name in AZURE_SUBSCRIPTION_ID AZURE_RESOURCE_GROUP AZURE_FUNCTION_APP_NAME FUNCTION_APP_ID \
  EVENT_GRID_SYSTEM_TOPIC_NAME EVENT_GRID_SYSTEM_TOPIC_RESOURCE_GROUP STORAGE_ACCOUNT_ID \
  DEAD_LETTER_CONTAINER; do
  if [[ -z "${!name:-}" ]]; then
    echo "postdeploy: $name is not in the azd environment; run 'azd provision' first" >&2
    exit 1
  fi
done
if ! az account show --only-show-errors >/dev/null 2>&1; then
  echo "postdeploy: the Azure CLI is not signed in: run 'az login', then 'azd deploy'" >&2
  exit 1
fi

# The functions appear once the host has indexed the deployed package: wait up to 5 minutes.
wanted=(record_delivery_report record_engagement_report)
for attempt in $(seq 1 30); do
  listed="$(az functionapp function list --subscription "$AZURE_SUBSCRIPTION_ID" \
    --resource-group "$AZURE_RESOURCE_GROUP" --name "$AZURE_FUNCTION_APP_NAME" \
    --query "[].name" --output tsv --only-show-errors 2>/dev/null || true)"
  missing=()
  for fn in "${wanted[@]}"; do
    grep -qx "${AZURE_FUNCTION_APP_NAME}/${fn}" <<<"$listed" || missing+=("$fn")
  done
  ((${#missing[@]} == 0)) && break
  if ((attempt == 30)); then
    echo "postdeploy: functions not found after 5 minutes: ${missing[*]}" >&2
    exit 1
  fi
  sleep 10
done

echo "postdeploy: subscribing ${wanted[*]} to ${EVENT_GRID_SYSTEM_TOPIC_NAME}"
az deployment group create --only-show-errors --output none \
  --subscription "$AZURE_SUBSCRIPTION_ID" \
  --resource-group "$EVENT_GRID_SYSTEM_TOPIC_RESOURCE_GROUP" \
  --name "email-event-subscriptions" \
  --template-file "$here/../subscriptions.bicep" \
  --parameters \
    systemTopicName="$EVENT_GRID_SYSTEM_TOPIC_NAME" \
    functionAppId="$FUNCTION_APP_ID" \
    deadLetterStorageAccountId="$STORAGE_ACCOUNT_ID" \
    deadLetterContainerName="$DEAD_LETTER_CONTAINER" \
    maxEventsPerBatch="${EVENT_BATCH_SIZE:-10}" \
    maxDeliveryAttempts="${EVENT_MAX_DELIVERY_ATTEMPTS:-30}" \
    eventTimeToLiveInMinutes="${EVENT_TTL_MINUTES:-1440}"
echo "postdeploy: delivery and engagement reports now reach the function app"
