using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Cairn.EventStore;
using Cairn.Projections;
using Cairn.Projections.InMemory;
using Cairn.Sqlite;
using Microsoft.Data.Sqlite;

namespace Cairn.Benchmarks.Workloads;

/// <summary>
/// P1: a projection rebuilt from position 0 over <see cref="Scale.ProjectionEvents"/> events — orders of 20 events
/// (placed, 18 lines, shipped), 1,000 open at a time, one <see cref="OrderSummary"/> document per order with three
/// indexed fields — (a) into <see cref="InMemoryProjectionStore"/> and (b) into <see cref="SqliteProjectionStore"/> on
/// the same file as the events. Timed from <see cref="ProjectionRunner.StartAsync"/> of a new projection until its
/// position reaches the head. The log is written once, untimed, in appends of 1,000 streams of one event each.
/// <para>
/// Baseline, on the same file: a plain loop that pages through <c>cairn_events</c> in position order (1,000 rows a page,
/// the runner's batch size) with Microsoft.Data.Sqlite, deserializes each event with System.Text.Json (the same
/// options), and folds it into a <c>Dictionary</c> with the same fold; for (b) it then upserts the documents the page
/// touched, serialized to JSON with their three index columns, into a plain table with the same shape and indexes as
/// Cairn's, and its position into a second table, in one transaction per page (<c>synchronous=FULL</c>, as Cairn).
/// </para>
/// </summary>
internal static class P1Rebuild
{
    /// <summary>Orders open at a time: one round of them is one append while the log is written.</summary>
    private const int Concurrent = 1_000;

    /// <summary>Rows per baseline page and transaction: <see cref="Projection.BatchSize"/>'s default.</summary>
    private const int PageSize = 1_000;

    public static async Task<List<Figure>> RunAsync(Scale scale)
    {
        var log = new OrderLog(scale.ProjectionEvents / OrderLog.EventsPerOrder, Concurrent, "o");
        using var db = new TempDatabase("p1");
        await using var store = Scale.OpenCairn(db);
        var write = Stopwatch.StartNew();
        await log.WriteAsync(store);
        var head = await store.GetHeadPositionAsync(CancellationToken.None);
        Log.Line(string.Create(CultureInfo.InvariantCulture,
            $"  P1     wrote {log.Events:#,0} events of {log.Orders:#,0} orders in {write.Elapsed.TotalSeconds:0.0} s ({log.Events / write.Elapsed.TotalSeconds:#,0} events/s, {db.SizeOnDisk / 1048576.0:0} MB on disk)"));

        var round = 0;
        var (memory, memoryBaseline) = await Throughput.CompareAsync("P1-mem", "events", scale,
            () => CairnAsync(store, head, log, new InMemoryProjectionStore(), "memory", ++round),
            () => Task.FromResult(BaselineRun(db.Path, log, toSqlite: false, ++round)));
        var (sqlite, sqliteBaseline) = await Throughput.CompareAsync("P1-sql", "events", scale with { Rounds = scale.ProjectionSqliteRounds },
            () => CairnAsync(store, head, log, new SqliteProjectionStore(store), "sqlite", ++round),
            () => Task.FromResult(BaselineRun(db.Path, log, toSqlite: true, ++round)));

        var how = string.Create(CultureInfo.InvariantCulture, $"{log.Events:#,0} events, {log.Orders:#,0} orders");
        return
        [
            new Figure("P1-memory", $"rebuild into memory, {how}", memory.PerSecond, "events/s", memoryBaseline?.PerSecond, Figure.AtLeast(500_000, "events/s"),
                $"median of {scale.Rounds} rebuild(s) per side on one file"),
            new Figure("P1-sqlite", $"rebuild into SQLite, {how}", sqlite.PerSecond, "events/s", sqliteBaseline?.PerSecond, Figure.AtLeast(100_000, "events/s"),
                $"median of {scale.ProjectionSqliteRounds} rebuild(s) per side, after the in-memory ones, on the same file"),
        ];
    }

