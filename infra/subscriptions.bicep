// Second stage, deployed by hooks/postdeploy.sh once the code is deployed: Event Grid checks that
// an AzureFunction endpoint exists when the subscription is created (Azure/bicep#11656).
// ACS email events reach record_delivery_report / record_engagement_report; what Event Grid
// cannot deliver after its retries lands in the dead-letter container.

@description('The Event Grid system topic on the Communication Service (in this resource group).')
param systemTopicName string

@description('Resource id of the function app.')
param functionAppId string

@description('Resource id of the storage account that holds the dead-letter container.')
param deadLetterStorageAccountId string

param deadLetterContainerName string

@description('Most events per delivery to a function.')
@minValue(1)
@maxValue(5000)
param maxEventsPerBatch int = 10

@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int = 30

@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 1440

// An exception in the function is a retry (function_app.py): Event Grid backs off and retries
// up to maxDeliveryAttempts within the time to live, then dead-letters.
var retryPolicy = {
  maxDeliveryAttempts: maxDeliveryAttempts
  eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
}

// The topic's system-assigned identity writes the blobs (Storage Blob Data Contributor on the
// container, modules/storage.bicep): the account takes no shared key.
var deadLetter = {
  identity: {
    type: 'SystemAssigned'
  }
  deadLetterDestination: {
    endpointType: 'StorageBlob'
    properties: {
      resourceId: deadLetterStorageAccountId
      blobContainerName: deadLetterContainerName
    }
  }
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: systemTopicName
}

resource deliveryReports 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: systemTopic
  name: 'record-delivery-report'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/record_delivery_report'
        maxEventsPerBatch: maxEventsPerBatch
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.Communication.EmailDeliveryReportReceived'
      ]
    }
    eventDeliverySchema: 'EventGridSchema'
    retryPolicy: retryPolicy
    deadLetterWithResourceIdentity: deadLetter
  }
}

resource engagementReports 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: systemTopic
  name: 'record-engagement-report'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/record_engagement_report'
        maxEventsPerBatch: maxEventsPerBatch
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.Communication.EmailEngagementTrackingReportReceived'
      ]
    }
    eventDeliverySchema: 'EventGridSchema'
    retryPolicy: retryPolicy
    deadLetterWithResourceIdentity: deadLetter
  }
}

output subscriptionNames array = [
  deliveryReports.name
  engagementReports.name
]
