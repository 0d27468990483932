using System.Globalization;
using Cairn.Projections;
using Cairn.Serialization;

namespace Cairn.Sqlite.CrashChild;

/// <summary>
/// The projection side of the crash child: the cart events it appends, the projection of them it runs (async in small
/// batches, or inline in each append's transaction), and the lines printed for each projection batch. A projection
/// reports every batch it hands to the store and every batch the store committed, so the test can kill the child with
/// a batch in flight.
/// </summary>
public static partial class CrashProtocol
{
    /// <summary>Appends to carts from several tasks while an async projection of them runs in small batches.</summary>
    public const string ProjectAsyncMode = "project-async";

    /// <summary>Appends to carts from several tasks while an inline projection of them runs in each append's transaction.</summary>
    public const string ProjectInlineMode = "project-inline";

    /// <summary>Like <see cref="ProjectAsyncMode"/>, with a rebuild of the projection started once it has caught up.</summary>
    public const string ProjectRebuildMode = "project-rebuild";

    /// <summary>The name of the async cart projection.</summary>
    public const string AsyncCarts = "crash-carts-async";

    /// <summary>The name of the inline cart projection.</summary>
    public const string InlineCarts = "crash-carts-inline";

    /// <summary>The number of cart streams the child appends to.</summary>
    public const int CartCount = 24;

    /// <summary>The serializer of the cart events, the same in the child and in the test.</summary>
    public static EventSerializer CartSerializer() => new(new EventTypeRegistry()
        .Register<CartItemAdded>()
        .Register<CartItemRemoved>()
        .Register<CartCheckedOut>()
        .Register<CartViewed>());

    /// <summary>The cart projection of a mode, with the batch size its runner reads and applies at a time.</summary>
    public static CartProjection Carts(string mode, int batchSize) => mode == ProjectInlineMode
        ? new CartProjection(InlineCarts) { Lifecycle = ProjectionLifecycle.Inline, BatchSize = batchSize }
        : new CartProjection(AsyncCarts) { BatchSize = batchSize };

    /// <summary>The batch size of the child's async runner for a seed: small, so that most of its time is spent in batches.</summary>
    public static int ChildBatchSize(int seed) => 2 + ((seed & int.MaxValue) % 15);

    /// <summary>A random cart event: mostly items added, some removed, a few check-outs, and views the projection passes over.</summary>
    public static object RandomCartEvent(Random random, string cart)
    {
        ArgumentNullException.ThrowIfNull(random);
        return random.Next(100) switch
        {
            < 55 => new CartItemAdded(cart, $"sku-{random.Next(10)}", random.Next(1, 5), random.Next(1, 100)),
            < 75 => new CartItemRemoved(cart, $"sku-{random.Next(10)}", random.Next(1, 3), random.Next(1, 100)),
            < 83 => new CartCheckedOut(cart),
            _ => new CartViewed(cart),
        };
    }

    /// <summary>The line printed when a projection batch is handed to the store, before its commit.</summary>
    public static string Applying(ProjectionBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        return FormattableString.Invariant($"applying {batch.Projection} {batch.Build} {batch.ExpectedPosition.Value} {batch.Position.Value} {batch.Events.Count}{LineEnd}");
    }

    /// <summary>The line printed once a projection batch is committed: the build's stored position and the events applied.</summary>
    public static string Applied(ProjectionBatch batch, ProjectionBatchResult result)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ArgumentNullException.ThrowIfNull(result);
        return FormattableString.Invariant($"applied {batch.Projection} {batch.Build} {batch.ExpectedPosition.Value} {result.Position.Value} {batch.Events.Count + result.CaughtUp}{LineEnd}");
    }

    /// <summary>Reads an applying or applied line; null for any other line, complete or not.</summary>
    public static ProjectionProgress? ParseProgress(string line) =>
        line.Split(' ') is [var kind and ("applying" or "applied"), var projection, var build, var from, var to, var events, "."]
            ? new ProjectionProgress(
                kind == "applied",
                projection,
                long.Parse(build, CultureInfo.InvariantCulture),
                long.Parse(from, CultureInfo.InvariantCulture),
                long.Parse(to, CultureInfo.InvariantCulture),
                int.Parse(events, CultureInfo.InvariantCulture))
            : null;
}

