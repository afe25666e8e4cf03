// `azd up`: everything the app needs in a new resource group, reached with one managed identity;
// no access keys or storage connection strings anywhere. Event subscriptions come after code deploy
// (hooks/postdeploy.sh deploys subscriptions.bicep): Event Grid validates a function endpoint.

targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name: names the resource group and tags every resource.')
param environmentName string

@minLength(1)
@description('Region of the resource group and its regional resources (ACS resources are global).')
param location string

@description('Resource group to create; default rg-<environmentName>.')
param resourceGroupName string = ''

@description('Memory of each Flex Consumption instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Most instances the app scales out to (sending is bounded by the ACS quota anyway).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Where ACS keeps email data at rest.')
param dataLocation string = 'United States'

@description('Sender username: DEFAULT_SENDER is <senderUsername>@<sender domain>.')
param senderUsername string = 'DoNotReply'

param senderDisplayName string = 'Do Not Reply'

@description('Custom sender domain (e.g. mail.example.com); its DNS records are an output.')
param customDomainName string = ''

@description('Set once the custom domain is verified: links it and makes it the sender domain.')
param customDomainVerified bool = false

@description('Open and click tracking (custom domains only; Azure-managed domains have none).')
param engagementTracking bool = false

@description('Send through this existing Communication Service instead of creating one.')
param existingCommunicationServiceName string = ''

@description('Its resource group (same subscription); default: the new resource group.')
param existingCommunicationServiceResourceGroup string = ''

@description('With an existing Communication Service: the sender domain linked to it (e.g. xxxx.azurecomm.net).')
param existingSenderDomain string = ''

@description('With an existing Communication Service that already has an Event Grid system topic (one per source): its name, in the same resource group. It needs its system-assigned identity on.')
param existingSystemTopicName string = ''

@description('Role the app identity gets on the Communication Service to send: Communication and Email Service Owner by default (shared/reference/azure-deploy.md); a custom role id works too.')
param acsSendRoleDefinitionId string = '09976791-48a7-449e-bb21-39d1a415f350'

@description('Most events per Event Grid delivery to a function.')
@minValue(1)
@maxValue(5000)
param eventBatchSize int = 10

@description('Event Grid delivery attempts before an event is dead-lettered.')
@minValue(1)
@maxValue(30)
param eventMaxDeliveryAttempts int = 30

@description('Minutes Event Grid keeps retrying an event before it is dead-lettered.')
@minValue(1)
@maxValue(1440)
param eventTimeToLiveMinutes int = 1440

@description('The worker\'s send rate; keep within your ACS quota (SEND_RATE_PER_MINUTE).')
@minValue(1)
param sendRatePerMinute int = 30

@description('SEND_RATE_PER_HOUR: keep within your ACS quota.')
@minValue(1)
param sendRatePerHour int = 100

@secure()
@minLength(32)
@description('HMAC key of address hashes (ADDRESS_HASH_KEY), stored in Key Vault. azd generates it once and reads it back from the vault afterwards (main.parameters.json).')
param addressHashKey string

@description('Log Analytics retention, in days.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var rgName = empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
var functionAppName = 'func-${resourceToken}'
var deploymentContainerName = 'app-package-${functionAppName}'
var deadLetterContainerName = 'eventgrid-deadletters'
var useExistingAcs = !empty(existingCommunicationServiceName)
var useExistingSystemTopic = useExistingAcs && !empty(existingSystemTopicName)
var acsResourceGroupName = empty(existingCommunicationServiceResourceGroup) ? rgName : existingCommunicationServiceResourceGroup

resource rg 'Microsoft.Resources/resourceGroups@2022-09-01' = {
  name: rgName
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
    retentionInDays: logRetentionDays
    appPrincipalId: identity.outputs.principalId
  }
}

module communication 'modules/communication.bicep' = if (!useExistingAcs) {
  name: 'communication'
  scope: rg
  params: {
    communicationServiceName: 'acs-${resourceToken}'
    emailServiceName: 'ecs-${resourceToken}'
    tags: tags
    dataLocation: dataLocation
    senderUsername: senderUsername
    senderDisplayName: senderDisplayName
    customDomainName: customDomainName
    customDomainVerified: customDomainVerified
    engagementTracking: engagementTracking
  }
}

resource existingCommunicationService 'Microsoft.Communication/communicationServices@2025-09-01' existing = if (useExistingAcs) {
  name: existingCommunicationServiceName
  scope: resourceGroup(acsResourceGroupName)
}

resource existingSystemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = if (useExistingSystemTopic) {
  name: existingSystemTopicName
  scope: resourceGroup(acsResourceGroupName)
}

var communicationServiceName = useExistingAcs ? existingCommunicationServiceName : communication.outputs.name
var communicationServiceId = useExistingAcs ? existingCommunicationService.id : communication.outputs.id
var acsEndpoint = useExistingAcs ? 'https://${existingCommunicationService.properties.hostName}' : communication.outputs.endpoint
var senderDomain = useExistingAcs ? existingSenderDomain : communication.outputs.senderDomain

