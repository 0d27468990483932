using System.Data.Common;
using System.Text.Json;
using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Projections;

namespace Cairn.Tests.Projections;

/// <summary>
/// A runner's document cache across a batch that a backend runs again in a new transaction, as PostgreSQL's writer
/// does when another piece of a shared transaction broke it: the second run must not see what the abandoned one did.
/// </summary>
public sealed class DocumentCacheTests
{
    /// <summary>A document its handler changes in place, as many applications write them.</summary>
    public sealed class LineCount
    {
        public required string Id { get; init; }

        public int Lines { get; set; }
    }

    private sealed class LineCounts : Projection
    {
        public LineCounts()
            : base("line-counts")
        {
            Document<LineCount>(c => c.Id);
            On<OrderLineAdded>((ctx, e) =>
            {
                var count = ctx.Documents.Load<LineCount>(e.OrderId) ?? new LineCount { Id = e.OrderId };
                count.Lines++;
                ctx.Documents.Store(count);
            });
        }
    }

    /// <summary>Documents as a build holds them, written by transactions that commit or are abandoned.</summary>
    private sealed class Build
    {
        public Dictionary<string, byte[]> Documents { get; } = new(StringComparer.Ordinal);

        public int Lines(string id) => JsonSerializer.Deserialize<JsonElement>(Documents[id]).GetProperty("lines").GetInt32();
    }

    private sealed class Transaction(Build build) : IReadModelTransaction
    {
        private readonly Dictionary<string, byte[]?> _pending = new(StringComparer.Ordinal);

        public DbConnection? Connection => null;

        public ReadOnlyMemory<byte>? ReadDocument(DocumentDefinition document, string id)
        {
            var json = _pending.TryGetValue(id, out var pending) ? pending : build.Documents.GetValueOrDefault(id);
            return json is null ? (ReadOnlyMemory<byte>?)null : json;
        }

        public void WriteDocument(DocumentDefinition document, string id, ReadOnlyMemory<byte> json, IReadOnlyList<object?> indexValues) =>
            _pending[id] = json.ToArray();

        public bool DeleteDocument(DocumentDefinition document, string id)
        {
            var existed = ReadDocument(document, id) is not null;
            _pending[id] = null;
            return existed;
        }

        public string TableName(string table) => throw new NotSupportedException();

        public void Commit()
        {
            foreach (var (id, json) in _pending)
            {
                if (json is null)
                {
                    build.Documents.Remove(id);
                }
                else
                {
                    build.Documents[id] = json;
                }
            }
        }
    }

    private static async Task<IReadOnlyList<RecordedEvent>[]> BatchesAsync(int count)
    {
        var store = new InMemoryEventStore();
        for (var i = 0; i < count; i++)
        {
            await store.AppendToStreamAsync(Orders.Stream("o1"), ExpectedVersion.Any, [Orders.Line("o1", 5m)]);
        }

        return [.. (await store.ReadAllAsync().ToListAsync()).Select(e => (IReadOnlyList<RecordedEvent>)[e])];
    }

    [Fact]
    public async Task a_batch_run_again_in_a_new_transaction_starts_from_what_the_build_holds()
    {
        var batches = await BatchesAsync(3);
        var applier = new ProjectionApplier(new LineCounts(), Orders.Serializer());
        var cache = new DocumentCache();
        var build = new Build();

        var first = new Transaction(build);
        applier.Apply(first, batches[0], cache);
        first.Commit();
        cache.Commit();

        // The backend rolls the first run of the second batch back and runs it again in a new transaction. The
        // abandoned run staged the document and changed the cached object in place.
        applier.Apply(new Transaction(build), batches[1], cache);
        var again = new Transaction(build);
        applier.Apply(again, batches[1], cache);
        again.Commit();
        cache.Commit();
        Assert.Equal(2, build.Lines("o1"));

        // The cache serves the next batch from what the committed run stored.
        var third = new Transaction(build);
        applier.Apply(third, batches[2], cache);
        third.Commit();
        cache.Commit();
        Assert.Equal(3, build.Lines("o1"));
    }

    /// <summary>
    /// A document whose JSON does not hold all it does: <see cref="Seen"/> has a private setter, which the JSON leaves
    /// out when it reads one back. <see cref="Lines"/> is computed from it.
    /// </summary>
    public sealed class LossyCount
    {
        public required string Id { get; init; }

        public int Seen { get; private set; }

        public int Lines { get; set; }

        public void Count()
        {
            Seen++;
            Lines = Seen;
        }
    }

    private sealed class LossyCounts : Projection
    {
        public LossyCounts()
            : base("lossy-counts")
        {
            Document<LossyCount>(c => c.Id);
            On<OrderLineAdded>((ctx, e) =>
            {
                var count = ctx.Documents.Load<LossyCount>(e.OrderId) ?? new LossyCount { Id = e.OrderId };
                count.Count();
                ctx.Documents.Store(count);
            });
        }
    }

    /// <summary>
    /// The cache handed the next batch the very object a batch stored, with what its JSON leaves out; a process that
    /// started later, or a rebuild, loads it from the JSON without. The same events built another read model depending on
    /// where the batches fell. A type that does not come back whole from its JSON is loaded from what the build holds.
    /// </summary>
    [Fact]
    public async Task a_document_that_does_not_come_back_whole_from_its_json_is_loaded_from_the_build_not_the_cache()
    {
        var batches = await BatchesAsync(3);
        var applier = new ProjectionApplier(new LossyCounts(), Orders.Serializer());
        var cache = new DocumentCache();
        var build = new Build();
        foreach (var batch in batches)
        {
            var transaction = new Transaction(build);
            applier.Apply(transaction, batch, cache);
            transaction.Commit();
            cache.Commit();
        }

        // As a process started after each batch would build it: from the JSON alone.
        var rebuilt = new Build();
        foreach (var batch in batches)
        {
            var transaction = new Transaction(rebuilt);
            applier.Apply(transaction, batch, new DocumentCache());
            transaction.Commit();
        }

        Assert.Equal(rebuilt.Lines("o1"), build.Lines("o1"));
    }
}
