// The app's one secret: ADDRESS_HASH_KEY, the HMAC key of every address hash (alerts, outcome
// events, erasure tombstones). Kept in Key Vault (RBAC, no access policies) and read by the app
// through a Key Vault reference with its managed identity. azd generates the value once
// (main.parameters.json: secretOrRandomPassword) and reads it back from this vault on later
// runs, so hashes stay stable across deployments.

param name string
param location string
param tags object
param appPrincipalId string
@secure()
param addressHashKey string

// Key Vault Secrets User (read secret values). Not in the reference list of role ids we checked.
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    publicNetworkAccess: 'Enabled'
  }
}

resource hashKey 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'address-hash-key'
  properties: {
    value: addressHashKey
    contentType: 'HMAC key for address hashes'
  }
}

resource appSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, appPrincipalId, keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output name string = vault.name
output hashKeySecretUri string = hashKey.properties.secretUri
