using System.Text.Json;
using JasperFx;
using JasperFx.Events;
using Marten;

namespace Cairn.Benchmarks.Postgres;

/// <summary>
/// Marten's event store as an application would set it up for this: string stream keys (as Cairn's stream names),
/// System.Text.Json, no projections, its tables created before the measurement. Marten stores events as jsonb and
/// takes objects, so each side's events are the same 1,024 payloads deserialized once into <see cref="BenchItemAdded"/>.
/// </summary>
internal static class MartenBench
{
    private static readonly BenchItemAdded[] Items =
        Enumerable.Range(0, 1024).Select(n => JsonSerializer.Deserialize<BenchItemAdded>(Payloads.Json(n), JsonSerializerOptions.Web)!).ToArray();

    /// <summary>The <paramref name="n"/>th event, the same document as <see cref="Payloads.Json"/>'s.</summary>
    public static BenchItemAdded Event(long n) => Items[n & 1023];

    /// <summary>Opens a store on a new schema in the given mode and creates its tables.</summary>
    public static async Task<DocumentStore> OpenAsync(string connectionString, string schema, EventAppendMode mode)
    {
        var store = DocumentStore.For(o =>
        {
            o.Connection(connectionString);
            o.DatabaseSchemaName = schema;
            o.AutoCreateSchemaObjects = AutoCreate.All;
            o.Events.StreamIdentity = StreamIdentity.AsString;
            o.Events.AppendMode = mode;
            o.UseSystemTextJsonForSerialization();
            o.Events.AddEventType<BenchItemAdded>();
        });
        await store.Storage.ApplyAllConfiguredChangesToDatabaseAsync();
        return store;
    }

    /// <summary>The two append modes, as the sides are named.</summary>
    public static IEnumerable<(string Side, EventAppendMode Mode)> Modes =>
        [(PgSides.Rich, EventAppendMode.Rich), (PgSides.Quick, EventAppendMode.Quick)];
}

/// <summary>The event Marten stores: the fields of the bench's 200-byte payload.</summary>
public sealed record BenchItemAdded(string ItemId, string Sku, int Quantity, decimal Price, string Note);