module acsRole 'modules/acs-role.bicep' = {
  name: 'acs-role'
  scope: resourceGroup(useExistingAcs ? acsResourceGroupName : rg.name)
  params: {
    communicationServiceName: communicationServiceName
    appPrincipalId: identity.outputs.principalId
    roleDefinitionId: acsSendRoleDefinitionId
  }
}

module eventGrid 'modules/eventgrid.bicep' = {
  name: 'eventgrid'
  scope: rg
  params: {
    location: location
    tags: tags
    createSystemTopic: !useExistingSystemTopic
    systemTopicName: 'evgst-acs-${resourceToken}'
    communicationServiceId: communicationServiceId
    alertsTopicName: 'evgt-alerts-${resourceToken}'
    outcomeEventsTopicName: 'evgt-outcomes-${resourceToken}'
    appPrincipalId: identity.outputs.principalId
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: 'kv-${resourceToken}'
    location: location
    tags: tags
    appPrincipalId: identity.outputs.principalId
    addressHashKey: addressHashKey
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    deadLetterContainerName: deadLetterContainerName
    appPrincipalId: identity.outputs.principalId
    deadLetterWriterPrincipalId: useExistingSystemTopic ? existingSystemTopic.identity.principalId : eventGrid.outputs.systemTopicPrincipalId
  }
}

// Every app setting, in one place. Names are what shared/core/settings.py reads, plus the host's
// and azure-identity's own; tests/test_infra.py keeps them in step.
var appSettings = {
  // One storage account, managed identity: the host, the send queue's trigger, and the app's
  // tables, queue and blobs (the trigger and the outbox must use the same account).
  AzureWebJobsStorage__accountName: storage.outputs.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.outputs.clientId
  AzureWebJobsStorage__blobServiceUri: storage.outputs.blobEndpoint
  AzureWebJobsStorage__queueServiceUri: storage.outputs.queueEndpoint
  AzureWebJobsStorage__tableServiceUri: storage.outputs.tableEndpoint
  // azure-identity: DefaultAzureCredential (ACS, Event Grid clients) uses this user-assigned identity.
  AZURE_CLIENT_ID: identity.outputs.clientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString
  // Entra ingestion (App Insights has local auth disabled).
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.outputs.clientId};Authorization=AAD'
  ACS_ENDPOINT: acsEndpoint
  DEFAULT_SENDER: '${senderUsername}@${senderDomain}'
  SENDER_DOMAIN: senderDomain
  ALERTS_TOPIC_ENDPOINT: eventGrid.outputs.alertsTopicEndpoint
  OUTCOME_EVENTS_TOPIC_ENDPOINT: eventGrid.outputs.outcomeEventsTopicEndpoint
  SEND_RATE_PER_MINUTE: string(sendRatePerMinute)
  SEND_RATE_PER_HOUR: string(sendRatePerHour)
  // The HMAC key of address hashes, read from Key Vault with the app's identity.
  ADDRESS_HASH_KEY: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.hashKeySecretUri})'
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  params: {
    planName: 'plan-${resourceToken}'
    appName: functionAppName
    location: location
    tags: tags
    serviceName: 'api'
    identityId: identity.outputs.id
    blobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: deploymentContainerName
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    appSettings: appSettings
  }
  // Its roles must exist before the host first reads its package and storage.
  dependsOn: [
    acsRole
    monitoring
    keyVault
  ]
}

// azd stores these in .azure/<env>/.env; the hooks read them.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output FUNCTION_APP_ID string = functionApp.outputs.id
output FUNCTION_APP_URL string = 'https://${functionApp.outputs.defaultHostName}'
output STORAGE_ACCOUNT_ID string = storage.outputs.id
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output DEAD_LETTER_CONTAINER string = deadLetterContainerName
output EVENT_GRID_SYSTEM_TOPIC_NAME string = useExistingSystemTopic ? existingSystemTopicName : eventGrid.outputs.systemTopicName
output EVENT_GRID_SYSTEM_TOPIC_RESOURCE_GROUP string = useExistingSystemTopic ? acsResourceGroupName : rg.name
output EVENT_BATCH_SIZE int = eventBatchSize
output EVENT_MAX_DELIVERY_ATTEMPTS int = eventMaxDeliveryAttempts
output EVENT_TTL_MINUTES int = eventTimeToLiveMinutes
output ACS_ENDPOINT string = acsEndpoint
output DEFAULT_SENDER string = '${senderUsername}@${senderDomain}'
output ALERTS_TOPIC_ENDPOINT string = eventGrid.outputs.alertsTopicEndpoint
output OUTCOME_EVENTS_TOPIC_ENDPOINT string = eventGrid.outputs.outcomeEventsTopicEndpoint
// Records to add at your DNS host for customDomainName (empty without one).
output CUSTOM_DOMAIN_DNS_RECORDS object = useExistingAcs ? {} : communication.outputs.customDomainDnsRecords
