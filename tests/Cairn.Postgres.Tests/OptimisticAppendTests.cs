using System.Text;
using Cairn.Conformance.Support;
using Cairn.Envelopes;
using Cairn.EventStore;
using Microsoft.Extensions.Logging;

namespace Cairn.Postgres.Tests;

/// <summary>
/// A batch of plain appends reads the log without the append lock and writes only if the head has not moved since.
/// Here a second store on the same schema (another process's writer) appends between the read and the write: the
/// first store's appends then run again under the lock, and are answered as the log is at that point.
/// </summary>
public sealed class OptimisticAppendTests : IAsyncLifetime
{
    private readonly string _schema = PostgresServer.NewSchema();
    private readonly RecordingLogger<PostgresEventStore> _log = new();
    private PostgresEventStore _store = null!;
    private PostgresEventStore _other = null!;

    public Task InitializeAsync()
    {
        _store = Open(_log);
        _other = Open(_log);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _store.DisposeAsync();
        await _other.DisposeAsync();
        await PostgresServer.DropSchemaAsync(_schema);

        // Every outcome here is one the optimistic way expects: none may reach it as an unexpected failure.
        Assert.DoesNotContain(_log.Entries, e => e.Level >= LogLevel.Warning);
    }

    private PostgresEventStore Open(RecordingLogger<PostgresEventStore> log) => new(new PostgresEventStoreOptions { ConnectionString = PostgresServer.ConnectionString, Schema = _schema }, logger: log);

    private static EventData Event(MessageId? id = null) => new("test.appended", Encoding.UTF8.GetBytes("{}")) { Id = id ?? MessageId.New() };

    /// <summary>Makes the other store append <paramref name="events"/> to <paramref name="stream"/> the first time the store is between its read and its write.</summary>
    private List<int> InterleaveOnce(string stream, params EventData[] events)
    {
        var calls = new List<int>();
        _store.BeforeOptimisticWrite = async () =>
        {
            calls.Add(calls.Count);
            if (calls.Count == 1)
            {
                await _other.AppendToStreamAsync(stream, ExpectedVersion.Any, events);
            }
        };
        return calls;
    }

    [Fact]
    public async Task an_append_that_finds_the_head_moved_lands_after_the_event_that_moved_it()
    {
        var theirs = Event();
        InterleaveOnce("shared", theirs);

        var ours = Event();
        var result = await _store.AppendToStreamAsync("shared", ExpectedVersion.Any, [ours]);

        Assert.Equal(2, result.FirstPosition.Value);
        Assert.Equal(1, result.Streams[0].FirstVersion);
        var log = await _store.ReadAllAsync().ToListAsync();
        Assert.Equal([theirs.Id, ours.Id], log.Select(e => e.Id));
        Assert.Equal([1L, 2L], log.Select(e => e.Position.Value));
        Assert.Equal([0L, 1L], log.Select(e => e.Version));
    }

    [Fact]
    public async Task an_expected_version_that_held_when_read_but_not_at_the_write_is_refused_and_writes_nothing()
    {
        InterleaveOnce("order-1", Event());

        var refused = await Assert.ThrowsAsync<WrongExpectedVersionException>(
            () => _store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [Event()]));

