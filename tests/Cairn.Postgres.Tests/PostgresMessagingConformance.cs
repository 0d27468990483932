using Cairn.Conformance.Messaging;
using Cairn.Conformance.Workflows;

namespace Cairn.Postgres.Tests;

public sealed class PostgresQueueTests(PostgresFixture f) : QueueTests<PostgresFixture>(f);

public sealed class PostgresDeadLetterTests(PostgresFixture f) : DeadLetterTests<PostgresFixture>(f);

public sealed class PostgresFifoQueueTests(PostgresFixture f) : FifoQueueTests<PostgresFixture>(f);

public sealed class PostgresTopicTests(PostgresFixture f) : TopicTests<PostgresFixture>(f);

public sealed class PostgresMessageTransactionTests(PostgresFixture f) : MessageTransactionTests<PostgresFixture>(f);

public sealed class PostgresMessagingBadInputTests(PostgresFixture f) : MessagingBadInputTests<PostgresFixture>(f);

public sealed class PostgresQueueEdgeConformanceTests(PostgresFixture f) : QueueEdgeConformanceTests<PostgresFixture>(f);

public sealed class PostgresTransactionEdgeConformanceTests(PostgresFixture f) : TransactionEdgeConformanceTests<PostgresFixture>(f);

public sealed class PostgresConsumerTests(PostgresFixture f) : ConsumerTests<PostgresFixture>(f);

public sealed class PostgresEventRouteTests(PostgresFixture f) : EventRouteTests<PostgresFixture>(f);

public sealed class PostgresCorrelationTraceTests(PostgresFixture f) : CorrelationTraceTests<PostgresFixture>(f);

public sealed class PostgresWorkflowTests(PostgresFixture f) : WorkflowTests<PostgresFixture>(f);

public sealed class PostgresChoreographyTests(PostgresFixture f) : ChoreographyTests<PostgresFixture>(f);
