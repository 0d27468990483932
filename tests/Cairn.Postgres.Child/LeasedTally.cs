using Cairn.Conformance.Support;
using Cairn.Projections;

namespace Cairn.Postgres.Child;

/// <summary>
/// The projection of the lease tests: counts in its read model every order placed, refusing an event it has applied
/// already (so a second application fails the runner), and counts here the events this process applied.
/// </summary>
public sealed class LeasedTally : Projection
{
    /// <summary>The projection's name, and so its lease's.</summary>
    public const string ProjectionName = "leased-tally";

    private int _applied;

    /// <summary>Declares the tally document and its handler.</summary>
    public LeasedTally()
        : base(ProjectionName)
    {
        Document<Tally>(t => t.Id);
        On<OrderPlaced>((ctx, _) =>
        {
            var tally = ctx.Documents.Load<Tally>("all") ?? new Tally("all", 0, 0);
            if (ctx.Event.Position.Value <= tally.LastPosition)
            {
                throw new InvalidOperationException($"Event {ctx.Event.Position} applied twice (tally at {tally.LastPosition}).");
            }

            ctx.Documents.Store(tally with { Events = tally.Events + 1, LastPosition = ctx.Event.Position.Value });
            Interlocked.Increment(ref _applied);
        });
    }

    /// <summary>Events this process's runner applied in batches that committed or not.</summary>
    public int Applied => Volatile.Read(ref _applied);

    /// <summary>
    /// Hosts the projection in this process until it is killed: prints <c>live</c> once its runner holds the lease,
    /// then <c>applied N</c> as it applies.
    /// </summary>
    public static async Task<int> HostAsync(string connectionString, string schema)
    {
        await using var store = new PostgresEventStore(new PostgresEventStoreOptions { ConnectionString = connectionString, Schema = schema });
        await using var projections = new PostgresProjectionStore(store) { LeaseCheckInterval = TimeSpan.FromMilliseconds(100) };
        var projection = new LeasedTally();
        await using var runner = new ProjectionRunner(projection, store, projections, Orders.Serializer());
        await runner.StartAsync(default);
        var reported = -1;
        var live = false;
        while (true)
        {
            if (!live && runner.Status.State == ProjectionState.Live)
            {
                live = true;
                Console.Out.WriteLine("live");
            }

            if (projection.Applied != reported)
            {
                reported = projection.Applied;
                Console.Out.WriteLine($"applied {reported}");
            }

            Console.Out.Flush();
            await Task.Delay(20);
        }
    }
}
