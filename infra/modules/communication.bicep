// ACS Email: an Email Service with its Azure-managed domain (and optionally a custom domain), the
// sender username, and the Communication Service the domains are linked to; Entra only.

param communicationServiceName string
param emailServiceName string
param tags object
@description('Where ACS keeps data at rest, e.g. United States, Europe, UK.')
param dataLocation string
param senderUsername string
param senderDisplayName string
@description('Custom sender domain, e.g. mail.example.com; empty for the Azure-managed domain only.')
param customDomainName string
@description('True once the custom domain\'s DNS records are verified: only then can it be linked.')
param customDomainVerified bool
@description('Open and click tracking on the custom domain (Azure-managed domains have none).')
param engagementTracking bool

var useCustomDomain = !empty(customDomainName)
var linkCustomDomain = useCustomDomain && customDomainVerified

// ACS resources are global; their data stays in dataLocation.
resource emailService 'Microsoft.Communication/emailServices@2025-09-01' = {
  name: emailServiceName
  location: 'global'
  tags: tags
  properties: {
    dataLocation: dataLocation
  }
}

resource managedDomain 'Microsoft.Communication/emailServices/domains@2025-09-01' = {
  parent: emailService
  name: 'AzureManagedDomain'
  location: 'global'
  tags: tags
  properties: {
    domainManagement: 'AzureManaged'
    userEngagementTracking: 'Disabled'
  }
}

resource managedSender 'Microsoft.Communication/emailServices/domains/senderUsernames@2025-09-01' = {
  parent: managedDomain
  name: toLower(senderUsername)
  properties: {
    username: senderUsername
    displayName: senderDisplayName
  }
}

resource customDomain 'Microsoft.Communication/emailServices/domains@2025-09-01' = if (useCustomDomain) {
  parent: emailService
  name: useCustomDomain ? customDomainName : 'unused'
  location: 'global'
  tags: tags
  properties: {
    domainManagement: 'CustomerManaged'
    userEngagementTracking: engagementTracking ? 'Enabled' : 'Disabled'
  }
}

resource customSender 'Microsoft.Communication/emailServices/domains/senderUsernames@2025-09-01' = if (useCustomDomain) {
  parent: customDomain
  name: toLower(senderUsername)
  properties: {
    username: senderUsername
    displayName: senderDisplayName
  }
}

resource communicationService 'Microsoft.Communication/communicationServices@2025-09-01' = {
  name: communicationServiceName
  location: 'global'
  tags: tags
  properties: {
    dataLocation: dataLocation
    linkedDomains: linkCustomDomain ? [
      managedDomain.id
      customDomain.id
    ] : [
      managedDomain.id
    ]
    // No access keys: the app sends with its managed identity (ACS_ENDPOINT, no ACS_KEY).
    disableLocalAuth: true
  }
}

output id string = communicationService.id
output name string = communicationService.name
output endpoint string = 'https://${communicationService.properties.hostName}'
// The sender's domain: the verified custom domain once linked, else the Azure-managed one.
output senderDomain string = linkCustomDomain ? customDomainName : managedDomain.properties.fromSenderDomain
output managedSenderDomain string = managedDomain.properties.fromSenderDomain
// TXT/CNAME records to create at your DNS host before verifying the custom domain.
output customDomainDnsRecords object = useCustomDomain ? customDomain.properties.verificationRecords : {}
