using Cairn.Conformance;

namespace Cairn.Tests;

public sealed class InMemoryAppendTests(InMemoryFixture f) : AppendTests<InMemoryFixture>(f);

public sealed class InMemoryBadInputTests(InMemoryFixture f) : BadInputTests<InMemoryFixture>(f);

public sealed class InMemoryMultiStreamAppendTests(InMemoryFixture f) : MultiStreamAppendTests<InMemoryFixture>(f);

public sealed class InMemoryDynamicConsistencyTests(InMemoryFixture f) : DynamicConsistencyTests<InMemoryFixture>(f);

public sealed class InMemoryQueryEdgeTests(InMemoryFixture f) : QueryEdgeTests<InMemoryFixture>(f);

public sealed class InMemoryReadTests(InMemoryFixture f) : ReadTests<InMemoryFixture>(f);

public sealed class InMemoryLifecycleTests(InMemoryFixture f) : LifecycleTests<InMemoryFixture>(f);

public sealed class InMemoryStreamLifecycleEdgeTests(InMemoryFixture f) : StreamLifecycleEdgeTests<InMemoryFixture>(f);

public sealed class InMemorySubscriptionTests(InMemoryFixture f) : SubscriptionTests<InMemoryFixture>(f);

public sealed class InMemoryOrderingTests(InMemoryFixture f) : OrderingTests<InMemoryFixture>(f);

public sealed class InMemoryCheckpointTests(InMemoryFixture f) : CheckpointTests<InMemoryFixture>(f);

public sealed class InMemoryDeciderHandlerTests(InMemoryFixture f) : DeciderHandlerTests<InMemoryFixture>(f);

public sealed class InMemoryQueueTests(InMemoryFixture f) : Cairn.Conformance.Messaging.QueueTests<InMemoryFixture>(f);

public sealed class InMemoryDeadLetterTests(InMemoryFixture f) : Cairn.Conformance.Messaging.DeadLetterTests<InMemoryFixture>(f);

public sealed class InMemoryFifoQueueTests(InMemoryFixture f) : Cairn.Conformance.Messaging.FifoQueueTests<InMemoryFixture>(f);

public sealed class InMemoryTopicTests(InMemoryFixture f) : Cairn.Conformance.Messaging.TopicTests<InMemoryFixture>(f);

public sealed class InMemoryMessageTransactionTests(InMemoryFixture f) : Cairn.Conformance.Messaging.MessageTransactionTests<InMemoryFixture>(f);

public sealed class InMemoryMessagingBadInputTests(InMemoryFixture f) : Cairn.Conformance.Messaging.MessagingBadInputTests<InMemoryFixture>(f);

public sealed class InMemoryQueueEdgeConformanceTests(InMemoryFixture f) : Cairn.Conformance.Messaging.QueueEdgeConformanceTests<InMemoryFixture>(f);

public sealed class InMemoryTransactionEdgeConformanceTests(InMemoryFixture f) : Cairn.Conformance.Messaging.TransactionEdgeConformanceTests<InMemoryFixture>(f);

public sealed class InMemoryConsumerTests(InMemoryFixture f) : Cairn.Conformance.Messaging.ConsumerTests<InMemoryFixture>(f);

public sealed class InMemoryEventRouteTests(InMemoryFixture f) : Cairn.Conformance.Messaging.EventRouteTests<InMemoryFixture>(f);

public sealed class InMemoryProjectionTests(InMemoryFixture f) : Cairn.Conformance.Projections.ProjectionTests<InMemoryFixture>(f);

public sealed class InMemorySnapshotTests(InMemoryFixture f) : Cairn.Conformance.Domain.SnapshotTests<InMemoryFixture>(f, _ => new Cairn.Domain.InMemorySnapshotStore());

public sealed class InMemoryProjectionFailureTests(InMemoryFixture f) : Cairn.Conformance.Projections.ProjectionFailureTests<InMemoryFixture>(f);

public sealed class InMemoryDocumentQueryTests(InMemoryFixture f) : Cairn.Conformance.Projections.DocumentQueryTests<InMemoryFixture>(f);

public sealed class InMemoryProjectionRebuildTests(InMemoryFixture f) : Cairn.Conformance.Projections.ProjectionRebuildTests<InMemoryFixture>(f);

public sealed class InMemoryWorkflowTests(InMemoryFixture f) : Cairn.Conformance.Workflows.WorkflowTests<InMemoryFixture>(f);

public sealed class InMemoryChoreographyTests(InMemoryFixture f) : Cairn.Conformance.Workflows.ChoreographyTests<InMemoryFixture>(f);

public sealed class InMemoryCorrelationTraceTests(InMemoryFixture f) : Cairn.Conformance.Messaging.CorrelationTraceTests<InMemoryFixture>(f);

public sealed class InMemorySchemaStoreTests(InMemoryFixture f) : Cairn.Conformance.Schemas.SchemaStoreTests<InMemoryFixture>(f, _ => new Cairn.Schemas.InMemorySchemaStore());

public sealed class InMemoryOldLogTests(InMemoryFixture f) : Cairn.Conformance.Upcasting.OldLogTests<InMemoryFixture>(f);

public sealed class InMemoryRebuildRequestTests(InMemoryFixture f) : Cairn.Conformance.Projections.RebuildRequestTests<InMemoryFixture>(f);

public sealed class InMemoryBadInputParityTests(InMemoryFixture f) : BadInputParityTests<InMemoryFixture>(f, _ => new Cairn.Domain.InMemorySnapshotStore(), _ => new Cairn.Schemas.InMemorySchemaStore());

public sealed class InMemoryReadModelParityTests(InMemoryFixture f) : Cairn.Conformance.Projections.ReadModelParityTests<InMemoryFixture>(f);

public sealed class InMemoryQueryInputParityTests(InMemoryFixture f) : Cairn.Conformance.Projections.QueryInputParityTests<InMemoryFixture>(f);
