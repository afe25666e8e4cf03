#!/usr/bin/env bash
# azd predown: `azd down` deletes the resource group, and with it our system topic and its
# subscriptions. A system topic reused from elsewhere (EXISTING_SYSTEM_TOPIC_NAME) survives, so
# remove the two subscriptions this app added to it.
set -euo pipefail

topic_rg="${EVENT_GRID_SYSTEM_TOPIC_RESOURCE_GROUP:-}"
if [[ -z "$topic_rg" || "$topic_rg" == "${AZURE_RESOURCE_GROUP:-}" ]]; then
  exit 0
fi
if ! az account show --only-show-errors >/dev/null 2>&1; then
  echo "predown: the Azure CLI is not signed in: run 'az login', then 'azd down' again" >&2
  exit 1
fi
for name in record-delivery-report record-engagement-report; do
  az eventgrid system-topic event-subscription delete --only-show-errors --yes \
    --subscription "$AZURE_SUBSCRIPTION_ID" --resource-group "$topic_rg" \
    --system-topic-name "$EVENT_GRID_SYSTEM_TOPIC_NAME" --name "$name" || true
done
