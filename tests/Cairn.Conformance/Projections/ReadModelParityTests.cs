using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Cairn.EventStore;
using Cairn.Projections;

namespace Cairn.Conformance.Projections;

/// <summary>
/// The read side of projections answers alike on every backend: a refusal of a read model query, of a projection
/// store's read or dead-letter call, of a runner's or of the monitor's call comes with the same typed error through the
/// returned task rather than thrown by the call (so a caller who starts several reads and awaits them later, or with
/// <c>Task.WhenAll</c>, sees the same thing everywhere), and results compare, order and page the same.
/// </summary>
public abstract class ReadModelParityTests<TFixture>(TFixture fixture) : ProjectionTestsBase<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    /// <summary>
    /// What a refusal case is given: a store whose <c>order-summaries</c> projection is live over a few orders (without
    /// its <c>priority</c> index), read models over it, over a projection never started, and over code that adds an
    /// index the serving read model lacks, a runner never started, a monitor hosting nothing, and a cancelled token.
    /// </summary>
    private sealed record Context(
        StoreUnderTest Sut,
        ReadModels Models,
        ReadModels Unstarted,
        ReadModels NewerCode,
        ProjectionRunner Runner,
        ProjectionRunner NotStarted,
        ProjectionMonitor Monitor,
        DocumentDefinition Orders,
        CancellationToken Cancelled)
    {
        public IProjectionStore Store => Sut.Projections;

        public DocumentQuerySpec All => new([], [], 0, 100);
    }

    // Cases are named rather than passed as delegates, so that test names stay readable.
    private static readonly Dictionary<string, (Type Expected, Func<Context, Task> Start)> RefusalCases = new()
    {
        // ReadModels and DocumentQuery.
        ["count-cancelled"] = (typeof(OperationCanceledException), c => c.Models.Query<OrderSummary>().CountAsync(c.Cancelled)),
        ["count-before-the-projection-started"] = (typeof(ProjectionNotFoundException), c => c.Unstarted.Query<OrderSummary>().CountAsync()),
        ["count-on-an-index-the-serving-read-model-lacks"] = (typeof(InvalidDocumentQueryException), c => c.NewerCode.Query<OrderSummary>().Where("priority", 1).CountAsync()),
        ["to-list-cancelled"] = (typeof(OperationCanceledException), c => c.Models.Query<OrderSummary>().ToListAsync(c.Cancelled)),
        ["to-list-before-the-projection-started"] = (typeof(ProjectionNotFoundException), c => c.Unstarted.Query<OrderSummary>().ToListAsync()),
        ["to-list-on-an-index-the-serving-read-model-lacks"] = (typeof(InvalidDocumentQueryException), c => c.NewerCode.Query<OrderSummary>().OrderBy("priority").ToListAsync()),
        ["first-cancelled"] = (typeof(OperationCanceledException), c => c.Models.Query<OrderSummary>().FirstOrDefaultAsync(c.Cancelled)),
        ["load-cancelled"] = (typeof(OperationCanceledException), c => c.Models.LoadAsync<OrderSummary>("o1", c.Cancelled)),
        ["load-empty-id"] = (typeof(ArgumentException), c => c.Models.LoadAsync<OrderSummary>("")),
        ["load-id-over-512-characters"] = (typeof(ArgumentException), c => c.Models.LoadAsync<OrderSummary>(new string('x', DocumentIds.MaxLength + 1))),
        ["load-before-the-projection-started"] = (typeof(ProjectionNotFoundException), c => c.Unstarted.LoadAsync<OrderSummary>("o1")),
        ["load-of-a-type-no-projection-writes"] = (typeof(ProjectionNotFoundException), c => c.Models.LoadAsync<Tally>("all")),

        // A runner's and the monitor's calls.
        ["dead-letters-negative-max"] = (typeof(ArgumentOutOfRangeException), c => c.Runner.ListDeadLettersAsync(-1)),
        ["dead-letters-cancelled"] = (typeof(OperationCanceledException), c => c.Runner.ListDeadLettersAsync(10, c.Cancelled)),
        ["wait-negative-timeout"] = (typeof(ArgumentOutOfRangeException), c => c.Runner.WaitForPositionAsync(new GlobalPosition(1000), TimeSpan.FromSeconds(-2))),
        ["rebuild-cancelled"] = (typeof(OperationCanceledException), c => c.Runner.RebuildAsync(c.Cancelled)),
        ["rebuild-of-a-runner-not-started"] = (typeof(InvalidOperationException), c => c.NotStarted.RebuildAsync()),
        ["monitor-rebuild-of-an-unknown-name"] = (typeof(ProjectionNotFoundException), c => c.Monitor.RebuildAsync("nope")),
        ["monitor-wait-for-an-unknown-name"] = (typeof(ProjectionNotFoundException), c => c.Monitor.WaitForAsync("nope", new GlobalPosition(1), TimeSpan.FromSeconds(1))),

        // IProjectionStore's reads.
        ["store-load-cancelled"] = (typeof(OperationCanceledException), c => c.Store.LoadDocumentAsync("order-summaries", c.Orders, "o1", c.Cancelled)),
        ["store-query-cancelled"] = (typeof(OperationCanceledException), c => c.Store.QueryDocumentsAsync("order-summaries", c.Orders, c.All, c.Cancelled)),
        ["store-count-cancelled"] = (typeof(OperationCanceledException), c => c.Store.CountDocumentsAsync("order-summaries", c.Orders, c.All, c.Cancelled)),
        ["store-load-before-the-projection-started"] = (typeof(ProjectionNotFoundException), c => c.Store.LoadDocumentAsync("never-started", c.Orders, "o1", default)),
        ["store-query-before-the-projection-started"] = (typeof(ProjectionNotFoundException), c => c.Store.QueryDocumentsAsync("never-started", c.Orders, c.All, default)),
        ["store-count-before-the-projection-started"] = (typeof(ProjectionNotFoundException), c => c.Store.CountDocumentsAsync("never-started", c.Orders, c.All, default)),
        ["store-load-null-projection"] = (typeof(ArgumentNullException), c => c.Store.LoadDocumentAsync(null!, c.Orders, "o1", default)),
        ["store-query-null-projection"] = (typeof(ArgumentNullException), c => c.Store.QueryDocumentsAsync(null!, c.Orders, c.All, default)),
        ["store-load-null-document"] = (typeof(ArgumentNullException), c => c.Store.LoadDocumentAsync("order-summaries", null!, "o1", default)),
        ["store-query-null-document"] = (typeof(ArgumentNullException), c => c.Store.QueryDocumentsAsync("order-summaries", null!, c.All, default)),
        ["store-query-null-spec"] = (typeof(ArgumentNullException), c => c.Store.QueryDocumentsAsync("order-summaries", c.Orders, null!, default)),
        ["store-count-null-spec"] = (typeof(ArgumentNullException), c => c.Store.CountDocumentsAsync("order-summaries", c.Orders, null!, default)),
        ["store-load-null-id"] = (typeof(ArgumentException), c => c.Store.LoadDocumentAsync("order-summaries", c.Orders, null!, default)),
        ["store-dead-letters-negative-max"] = (typeof(ArgumentOutOfRangeException), c => c.Store.ListDeadLettersAsync("order-summaries", -1, default)),
        ["store-dead-letters-cancelled"] = (typeof(OperationCanceledException), c => c.Store.ListDeadLettersAsync("order-summaries", 10, c.Cancelled)),
        ["store-dead-letters-null-projection"] = (typeof(ArgumentNullException), c => c.Store.ListDeadLettersAsync(null!, 10, default)),
    };

    public static TheoryData<string> Refusals => new(RefusalCases.Keys);

    // Assert.ThrowsAsync(() => call()) cannot tell a refusal thrown by the call from one in its task, so the call is
    // made first, here, as BadInputParityTests does for the event store and the broker.
    [Theory]
    [MemberData(nameof(Refusals))]
    public async Task a_read_side_refusal_is_reported_through_the_returned_task_not_thrown_by_the_call(string @case)
    {
        var (expected, start) = RefusalCases[@case];
        await using var sut = await CreateAsync();
        await PlaceAsync(sut, "o1", "c-1", 10m);
        await PlaceAsync(sut, "o2", "c-2", 20m);
        var projection = new OrderSummaries(indexPriority: false);
        await using var runner = await StartAsync(sut, projection);
        await CaughtUpAsync(sut, runner);
        await using var notStarted = Runner(sut, new EventTally());
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();
        var context = new Context(
            sut,
            ReadModels(sut, projection),
            ReadModels(sut, new OrderSummaries("never-started")),
            ReadModels(sut, new OrderSummaries()),
            runner,
            notStarted,
            new ProjectionMonitor(),
            projection.Documents.Single(d => d.DocumentType == typeof(OrderSummary)),
            cancelled.Token);

        await ThroughTask.RefusedAsync(() => start(context), expected);
    }

    [Fact]
    public async Task Ties_are_broken_by_id_in_code_point_order_and_text_compares_with_case_on_every_backend()
    {
        await using var sut = await CreateAsync();
        string[] ids = ["b", "\u00e9", "B", "a", "Z", "a\u0001", "A", "\U0001F600", "\uFF21"];
        foreach (var id in ids)
        {
            // One stream for all: a stream name takes no control character, a document id does.
            await AppendAsync(sut, "ties", Orders.Placed(id, "same", 1m));
        }

        await PlaceAsync(sut, "upper", "Alice", 2m);
        await PlaceAsync(sut, "lower", "alice", 2m);
        var projection = new OrderSummaries();
        await using var runner = await StartAsync(sut, projection);
        await CaughtUpAsync(sut, runner);
        var query = ReadModels(sut, projection).Query<OrderSummary>();

        string[] byCodePoint = ["A", "B", "Z", "a", "a\u0001", "b", "\u00e9", "\uFF21", "\U0001F600"];
        Assert.Equal(byCodePoint, (await query.Where("customer", "same").OrderBy("total").ToListAsync()).Select(o => o.Id));
        Assert.Equal(byCodePoint, (await query.Where("customer", "same").OrderByDescending("total").ToListAsync()).Select(o => o.Id));
        Assert.Equal(["A", "B", "Z"], (await query.Where("customer", "same").Take(3).ToListAsync()).Select(o => o.Id));
        Assert.Equal(["a\u0001", "b"], (await query.Where("customer", "same").OrderBy("status").Skip(4).Take(2).ToListAsync()).Select(o => o.Id));
        Assert.Equal(["upper"], (await query.Where("customer", "Alice").ToListAsync()).Select(o => o.Id));
        Assert.Equal(["lower"], (await query.Where("customer", "alice").ToListAsync()).Select(o => o.Id));
        Assert.Equal(1, await query.Where("customer", QueryOperator.In, new[] { "ALICE", "alice" }).CountAsync());
        Assert.Null(await ReadModels(sut, projection).LoadAsync<OrderSummary>("\u00c9"));
        Assert.NotNull(await ReadModels(sut, projection).LoadAsync<OrderSummary>("a\u0001"));
        Assert.Equal(["lower"], (await query.Where("customer", QueryOperator.GreaterThan, "Alice").Where("customer", QueryOperator.LessThan, "same").ToListAsync()).Select(o => o.Id));
    }

    [Fact]
    public async Task A_number_compares_alike_whichever_numeric_type_the_query_gives_it()
    {
        await using var sut = await CreateAsync();
        await PlaceAsync(sut, "ten", total: 10m);
        await PlaceAsync(sut, "big", total: 150m);
        await PlaceAsync(sut, "tenth", total: 0.1m);
        await PlaceAsync(sut, "negative", total: -3.5m);
        var projection = new OrderSummaries();
        await using var runner = await StartAsync(sut, projection);
        await CaughtUpAsync(sut, runner);
        var query = ReadModels(sut, projection).Query<OrderSummary>();

        foreach (var ten in new object[] { 10, 10L, 10.0, 10f, 10m })
        {
            Assert.Equal(["ten"], (await query.Where("total", ten).ToListAsync()).Select(o => o.Id));
            Assert.Equal(["negative", "tenth"], (await query.Where("total", QueryOperator.LessThan, ten).ToListAsync()).Select(o => o.Id));
        }

        Assert.Equal(["tenth"], (await query.Where("total", 0.1m).ToListAsync()).Select(o => o.Id));
        Assert.Equal(["tenth"], (await query.Where("total", 0.1).ToListAsync()).Select(o => o.Id));
        Assert.Equal(["negative", "tenth", "ten", "big"], (await query.OrderBy("total").ToListAsync()).Select(o => o.Id));

        // The integer index (priority: 1 for orders over 100, else null) takes any whole number type.
        foreach (var one in new object[] { 1, 1L, (short)1, (byte)1, 1u, (ulong)1 })
        {
            Assert.Equal(["big"], (await query.Where("priority", one).ToListAsync()).Select(o => o.Id));
        }

        Assert.Equal(["ten", "tenth", "negative", "big"], (await query.OrderBy("priority").OrderByDescending("total").ToListAsync()).Select(o => o.Id));
        Assert.Equal(["big", "negative", "ten", "tenth"], (await query.OrderByDescending("priority").ToListAsync()).Select(o => o.Id));
        Assert.Equal(1, await query.Where("priority", QueryOperator.In, new object?[] { null, 1L }).CountAsync());
    }

    // The docs bounded an In list (1 to 1,000 values) but not the number of conditions: SQLite refused a query of
    // many lists with its own "too many SQL variables" when it ran, the other backends answered it. Every backend now
    // refuses it alike, as it is made, and answers one at the limit.
    [Fact]
    public async Task A_query_of_more_values_than_a_query_takes_is_refused_alike_and_one_at_the_limit_is_answered()
    {
        await using var sut = await CreateAsync();
        await PlaceAsync(sut, "o1", "c-1", 10m);
        await PlaceAsync(sut, "o2", "c-2", 20m);
        var projection = new OrderSummaries();
        await using var runner = await StartAsync(sut, projection);
        await CaughtUpAsync(sut, runner);
        var query = ReadModels(sut, projection).Query<OrderSummary>();
        var customers = Enumerable.Range(0, 1000).Select(i => "c-" + i).ToArray();
        for (var i = 0; i < DocumentQuery<OrderSummary>.MaxValues / customers.Length; i++)
        {
            query = query.Where("customer", QueryOperator.In, customers);
        }

        Assert.Equal(["o1", "o2"], (await query.ToListAsync()).Select(o => o.Id));
        Assert.Equal(2, await query.CountAsync());
        var refused = Assert.Throws<InvalidDocumentQueryException>(() => query.Where("total", 10m));
        Assert.Contains("10,001 values", refused.Message, StringComparison.Ordinal);
    }

    // A chain of a thousand conditions, far within the values a query takes, passed as it was made; SQLite then refused
    // it as it ran ("Expression tree is too large (maximum depth 1000)") where the in-memory backend answered it.
    [Fact]
    public async Task A_query_of_more_conditions_than_a_query_holds_is_refused_alike_and_one_at_the_limit_is_answered()
    {
        await using var sut = await CreateAsync();
        await PlaceAsync(sut, "o1", "c-1", 10m);
        var projection = new OrderSummaries();
        await using var runner = await StartAsync(sut, projection);
        await CaughtUpAsync(sut, runner);
        var query = ReadModels(sut, projection).Query<OrderSummary>();
        for (var i = 0; i < DocumentQuery<OrderSummary>.MaxConditions; i++)
        {
            query = query.Where("total", QueryOperator.GreaterThan, -i);
        }

        Assert.Equal(["o1"], (await query.ToListAsync()).Select(o => o.Id));
        Assert.Equal(1, await query.CountAsync());
        var refused = Assert.Throws<InvalidDocumentQueryException>(() => query.Where("total", 10m));
        Assert.Contains("at most 500 conditions", refused.Message, StringComparison.Ordinal);
    }
}
