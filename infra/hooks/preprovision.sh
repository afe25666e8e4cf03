#!/usr/bin/env bash
# azd preprovision: refuse parameter combinations the templates cannot honour, before anything
# is created. Reads the azd environment (azd passes it to hooks as environment variables).
set -euo pipefail

problems=()
if [[ -n "${EXISTING_COMMUNICATION_SERVICE_NAME:-}" && -z "${EXISTING_SENDER_DOMAIN:-}" ]]; then
  problems+=("EXISTING_SENDER_DOMAIN: with EXISTING_COMMUNICATION_SERVICE_NAME, name the sender domain linked to it (e.g. xxxx.azurecomm.net)")
fi
if [[ -n "${EXISTING_SYSTEM_TOPIC_NAME:-}" && -z "${EXISTING_COMMUNICATION_SERVICE_NAME:-}" ]]; then
  problems+=("EXISTING_SYSTEM_TOPIC_NAME is only used with EXISTING_COMMUNICATION_SERVICE_NAME")
fi
if [[ -n "${EXISTING_COMMUNICATION_SERVICE_NAME:-}" && -n "${CUSTOM_DOMAIN_NAME:-}" ]]; then
  problems+=("CUSTOM_DOMAIN_NAME: with an existing Communication Service, add the domain to its Email Service yourself and set EXISTING_SENDER_DOMAIN")
fi
if [[ "${CUSTOM_DOMAIN_VERIFIED:-false}" == "true" && -z "${CUSTOM_DOMAIN_NAME:-}" ]]; then
  problems+=("CUSTOM_DOMAIN_VERIFIED=true needs CUSTOM_DOMAIN_NAME")
fi
if ((${#problems[@]})); then
  printf 'azd environment settings to fix (azd env set NAME VALUE):\n' >&2
  printf '  - %s\n' "${problems[@]}" >&2
  exit 1
fi
