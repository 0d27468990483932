namespace Cairn.Postgres.Tests;

public sealed class PostgresProjectionTests(PostgresFixture f) : Cairn.Conformance.Projections.ProjectionTests<PostgresFixture>(f);

public sealed class PostgresProjectionFailureTests(PostgresFixture f) : Cairn.Conformance.Projections.ProjectionFailureTests<PostgresFixture>(f);

public sealed class PostgresDocumentQueryTests(PostgresFixture f) : Cairn.Conformance.Projections.DocumentQueryTests<PostgresFixture>(f);

public sealed class PostgresProjectionRebuildTests(PostgresFixture f) : Cairn.Conformance.Projections.ProjectionRebuildTests<PostgresFixture>(f);

public sealed class PostgresSnapshotTests(PostgresFixture f) : Cairn.Conformance.Domain.SnapshotTests<PostgresFixture>(f, store => new PostgresSnapshotStore((PostgresEventStore)store));

public sealed class PostgresRebuildRequestTests(PostgresFixture f) : Cairn.Conformance.Projections.RebuildRequestTests<PostgresFixture>(f);

public sealed class PostgresReadModelParityTests(PostgresFixture f) : Cairn.Conformance.Projections.ReadModelParityTests<PostgresFixture>(f);

public sealed class PostgresQueryInputParityTests(PostgresFixture f) : Cairn.Conformance.Projections.QueryInputParityTests<PostgresFixture>(f);