        Assert.Contains("order-1", refused.Message);
        Assert.Single(await _store.ReadAllAsync().ToListAsync());
    }

    [Fact]
    public async Task an_event_id_written_by_another_writer_in_between_makes_the_append_a_retry()
    {
        var same = Event();
        InterleaveOnce("order-2", same);

        var result = await _store.AppendToStreamAsync("order-2", ExpectedVersion.NoStream, [same]);

        Assert.True(result.WasDuplicate);
        Assert.Equal(1, result.FirstPosition.Value);
        Assert.Single(await _store.ReadAllAsync().ToListAsync());
    }

    [Fact]
    public async Task a_writer_that_plans_on_its_own_last_commits_reads_the_log_again_once_another_writer_appended()
    {
        await _store.AppendToStreamAsync("s", ExpectedVersion.NoStream, [Event()]);
        await _other.AppendToStreamAsync("s", ExpectedVersion.Exactly(0), [Event()]);

        // What the store knows says 's' is at version 0; the log says 1, and the log is right.
        var result = await _store.AppendToStreamAsync("s", ExpectedVersion.Exactly(1), [Event()]);
        Assert.Equal(2, result.Streams[0].FirstVersion);
        Assert.Equal(3, result.FirstPosition.Value);
        await _store.AppendToStreamAsync("s", ExpectedVersion.Exactly(2), [Event()]);

        // A stream the store never saw, created by the other writer since: not taken for new.
        await _other.AppendToStreamAsync("u", ExpectedVersion.NoStream, [Event()]);
        await Assert.ThrowsAsync<WrongExpectedVersionException>(() => _store.AppendToStreamAsync("u", ExpectedVersion.NoStream, [Event()]));
        var any = await _store.AppendToStreamAsync("u", ExpectedVersion.Any, [Event()]);
        Assert.Equal(1, any.Streams[0].FirstVersion);

        // A refusal planned on what the store knows is checked against the log before it is given.
        await _other.AppendToStreamAsync("s", ExpectedVersion.Exactly(3), [Event()]);
        var behind = await _store.AppendToStreamAsync("s", ExpectedVersion.Exactly(4), [Event()]);
        Assert.Equal(5, behind.Streams[0].FirstVersion);

        var log = await _store.ReadAllAsync().ToListAsync();
        Assert.Equal(Enumerable.Range(1, log.Count).Select(p => (long)p), log.Select(e => e.Position.Value));
        Assert.Equal([0L, 1L, 2L, 3L, 4L, 5L], log.Where(e => e.Stream.Value == "s").Select(e => e.Version));
        Assert.Equal([0L, 1L], log.Where(e => e.Stream.Value == "u").Select(e => e.Version));
    }

    [Fact]
    public async Task an_append_to_an_active_stream_leaves_its_row_alone_and_its_last_version_comes_from_its_events()
    {
        await _store.AppendToStreamAsync("r", ExpectedVersion.NoStream, [Event()]);
        var created = await RowVersionAsync("r");

        // The locked way: the other writer appends elsewhere in the middle of this one's batch, so this batch and the
        // next ones take the append lock and read the log under it.
        var calls = InterleaveOnce("elsewhere", Event());
        await _store.AppendToStreamAsync("r", ExpectedVersion.Exactly(0), [Event(), Event()]);
        await _store.AppendToStreamAsync("r", ExpectedVersion.Exactly(2), [Event()]);

        // Tried the optimistic way once, found the head moved, and from then on appended the locked way.
        Assert.Single(calls);

        // The optimistic way, on a writer planning on its own last commit.
        await _other.AppendToStreamAsync("r", ExpectedVersion.Exactly(3), [Event()]);
        await _other.AppendToStreamAsync("r", ExpectedVersion.Exactly(4), [Event()]);

        Assert.Equal(created, await RowVersionAsync("r"));
        Assert.Equal(5, (await _store.GetStreamInfoAsync("r", CancellationToken.None)).LastVersion);
        Assert.Equal(5, (await _other.GetStreamInfoAsync("r", CancellationToken.None)).LastVersion);

        // Made active again after a delete: its row is written, and its versions go on after the old last one.
        await _store.DeleteStreamAsync("r", ExpectedVersion.Exactly(5), CancellationToken.None);
        var deleted = await RowVersionAsync("r");
        var again = await _other.AppendToStreamAsync("r", ExpectedVersion.Any, [Event()]);
        Assert.Equal(6, again.Streams[0].FirstVersion);
        Assert.NotEqual(deleted, await RowVersionAsync("r"));
        var info = await _store.GetStreamInfoAsync("r", CancellationToken.None);
        Assert.Equal(StreamState.Active, info.State);
        Assert.Equal(6, info.LastVersion);
    }

    [Fact]
    public async Task a_stream_created_and_appended_to_again_in_one_batch_gets_one_row_and_consecutive_versions()
    {
        // Queued together, the two appends are most likely checked and written in one batch; either way the answer
        // must be the same.
        var first = _store.AppendToStreamAsync("n", ExpectedVersion.NoStream, [Event()]);
        var second = _store.AppendToStreamAsync("n", ExpectedVersion.Exactly(0), [Event(), Event()]);
        await Task.WhenAll(first, second);

        Assert.Equal(0, (await first).Streams[0].FirstVersion);
        Assert.Equal(1, (await second).Streams[0].FirstVersion);
        Assert.Equal(2, (await _other.GetStreamInfoAsync("n", CancellationToken.None)).LastVersion);
        Assert.Equal([0L, 1L, 2L], (await _other.ReadAllAsync().ToListAsync()).Where(e => e.Stream.Value == "n").Select(e => e.Version));
    }

    [Fact]
    public async Task an_append_whose_stream_row_went_missing_writes_none_of_its_events()
    {
        await _store.AppendToStreamAsync("a", ExpectedVersion.NoStream, [Event()]);
        await _store.AppendToStreamAsync("b", ExpectedVersion.NoStream, [Event()]);

        // Behind Cairn's back (nothing in Cairn deletes a stream's row): the head does not move, so the writer's
        // next batch plans on "a" being active and writes without reading first.
        await PostgresServer.ExecuteAsync($"DELETE FROM \"{_schema}\".streams WHERE name = 'a'");

        var both = new AppendRequest([new StreamAppend("b", ExpectedVersion.Exactly(0), [Event()]), new StreamAppend("a", ExpectedVersion.Exactly(0), [Event()])]);
        await Assert.ThrowsAsync<WrongExpectedVersionException>(() => _store.AppendAsync(both, CancellationToken.None));

        // Not "b"'s half of it: the write found "a"'s row missing and wrote nothing; read again, "a" no longer exists.
        Assert.Equal(2, (await _store.ReadAllAsync().ToListAsync()).Count);
    }

    /// <summary>The transaction that last wrote the stream's row (its <c>xmin</c>).</summary>
    private async Task<string> RowVersionAsync(string stream)
    {
        await using var connection = new Npgsql.NpgsqlConnection(PostgresServer.ConnectionString);
        await connection.OpenAsync();
        await using var command = new Npgsql.NpgsqlCommand($"SELECT xmin::text FROM \"{_schema}\".streams WHERE name = $1", connection);
        command.Parameters.Add(new Npgsql.NpgsqlParameter { Value = stream });
        return (string)(await command.ExecuteScalarAsync())!;
    }

    [Fact]
    public async Task a_stream_tombstoned_with_no_events_is_not_taken_for_new_by_a_writer_planning_on_its_own_commits()
    {
        // A tombstone with no event before it leaves a stream row and no event a write could collide with.
        await _other.TombstoneStreamAsync("t", ExpectedVersion.Any, CancellationToken.None);
        await _store.AppendToStreamAsync("a", ExpectedVersion.Any, [Event()]);

        await Assert.ThrowsAsync<StreamDeletedException>(() => _store.AppendToStreamAsync("t", ExpectedVersion.Any, [Event()]));
        Assert.DoesNotContain(await _store.ReadAllAsync().ToListAsync(), e => e.Stream.Value == "t");
    }

    [Fact]
    public async Task a_retry_refused_for_its_expected_version_in_a_batch_with_a_fresh_append_gets_its_first_result()
    {
        var original = Event();
        var first = await _store.AppendToStreamAsync("r", ExpectedVersion.NoStream, [original]);
        await _store.AppendToStreamAsync("r", ExpectedVersion.Any, [Event()]);

        // Queued while the writer is between a read and a write, the two are the writer's next batch.
        Task<AppendResult>? fresh = null;
        Task<AppendResult>? retry = null;
        _store.BeforeOptimisticWrite = async () =>
        {
            if (fresh is not null)
            {
                return;
            }

            Task queuing;
            using (ExecutionContext.SuppressFlow())
            {
                queuing = Task.Run(() =>
                {
                    fresh = _store.AppendToStreamAsync("fresh", ExpectedVersion.Any, [Event()]);
                    retry = _store.AppendToStreamAsync("r", ExpectedVersion.NoStream, [original]);
                });
            }

            await queuing;
        };
        await _store.AppendToStreamAsync("c", ExpectedVersion.Any, [Event()]);

        await fresh!;
        var retried = await retry!;
        Assert.True(retried.WasDuplicate);
        Assert.Equal(first.FirstPosition, retried.FirstPosition);
        Assert.Single(await _store.ReadAllAsync().ToListAsync(), e => e.Id == original.Id);
    }

    [Fact]
    public async Task after_the_head_moved_the_next_batches_take_the_lock_from_the_start_and_then_go_back()
    {
        var calls = InterleaveOnce("busy", Event());
        await _store.AppendToStreamAsync("busy", ExpectedVersion.Any, [Event()]);
        Assert.Single(calls);

        // While another writer is appending, the optimistic way would mostly fail: the next batches skip it.
        for (var i = 0; i < 16; i++)
        {
            await _store.AppendToStreamAsync("busy", ExpectedVersion.Any, [Event()]);
        }

        Assert.Single(calls);
        await _store.AppendToStreamAsync("busy", ExpectedVersion.Any, [Event()]);
        Assert.Equal(2, calls.Count);

        var log = await _store.ReadAllAsync().ToListAsync();
        Assert.Equal(19, log.Count);
        Assert.Equal(Enumerable.Range(1, 19).Select(p => (long)p), log.Select(e => e.Position.Value));
        Assert.Equal(Enumerable.Range(0, 19).Select(v => (long)v), log.Select(e => e.Version));
    }
}