    /// <summary>One rebuild: a new projection (so a new, empty build) caught up from 0 to the head.</summary>
    private static async Task<Rate> CairnAsync(SqliteEventStore store, GlobalPosition head, OrderLog log, IProjectionStore target, string kind, int round)
    {
        var projection = new OrderSummaries($"p1-{kind}-{round}");
        var clock = Stopwatch.StartNew();
        await using (var runner = new ProjectionRunner(projection, store, target, OrderLog.Serializer))
        {
            await runner.StartAsync(CancellationToken.None);
            await runner.WaitForPositionAsync(head, MessageBench.Timeout);
        }

        var seconds = clock.Elapsed.TotalSeconds;
        var models = new ReadModels(target, OrderLog.Serializer, [projection]);
        var shipped = await models.Query<OrderSummary>().Where("status", "shipped").CountAsync();
        var samples = new List<OrderSummary?>();
        foreach (var order in Samples(log))
        {
            samples.Add(await models.LoadAsync<OrderSummary>(log.OrderId(order)));
        }

        Check($"Cairn {kind}", log, shipped, samples);
        return new Rate(log.Events / seconds, 0, log.Events, seconds);
    }

    private static Rate BaselineRun(string path, OrderLog log, bool toSqlite, int round)
    {
        var json = OrderLog.Json;
        var table = $"bench_orders_{round}";
        var clock = Stopwatch.StartNew();
        long readTicks = 0, writeTicks = 0;
        using var connection = Baseline.Open(path);
        var types = new Dictionary<long, string>();
        using (var names = connection.CreateCommand())
        {
            names.CommandText = "SELECT id, value FROM cairn_names";
            using var reader = names.ExecuteReader();
            while (reader.Read())
            {
                types[reader.GetInt64(0)] = reader.GetString(1);
            }
        }

        if (toSqlite)
        {
            using var create = connection.CreateCommand();
            create.CommandText = $"""
                CREATE TABLE {table} (id TEXT PRIMARY KEY, data BLOB NOT NULL, customer TEXT, status TEXT, total REAL);
                CREATE INDEX {table}_by_customer ON {table} (customer);
                CREATE INDEX {table}_by_status ON {table} (status);
                CREATE INDEX {table}_by_total ON {table} (total);
                CREATE TABLE IF NOT EXISTS bench_positions (name TEXT PRIMARY KEY, position INTEGER NOT NULL);
                """;
            create.ExecuteNonQuery();
        }

        using var select = connection.CreateCommand();
        select.CommandText = $"SELECT position, type_id, data FROM cairn_events WHERE position > $after ORDER BY position LIMIT {PageSize}";
        var after = select.Parameters.Add("$after", SqliteType.Integer);
        select.Prepare();
        using var upsert = connection.CreateCommand();
        upsert.CommandText = $"""
            INSERT INTO {table} (id, data, customer, status, total) VALUES ($id, $data, $customer, $status, $total)
            ON CONFLICT (id) DO UPDATE SET data = excluded.data, customer = excluded.customer, status = excluded.status, total = excluded.total
            """;
        var (id, data, customer, status, total) = (upsert.Parameters.Add("$id", SqliteType.Text), upsert.Parameters.Add("$data", SqliteType.Blob),
            upsert.Parameters.Add("$customer", SqliteType.Text), upsert.Parameters.Add("$status", SqliteType.Text), upsert.Parameters.Add("$total", SqliteType.Real));
        using var savePosition = connection.CreateCommand();
        savePosition.CommandText = "INSERT INTO bench_positions (name, position) VALUES ($name, $position) ON CONFLICT (name) DO UPDATE SET position = excluded.position";
        savePosition.Parameters.AddWithValue("$name", table);
        var position = savePosition.Parameters.Add("$position", SqliteType.Integer);
        if (toSqlite)
        {
            upsert.Prepare();
            savePosition.Prepare();
        }

        var documents = new Dictionary<string, OrderSummary>(StringComparer.Ordinal);
        var touched = new Dictionary<string, OrderSummary>(StringComparer.Ordinal);
        long last = 0, count = 0;
        while (true)
        {
            var read = Stopwatch.GetTimestamp();
            after.Value = last;
            var rows = 0;
            using (var reader = select.ExecuteReader())
            {
                while (reader.Read())
                {
                    rows++;
                    last = reader.GetInt64(0);
                    var bytes = reader.GetFieldValue<byte[]>(2);
                    OrderSummary document;
                    switch (types[reader.GetInt64(1)])
                    {
                        case "bench.order-placed":
                            document = OrderFold.Placed(JsonSerializer.Deserialize<OrderPlaced>(bytes, json)!);
                            break;
                        case "bench.order-line-added":
                            var line = JsonSerializer.Deserialize<OrderLineAdded>(bytes, json)!;
                            document = OrderFold.Line(documents[line.OrderId], line);
                            break;
                        case "bench.order-shipped":
                            var shipped = JsonSerializer.Deserialize<OrderShipped>(bytes, json)!;
                            document = OrderFold.Shipped(documents[shipped.OrderId], shipped);
                            break;
                        default:
                            continue;
                    }

                    documents[document.Id] = document;
                    if (toSqlite)
                    {
                        touched[document.Id] = document;
                    }
                }
            }

            readTicks += Stopwatch.GetTimestamp() - read;
            count += rows;
            if (toSqlite && rows > 0)
            {
                var written = Stopwatch.GetTimestamp();
                using (var transaction = connection.BeginTransaction())
                {
                    upsert.Transaction = transaction;
                    savePosition.Transaction = transaction;
                    foreach (var document in touched.Values)
                    {
                        id.Value = document.Id;
                        data.Value = JsonSerializer.SerializeToUtf8Bytes(document, json);
                        customer.Value = document.Customer;
                        status.Value = document.Status;
                        total.Value = (double)document.Total;
                        upsert.ExecuteNonQuery();
                    }

                    position.Value = last;
                    savePosition.ExecuteNonQuery();
                    transaction.Commit();
                }

                touched.Clear();
                writeTicks += Stopwatch.GetTimestamp() - written;
            }

            if (rows < PageSize)
            {
                break;
            }
        }

        var seconds = clock.Elapsed.TotalSeconds;
        if (count != log.Events)
        {
            throw new InvalidOperationException($"P1 baseline folded {count} events, expected {log.Events}.");
        }

        long storedShipped;
        if (toSqlite)
        {
            using var countShipped = connection.CreateCommand();
            countShipped.CommandText = $"SELECT count(*) FROM {table} WHERE status = 'shipped'";
            storedShipped = (long)countShipped.ExecuteScalar()!;
        }
        else
        {
            storedShipped = documents.Values.LongCount(d => d.Status == "shipped");
        }

        Check($"baseline {(toSqlite ? "sqlite" : "memory")}", log, storedShipped, [.. Samples(log).Select(o => documents.GetValueOrDefault(log.OrderId(o)))]);
        Log.Line(string.Create(CultureInfo.InvariantCulture,
            $"  P1     baseline {(toSqlite ? "sqlite" : "memory")}: read, deserialize and fold {Milliseconds(readTicks) / 1000:0.00} s{(toSqlite ? $", upsert and commit {Milliseconds(writeTicks) / 1000:0.00} s" : "")}"));
        return new Rate(count / seconds, 0, count, seconds);
    }

    private static int[] Samples(OrderLog log) => [0, log.Orders / 2 + 1, log.Orders - 1];

    private static void Check(string side, OrderLog log, long shipped, IReadOnlyList<OrderSummary?> samples)
    {
        if (shipped != log.Orders)
        {
            throw new InvalidOperationException($"P1 {side}: {shipped} orders shipped, expected {log.Orders}.");
        }

        var orders = Samples(log);
        for (var i = 0; i < orders.Length; i++)
        {
            var expected = log.Expected(orders[i]);
            if (samples[i] != expected)
            {
                throw new InvalidOperationException($"P1 {side}: order {orders[i]} is {samples[i]}, expected {expected}.");
            }
        }
    }

    private static double Milliseconds(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;
}
