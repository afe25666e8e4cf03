// The app identity's role on the Communication Service it sends through (created or existing).

param communicationServiceName string
param appPrincipalId string
@description('Role that lets the identity send email through the Communication Service.')
param roleDefinitionId string

resource communicationService 'Microsoft.Communication/communicationServices@2025-09-01' existing = {
  name: communicationServiceName
}

resource acsSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(communicationService.id, appPrincipalId, roleDefinitionId)
  scope: communicationService
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionId)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}
