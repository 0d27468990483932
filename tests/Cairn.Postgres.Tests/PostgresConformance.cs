using Cairn.Conformance;

namespace Cairn.Postgres.Tests;

public sealed class PostgresAppendTests(PostgresFixture f) : AppendTests<PostgresFixture>(f);

public sealed class PostgresBadInputTests(PostgresFixture f) : BadInputTests<PostgresFixture>(f);

public sealed class PostgresMultiStreamAppendTests(PostgresFixture f) : MultiStreamAppendTests<PostgresFixture>(f);

public sealed class PostgresDynamicConsistencyTests(PostgresFixture f) : DynamicConsistencyTests<PostgresFixture>(f);

public sealed class PostgresQueryEdgeTests(PostgresFixture f) : QueryEdgeTests<PostgresFixture>(f);

public sealed class PostgresReadTests(PostgresFixture f) : ReadTests<PostgresFixture>(f);

public sealed class PostgresLifecycleTests(PostgresFixture f) : LifecycleTests<PostgresFixture>(f);

public sealed class PostgresStreamLifecycleEdgeTests(PostgresFixture f) : StreamLifecycleEdgeTests<PostgresFixture>(f);

public sealed class PostgresSubscriptionTests(PostgresFixture f) : SubscriptionTests<PostgresFixture>(f);

public sealed class PostgresOrderingTests(PostgresFixture f) : OrderingTests<PostgresFixture>(f);

public sealed class PostgresCheckpointTests(PostgresFixture f) : CheckpointTests<PostgresFixture>(f);

public sealed class PostgresDeciderHandlerTests(PostgresFixture f) : DeciderHandlerTests<PostgresFixture>(f);

public sealed class PostgresSchemaStoreTests(PostgresFixture f) : Cairn.Conformance.Schemas.SchemaStoreTests<PostgresFixture>(f, store => new PostgresSchemaStore((PostgresEventStore)store));

public sealed class PostgresOldLogTests(PostgresFixture f) : Cairn.Conformance.Upcasting.OldLogTests<PostgresFixture>(f);

public sealed class PostgresBadInputParityTests(PostgresFixture f) : BadInputParityTests<PostgresFixture>(f, store => new PostgresSnapshotStore((PostgresEventStore)store), store => new PostgresSchemaStore((PostgresEventStore)store));
