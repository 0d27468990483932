using Cairn.Conformance.Support;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Projections;

namespace Cairn.Sqlite.Tests;

/// <summary>
/// Schema version 7 keeps a projection's dead letters by build, so that they go with the build: a file written by
/// version 6, whose dead letters have no build, is migrated when opened.
/// </summary>
public sealed class ProjectionDeadLetterMigrationTests : IDisposable
{
    private readonly TempDatabase _database = new();

    public void Dispose() => _database.Dispose();

    private SqliteEventStore Open() => new(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString });

    private static void Nothing(IReadModelTransaction transaction, IReadOnlyList<RecordedEvent> events)
    {
    }

    [Fact]
    public async Task a_version_6_file_gives_its_dead_letters_to_the_serving_build_and_drops_those_of_projections_without_one()
    {
        var projection = new OrderSummaries();
        long serving;
        using (var store = Open())
        {
            var appended = await store.AppendToStreamAsync(Orders.Stream("poison"), ExpectedVersion.Any, [Orders.Placed("poison", "c-1", 10m)]);
            var projections = new SqliteProjectionStore(store);
            serving = (await projections.OpenAsync(projection, default)).Serving.Id;
            var failure = new FailureInfo("System.InvalidOperationException", "Refusing order poison", null);
            var poison = new ProjectionDeadLetter(projection.Name, serving, appended.FirstPosition, MessageId.New(), Orders.Stream("poison"), 0, "order.placed", failure, 3, DateTimeOffset.UnixEpoch);
            await projections.ApplyAsync(new ProjectionBatch(projection.Name, serving, GlobalPosition.Start, appended.FirstPosition, [], Nothing) { DeadLetters = [poison] }, default);
        }

        // What version 6 wrote: no build column, one dead letter per projection and position; and one of a projection
        // whose builds are gone.
        _database.Execute("""
            CREATE TABLE v6 (
                projection  TEXT NOT NULL,
                position    INTEGER NOT NULL,
                event_id    BLOB NOT NULL,
                stream      TEXT NOT NULL,
                version     INTEGER NOT NULL,
                event_type  TEXT NOT NULL,
                failure     TEXT NOT NULL,
                attempts    INTEGER NOT NULL,
                dead_ticks  INTEGER NOT NULL,
                PRIMARY KEY (projection, position)) WITHOUT ROWID;
            INSERT INTO v6 SELECT projection, position, event_id, stream, version, event_type, failure, attempts, dead_ticks FROM cairn_projection_dead_letters;
            INSERT INTO v6 SELECT 'gone', position, event_id, stream, version, event_type, failure, attempts, dead_ticks FROM cairn_projection_dead_letters;
            DROP TABLE cairn_projection_dead_letters;
            ALTER TABLE v6 RENAME TO cairn_projection_dead_letters;
            UPDATE cairn_schema SET version = 6;
            """);

        using (var store = Open())
        {
            var projections = new SqliteProjectionStore(store);
            var kept = Assert.Single(await projections.ListDeadLettersAsync(projection.Name, 10, default));
            Assert.Equal(serving, kept.Build);
            Assert.Equal(3, kept.Attempts);
            Assert.Contains("Refusing order poison", kept.Failure.Message);
            Assert.Empty(await projections.ListDeadLettersAsync("gone", 10, default));

            // The migrated dead letter goes with its build, as a new one would.
            var shadow = await projections.StartShadowAsync(projection, default);
            var head = (await store.ReadAllAsync(GlobalPosition.Start).ToListAsync())[^1].Position;
            await projections.ApplyAsync(new ProjectionBatch(projection.Name, shadow.Id, GlobalPosition.Start, head, [], Nothing) { GoLive = true }, default);
            Assert.Empty(await projections.ListDeadLettersAsync(projection.Name, 10, default));
        }

        Assert.Equal([(long)SqliteSchema.Version], _database.Query("SELECT version FROM cairn_schema", r => r.GetInt64(0)));
    }
}
