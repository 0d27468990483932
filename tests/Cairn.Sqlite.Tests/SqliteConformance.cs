using Cairn.Conformance;

namespace Cairn.Sqlite.Tests;

public sealed class SqliteAppendTests(SqliteFixture f) : AppendTests<SqliteFixture>(f);

public sealed class SqliteBadInputTests(SqliteFixture f) : BadInputTests<SqliteFixture>(f);

public sealed class SqliteMultiStreamAppendTests(SqliteFixture f) : MultiStreamAppendTests<SqliteFixture>(f);

public sealed class SqliteDynamicConsistencyTests(SqliteFixture f) : DynamicConsistencyTests<SqliteFixture>(f);

public sealed class SqliteQueryEdgeTests(SqliteFixture f) : QueryEdgeTests<SqliteFixture>(f);

public sealed class SqliteReadTests(SqliteFixture f) : ReadTests<SqliteFixture>(f);

public sealed class SqliteLifecycleTests(SqliteFixture f) : LifecycleTests<SqliteFixture>(f);

public sealed class SqliteStreamLifecycleEdgeTests(SqliteFixture f) : StreamLifecycleEdgeTests<SqliteFixture>(f);

public sealed class SqliteSubscriptionTests(SqliteFixture f) : SubscriptionTests<SqliteFixture>(f);

public sealed class SqliteOrderingTests(SqliteFixture f) : OrderingTests<SqliteFixture>(f);

public sealed class SqliteCheckpointTests(SqliteFixture f) : CheckpointTests<SqliteFixture>(f);

public sealed class SqliteDeciderHandlerTests(SqliteFixture f) : DeciderHandlerTests<SqliteFixture>(f);

public sealed class SqliteQueueTests(SqliteFixture f) : Cairn.Conformance.Messaging.QueueTests<SqliteFixture>(f);

public sealed class SqliteDeadLetterTests(SqliteFixture f) : Cairn.Conformance.Messaging.DeadLetterTests<SqliteFixture>(f);

public sealed class SqliteFifoQueueTests(SqliteFixture f) : Cairn.Conformance.Messaging.FifoQueueTests<SqliteFixture>(f);

public sealed class SqliteTopicTests(SqliteFixture f) : Cairn.Conformance.Messaging.TopicTests<SqliteFixture>(f);

public sealed class SqliteMessageTransactionTests(SqliteFixture f) : Cairn.Conformance.Messaging.MessageTransactionTests<SqliteFixture>(f);

public sealed class SqliteMessagingBadInputTests(SqliteFixture f) : Cairn.Conformance.Messaging.MessagingBadInputTests<SqliteFixture>(f);

public sealed class SqliteQueueEdgeConformanceTests(SqliteFixture f) : Cairn.Conformance.Messaging.QueueEdgeConformanceTests<SqliteFixture>(f);

public sealed class SqliteTransactionEdgeConformanceTests(SqliteFixture f) : Cairn.Conformance.Messaging.TransactionEdgeConformanceTests<SqliteFixture>(f);

public sealed class SqliteConsumerTests(SqliteFixture f) : Cairn.Conformance.Messaging.ConsumerTests<SqliteFixture>(f);

public sealed class SqliteEventRouteTests(SqliteFixture f) : Cairn.Conformance.Messaging.EventRouteTests<SqliteFixture>(f);

public sealed class SqliteProjectionTests(SqliteFixture f) : Cairn.Conformance.Projections.ProjectionTests<SqliteFixture>(f);

public sealed class SqliteSnapshotTests(SqliteFixture f) : Cairn.Conformance.Domain.SnapshotTests<SqliteFixture>(f, store => new SqliteSnapshotStore((SqliteEventStore)store));

public sealed class SqliteProjectionFailureTests(SqliteFixture f) : Cairn.Conformance.Projections.ProjectionFailureTests<SqliteFixture>(f);

public sealed class SqliteDocumentQueryTests(SqliteFixture f) : Cairn.Conformance.Projections.DocumentQueryTests<SqliteFixture>(f);

public sealed class SqliteProjectionRebuildTests(SqliteFixture f) : Cairn.Conformance.Projections.ProjectionRebuildTests<SqliteFixture>(f);

public sealed class SqliteWorkflowTests(SqliteFixture f) : Cairn.Conformance.Workflows.WorkflowTests<SqliteFixture>(f);

public sealed class SqliteChoreographyTests(SqliteFixture f) : Cairn.Conformance.Workflows.ChoreographyTests<SqliteFixture>(f);

public sealed class SqliteCorrelationTraceTests(SqliteFixture f) : Cairn.Conformance.Messaging.CorrelationTraceTests<SqliteFixture>(f);

public sealed class SqliteSchemaStoreTests(SqliteFixture f) : Cairn.Conformance.Schemas.SchemaStoreTests<SqliteFixture>(f, store => new SqliteSchemaStore((SqliteEventStore)store));

public sealed class SqliteOldLogTests(SqliteFixture f) : Cairn.Conformance.Upcasting.OldLogTests<SqliteFixture>(f);

public sealed class SqliteRebuildRequestTests(SqliteFixture f) : Cairn.Conformance.Projections.RebuildRequestTests<SqliteFixture>(f);

public sealed class SqliteBadInputParityTests(SqliteFixture f) : BadInputParityTests<SqliteFixture>(f, store => new SqliteSnapshotStore((SqliteEventStore)store), store => new SqliteSchemaStore((SqliteEventStore)store));

public sealed class SqliteReadModelParityTests(SqliteFixture f) : Cairn.Conformance.Projections.ReadModelParityTests<SqliteFixture>(f);

public sealed class SqliteQueryInputParityTests(SqliteFixture f) : Cairn.Conformance.Projections.QueryInputParityTests<SqliteFixture>(f);
