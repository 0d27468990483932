using System.Text;
using Cairn.EventStore;

namespace Cairn.Sqlite.Tests;

/// <summary>
/// The write-ahead log is copied back into the file by a thread of its own, beside the writer's commits, and the writer
/// keeps only a late automatic checkpoint; with the option off, SQLite checkpoints inside the commits as before.
/// </summary>
public sealed class BackgroundCheckpointTests : IDisposable
{
    private static readonly byte[] Document = Encoding.UTF8.GetBytes("{\"text\":\"" + new string('x', 3_000) + "\"}");

    private readonly TempDatabase _database = new();

    public void Dispose() => _database.Dispose();

    private SqliteEventStore Open(bool background) =>
        new(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString, BackgroundCheckpoints = background });

    /// <summary>Appends batches of 10 events of 3 KB, about 10 pages each.</summary>
    private static async Task AppendManyAsync(SqliteEventStore store, int batches)
    {
        for (var batch = 0; batch < batches; batch++)
        {
            await store.AppendToStreamAsync($"doc-{batch}", ExpectedVersion.NoStream, Enumerable.Range(0, 10).Select(_ => new EventData("doc.written", Document)).ToList());
        }
    }

    [Fact]
    public async Task pages_past_the_threshold_are_copied_into_the_file_by_the_checkpointer_and_every_event_survives_a_reopen()
    {
        using (var store = Open(background: true))
        {
            var checkpointer = Assert.IsType<SqliteCheckpointer>(store.Checkpointer);
            Assert.Equal(SqliteCheckpointer.WriterCheckpointPages, await store.Writer.ExecuteAsync(context => context.AutomaticCheckpointPages(), default));
            var checkpointed = checkpointer.NextCompletedAsync();
            var sizeBefore = new FileInfo(_database.Path).Length;

            // About 1,000 pages, four times the checkpointer's threshold.
            await AppendManyAsync(store, 100);
            await checkpointed.WaitAsync(TimeSpan.FromSeconds(30));

            Assert.True(checkpointer.Completed >= 1);

            // The writer's own checkpoint waits for 20,000 pages (asserted above), far more than written here: only the
            // background one can have moved pages into the file.
            Assert.True(new FileInfo(_database.Path).Length >= sizeBefore + (512 * 1024), "the file did not grow: nothing was checkpointed into it");
        }

        using var reopened = Open(background: true);
        var events = await reopened.ReadAllAsync().ToListAsync();
        Assert.Equal(1_000, events.Count);
        Assert.All(events, e => Assert.Equal(Document, e.Data.ToArray()));
    }

    [Fact]
    public async Task with_the_option_off_there_is_no_checkpointer_and_sqlite_checkpoints_in_the_commits()
    {
        using var store = Open(background: false);
        Assert.Null(store.Checkpointer);
        Assert.Equal(1_000, await store.Writer.ExecuteAsync(context => context.AutomaticCheckpointPages(), default));
        var sizeBefore = new FileInfo(_database.Path).Length;

        // About 2,000 pages, past SQLite's default threshold of 1,000.
        await AppendManyAsync(store, 200);

        // SQLite's default automatic checkpoint (1,000 pages, about 4 MB) ran in a commit: the file grew.
        Assert.True(new FileInfo(_database.Path).Length >= sizeBefore + (512 * 1024), "the file did not grow: SQLite did not checkpoint");
        Assert.Equal(2_000, await store.ReadAllAsync().CountAsync());
    }
}