/// <summary>A projection batch as the child reported it: handed to the store, or committed.</summary>
/// <param name="Committed">Whether the store committed it (an <c>applied</c> line) or it was handed over (<c>applying</c>).</param>
/// <param name="Projection">The projection.</param>
/// <param name="Build">The build written.</param>
/// <param name="From">The position the batch followed.</param>
/// <param name="To">The position the batch moves the build to (for a committed batch, the one stored).</param>
/// <param name="Events">The events in the batch (for a committed batch, with those of its catch-up).</param>
public sealed record ProjectionProgress(bool Committed, string Projection, long Build, long From, long To, int Events);

/// <summary>An item put in a cart.</summary>
[EventType("cart.item-added")]
public sealed record CartItemAdded(string Cart, string Sku, int Quantity, decimal Price);

/// <summary>An item taken out of a cart.</summary>
[EventType("cart.item-removed")]
public sealed record CartItemRemoved(string Cart, string Sku, int Quantity, decimal Price);

/// <summary>A cart checked out: its read model goes away, and a later item starts a new one.</summary>
[EventType("cart.checked-out")]
public sealed record CartCheckedOut(string Cart);

/// <summary>An event the cart projection has no handler for: it only moves the projection's position.</summary>
[EventType("cart.viewed")]
public sealed record CartViewed(string Cart);

/// <summary>
/// The read model of one cart, with the bookkeeping that shows an event applied twice: the last stream version and
/// position applied, and how many events came at or before them.
/// </summary>
public sealed record CartView(string Id, int Lines, int Quantity, decimal Total, long Events, long LastVersion, long LastPosition, long Replays);

/// <summary>Every event the projection applied, counted once, and how many came at or before the last position applied.</summary>
public sealed record CartTally(string Id, long Events, long LastPosition, long Replays);

/// <summary>
/// Carts by id, indexed by total, and one tally of every event applied. Handlers never throw on an event applied twice:
/// they count it, so a read model built wrong shows how, beside a fold of the log from scratch.
/// </summary>
public sealed class CartProjection : Projection
{
    /// <summary>The id of the tally document.</summary>
    public const string TallyId = "all";

    /// <summary>Creates the projection under a name.</summary>
    public CartProjection(string name)
        : base(name)
    {
        Document<CartView>(c => c.Id).Index("total", c => c.Total);
        Document<CartTally>(t => t.Id);
        On<CartItemAdded>((ctx, e) =>
        {
            var cart = Touch(ctx, ctx.Documents.Load<CartView>(e.Cart) ?? new CartView(e.Cart, 0, 0, 0m, 0, -1, 0, 0));
            ctx.Documents.Store(cart with { Lines = cart.Lines + 1, Quantity = cart.Quantity + e.Quantity, Total = cart.Total + (e.Quantity * e.Price) });
        });
        On<CartItemRemoved>((ctx, e) =>
        {
            if (ctx.Documents.Load<CartView>(e.Cart) is not { } found)
            {
                Count(ctx);
                return;
            }

            var cart = Touch(ctx, found);
            ctx.Documents.Store(cart with { Lines = cart.Lines - 1, Quantity = cart.Quantity - e.Quantity, Total = cart.Total - (e.Quantity * e.Price) });
        });
        On<CartCheckedOut>((ctx, e) =>
        {
            Count(ctx);
            ctx.Documents.Delete<CartView>(e.Cart);
        });
    }

    /// <summary>Counts the event in the tally, noting one that comes at or before the last position applied.</summary>
    private static void Count(IProjectionContext ctx)
    {
        var position = ctx.Event.Position.Value;
        var tally = ctx.Documents.Load<CartTally>(TallyId) ?? new CartTally(TallyId, 0, 0, 0);
        ctx.Documents.Store(new CartTally(TallyId, tally.Events + 1, position, tally.Replays + (position <= tally.LastPosition ? 1 : 0)));
    }

    /// <summary>Counts the event in the tally and in the cart, noting one that comes at or before the cart's last version.</summary>
    private static CartView Touch(IProjectionContext ctx, CartView cart)
    {
        Count(ctx);
        var e = ctx.Event;
        return cart with
        {
            Events = cart.Events + 1,
            LastVersion = e.Version,
            LastPosition = e.Position.Value,
            Replays = cart.Replays + (e.Version <= cart.LastVersion ? 1 : 0),
        };
    }
}
