// Event Grid: the system topic on the ACS resource (its subscriptions come after code deploy, in
// ../subscriptions.bicep), and the two custom topics the app publishes CloudEvents to.

param location string
param tags object
@description('Create the system topic; false when the ACS resource already has one (one per source).')
param createSystemTopic bool
param systemTopicName string
@description('Resource id of the Communication Service whose events the system topic carries.')
param communicationServiceId string
param alertsTopicName string
param outcomeEventsTopicName string
@description('Principal id of the app identity, which publishes to both custom topics.')
param appPrincipalId string

// Built-in role (shared/reference/azure-deploy.md).
var eventGridDataSender = 'd5a91429-5739-47e2-a06b-3470a27159e7'

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = if (createSystemTopic) {
  name: systemTopicName
  location: 'global'
  tags: tags
  // Its identity writes dead letters (the storage account takes no shared key).
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: communicationServiceId
    topicType: 'Microsoft.Communication.CommunicationServices'
  }
}

resource alertsTopic 'Microsoft.EventGrid/topics@2022-06-15' = {
  name: alertsTopicName
  location: location
  tags: tags
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

resource outcomeEventsTopic 'Microsoft.EventGrid/topics@2022-06-15' = {
  name: outcomeEventsTopicName
  location: location
  tags: tags
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

resource alertsSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(alertsTopic.id, appPrincipalId, eventGridDataSender)
  scope: alertsTopic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSender)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource outcomeEventsSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(outcomeEventsTopic.id, appPrincipalId, eventGridDataSender)
  scope: outcomeEventsTopic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSender)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output systemTopicName string = createSystemTopic ? systemTopic.name : ''
output systemTopicPrincipalId string = createSystemTopic ? systemTopic.identity.principalId : ''
output alertsTopicEndpoint string = alertsTopic.properties.endpoint
output outcomeEventsTopicEndpoint string = outcomeEventsTopic.properties.endpoint
