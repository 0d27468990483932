using Cairn.Conformance.Support;
using Cairn.Projections;

namespace Cairn.Conformance.Projections;

/// <summary>The document store: loads, queries on indexed fields (equality, ranges, lists, nulls), order, paging, counts, bad queries.</summary>
public abstract class DocumentQueryTests<TFixture>(TFixture fixture) : ProjectionTestsBase<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    private async Task<(StoreUnderTest Sut, ReadModels Models, ProjectionRunner Runner)> SeedAsync()
    {
        var sut = await CreateAsync();
        // Ten orders: customers c-0..c-2 in turn, totals 10, 20, ... 100 (plus 150 for o9), o3 and o6 shipped.
        for (var i = 0; i < 10; i++)
        {
            await PlaceAsync(sut, $"o{i}", $"c-{i % 3}", i == 9 ? 150m : (i + 1) * 10m);
        }

        await AppendAsync(sut, "o3", Orders.Shipped("o3"));
        await AppendAsync(sut, "o6", Orders.Shipped("o6"));
        var projection = new OrderSummaries();
        var runner = await StartAsync(sut, projection);
        await CaughtUpAsync(sut, runner);
        return (sut, ReadModels(sut, projection), runner);
    }

    [Fact]
    public async Task Equality_ranges_and_lists_select_the_matching_documents()
    {
        var (sut, models, runner) = await SeedAsync();
        await using var _ = sut;
        await using var __ = runner;
        var query = models.Query<OrderSummary>();

        Assert.Equal(["o0", "o3", "o6", "o9"], Ids(await query.Where("customer", "c-0").ToListAsync()));
        Assert.Equal(["o3", "o6"], Ids(await query.Where("status", "shipped").ToListAsync()));
        Assert.Equal(["o4", "o5", "o6"], Ids(await query.Where("total", QueryOperator.GreaterThanOrEqual, 50).Where("total", QueryOperator.LessThan, 80m).ToListAsync()));
        Assert.Equal(["o0", "o1"], Ids(await query.Where("total", QueryOperator.LessThanOrEqual, 20.0).ToListAsync()));
        Assert.Equal(["o9"], Ids(await query.Where("total", QueryOperator.GreaterThan, 100).ToListAsync()));
        Assert.Equal(["o1", "o2", "o4", "o5", "o7", "o8"], Ids(await query.Where("customer", QueryOperator.NotEqual, "c-0").ToListAsync()));
        Assert.Equal(["o1", "o2", "o4", "o5", "o7", "o8"], Ids(await query.Where("customer", QueryOperator.In, new[] { "c-1", "c-2", "nobody" }).ToListAsync()));
        Assert.Equal(["o3", "o6"], Ids(await query.Where("customer", "c-0").Where("status", "shipped").ToListAsync()));
        Assert.Empty(await query.Where("customer", "nobody").ToListAsync());
    }

    [Fact]
    public async Task Null_values_are_matched_by_equality_with_null_and_left_out_of_comparisons()
    {
        var (sut, models, runner) = await SeedAsync();
        await using var _ = sut;
        await using var __ = runner;
        var query = models.Query<OrderSummary>();
        Assert.Equal(["o9"], Ids(await query.Where("priority", 1).ToListAsync()));
        Assert.Equal(9, await query.Where("priority", null).CountAsync());
        Assert.Equal(1, await query.Where("priority", QueryOperator.NotEqual, null).CountAsync());
        Assert.Equal(0, await query.Where("priority", QueryOperator.NotEqual, 1).CountAsync());
    }

    [Fact]
    public async Task Order_and_pages_are_stable_with_the_id_breaking_ties()
    {
        var (sut, models, runner) = await SeedAsync();
        await using var _ = sut;
        await using var __ = runner;
        var byTotal = models.Query<OrderSummary>().OrderByDescending("total");
        Assert.Equal(["o9", "o8", "o7"], Ids(await byTotal.Take(3).ToListAsync()));
        Assert.Equal(["o6", "o5", "o4"], Ids(await byTotal.Skip(3).Take(3).ToListAsync()));
        Assert.Equal(["o0"], Ids(await byTotal.Skip(9).Take(3).ToListAsync()));
        Assert.Empty(await byTotal.Skip(10).ToListAsync());
        Assert.Equal("o9", (await byTotal.FirstOrDefaultAsync())!.Id);

        // Ties on customer, ordered by id within; then by total descending within each customer.
        Assert.Equal(["o0", "o3", "o6", "o9", "o1", "o4", "o7", "o2", "o5", "o8"], Ids(await models.Query<OrderSummary>().OrderBy("customer").ToListAsync()));
        Assert.Equal(["o9", "o6", "o3", "o0"], Ids(await models.Query<OrderSummary>().Where("customer", "c-0").OrderBy("customer").OrderByDescending("total").ToListAsync()));

        // Paging through everything, four at a time, sees each document once.
        var seen = new List<string>();
        for (var page = 0; ; page++)
        {
            var items = await models.Query<OrderSummary>().OrderBy("status").Skip(page * 4).Take(4).ToListAsync();
            if (items.Count == 0)
            {
                break;
            }

            seen.AddRange(Ids(items));
        }

        Assert.Equal(10, seen.Distinct().Count());
        Assert.Equal(10, await models.Query<OrderSummary>().CountAsync());
        Assert.Equal(4, await models.Query<OrderSummary>().Where("customer", "c-0").Skip(2).Take(1).CountAsync());
    }

    [Fact]
    public async Task A_query_on_a_field_that_is_not_indexed_or_with_a_value_of_the_wrong_kind_is_refused_by_name()
    {
        var (sut, models, runner) = await SeedAsync();
        await using var _ = sut;
        await using var __ = runner;
        var query = models.Query<OrderSummary>();
        var notIndexed = Assert.Throws<InvalidDocumentQueryException>(() => query.Where("lines", 1));
        Assert.Equal("lines", notIndexed.Field);
        Assert.Contains("customer, total, status, priority", notIndexed.Message);
        var wrongKind = Assert.Throws<InvalidDocumentQueryException>(() => query.Where("total", "ten"));
        Assert.Contains("String is not a Real", wrongKind.Message);
        Assert.Throws<InvalidDocumentQueryException>(() => query.Where("customer", 3));
        Assert.Throws<InvalidDocumentQueryException>(() => query.Where("total", QueryOperator.GreaterThan, null));
        Assert.Throws<InvalidDocumentQueryException>(() => query.Where("customer", QueryOperator.In, "c-1"));
        Assert.Throws<InvalidDocumentQueryException>(() => query.Where("customer", QueryOperator.In, Array.Empty<string>()));
        Assert.Throws<InvalidDocumentQueryException>(() => query.OrderBy("nope"));
        Assert.Throws<ArgumentOutOfRangeException>(() => query.Take(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => query.Take(10_001));
        Assert.Throws<ArgumentOutOfRangeException>(() => query.Skip(-1));
        await Assert.ThrowsAsync<ArgumentException>(() => query.LoadAsync(""));
        await Assert.ThrowsAsync<ArgumentException>(() => query.LoadAsync("o\0"));
        await Assert.ThrowsAsync<ArgumentException>(() => query.LoadAsync("o\ud800"));
        Assert.Throws<ProjectionNotFoundException>(() => models.Query<Tally>());
        Assert.Throws<ProjectionNotFoundException>(() => models.Query<OrderSummary>("other"));
    }

    [Fact]
    public async Task Index_text_up_to_its_limit_is_kept_and_found_and_text_past_it_fails_its_event_alike_on_every_backend()
    {
        await using var sut = await CreateAsync();
        var accented = new string('é', DocumentIndex.MaxTextBytes / 2);
        var emoji = string.Concat(Enumerable.Repeat("\U0001F600", DocumentIndex.MaxTextBytes / 4));
        await PlaceAsync(sut, "accented", accented);
        await PlaceAsync(sut, "emoji", emoji);
        var projection = new OrderSummaries { MaxRetries = 0, RetryDelay = TimeSpan.Zero };
        await using var runner = await StartAsync(sut, projection);
        await CaughtUpAsync(sut, runner);
        var query = ReadModels(sut, projection).Query<OrderSummary>();
        Assert.Equal(["accented"], Ids(await query.Where("customer", accented).ToListAsync()));
        Assert.Equal(["emoji"], Ids(await query.Where("customer", emoji).ToListAsync()));

        // A value no index keeps alike is refused in a query by name, and fails the event that stores it.
        var tooLong = Assert.Throws<InvalidDocumentQueryException>(() => query.Where("customer", accented + "e"));
        Assert.Contains("2,049 UTF-8 bytes", tooLong.Message, StringComparison.Ordinal);
        Assert.Throws<InvalidDocumentQueryException>(() => query.Where("customer", "c\0"));
        Assert.Throws<InvalidDocumentQueryException>(() => query.Where("customer", QueryOperator.In, new[] { "c-1", "c\ud800" }));
        await PlaceAsync(sut, "long", accented + "e");
        await Wait.UntilAsync(() => runner.Status.State == ProjectionState.Failed, "the projection stops at the event");
        Assert.Contains("longer than an index keeps", runner.Status.LastError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Missing_documents_load_as_null_and_deleted_ones_disappear()
    {
        var (sut, models, runner) = await SeedAsync();
        await using var _ = sut;
        await using var __ = runner;
        Assert.Null(await models.LoadAsync<OrderSummary>("nope"));
        var cancelled = await AppendAsync(sut, "o1", Orders.Cancelled("o1"));
        await runner.WaitForPositionAsync(cancelled, Patience);
        Assert.Null(await models.LoadAsync<OrderSummary>("o1"));
        Assert.Equal(9, await models.Query<OrderSummary>().CountAsync());
        Assert.Equal(["o4", "o7"], Ids(await models.Query<OrderSummary>().Where("customer", "c-1").ToListAsync()));
    }

    [Fact]
    public async Task Documents_written_and_deleted_within_one_batch_land_as_the_last_write_says()
    {
        await using var sut = await CreateAsync();
        await PlaceAsync(sut, "a", total: 1m);
        await AppendAsync(sut, "a", Orders.Line("a", 1m), Orders.Line("a", 1m), Orders.Cancelled("a"));
        await PlaceAsync(sut, "a", total: 5m);
        await AppendAsync(sut, "a", Orders.Line("a", 2m));
        await PlaceAsync(sut, "b", total: 1m);
        await AppendAsync(sut, "b", Orders.Cancelled("b"));
        var projection = new OrderSummaries();
        await using var runner = await StartAsync(sut, projection);
        await CaughtUpAsync(sut, runner);
        var models = ReadModels(sut, projection);
        Assert.Equal(new OrderSummary("a", "c-1", 7m, "placed", 1), await models.LoadAsync<OrderSummary>("a"));
        Assert.Null(await models.LoadAsync<OrderSummary>("b"));
        Assert.Equal(1, await models.Query<OrderSummary>().CountAsync());
    }

    private static List<string> Ids(IEnumerable<OrderSummary> orders) => [.. orders.Select(o => o.Id)];
}
