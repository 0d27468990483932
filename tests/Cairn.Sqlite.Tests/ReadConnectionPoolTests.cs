using System.Text;
using Cairn.EventStore;
using SQLitePCL;

namespace Cairn.Sqlite.Tests;

/// <summary>Read connections keep their hot statements prepared, and give them back reset, holding no snapshot.</summary>
public sealed class ReadConnectionPoolTests : IDisposable
{
    private const string Positions = "SELECT position FROM cairn_events ORDER BY position";

    private readonly TempDatabase _database = new();

    public void Dispose() => _database.Dispose();

    private SqliteEventStore Open() => new(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString });

    private static EventData Event() => new("thing.happened", Encoding.UTF8.GetBytes("{}"));

    [Fact]
    public async Task a_statement_left_half_read_is_reset_when_its_lease_ends_and_prepared_once_for_the_next()
    {
        using var store = Open();
        await store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [Event(), Event()]);
        RawStatement first;
        sqlite3 db;
        using (var lease = store.RentReadConnection())
        {
            db = lease.Db;
            first = lease.Prepared(Positions);
            Assert.True(first.Step());
            Assert.Equal(1, first.Int64(0));
            Assert.True(first.Busy);
        }

        // Given back mid-read: no statement of the idle connection holds a read snapshot any longer.
        Assert.False(first.Busy);
        await store.AppendToStreamAsync("order-1", ExpectedVersion.Exactly(1), [Event()]);

        using (var lease = store.RentReadConnection())
        {
            Assert.Same(db, lease.Db);
            var again = lease.Prepared(Positions);
            Assert.Same(first, again);
            var read = new List<long>();
            while (again.Step())
            {
                read.Add(again.Int64(0));
            }

            Assert.Equal([1L, 2L, 3L], read);
        }
    }

    [Fact]
    public void the_same_text_twice_in_one_lease_gets_two_statements_that_do_not_reset_each_other()
    {
        using var store = Open();
        using var lease = store.RentReadConnection();
        var outer = lease.Prepared("SELECT value FROM (SELECT 1 AS value UNION ALL SELECT 2) ORDER BY value");
        var inner = lease.Prepared("SELECT value FROM (SELECT 1 AS value UNION ALL SELECT 2) ORDER BY value");
        Assert.NotSame(outer, inner);
        Assert.True(outer.Step());
        Assert.True(inner.Step());
        Assert.True(inner.Step());
        Assert.Equal(2, inner.Int64(0));
        Assert.Equal(1, outer.Int64(0));
    }

    [Fact]
    public async Task stream_info_read_on_a_kept_statement_follows_later_appends()
    {
        using var store = Open();
        Assert.Equal(StreamState.NotFound, (await store.GetStreamInfoAsync("order-1", default)).State);
        for (var i = 0; i < 3; i++)
        {
            await store.AppendToStreamAsync("order-1", ExpectedVersion.Any, [Event()]);
            Assert.Equal(i, (await store.GetStreamInfoAsync("order-1", default)).LastVersion);
            Assert.Equal(i + 1, await store.ReadStreamAsync("order-1", ReadDirection.Forwards, null, long.MaxValue, default).CountAsync());
            Assert.Equal(i + 1, await store.ReadStreamAsync("order-1", ReadDirection.Backwards, null, long.MaxValue, default).CountAsync());
        }
    }
}
