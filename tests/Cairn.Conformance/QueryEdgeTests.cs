using Cairn.Conformance.Support;
using Cairn.EventStore;

namespace Cairn.Conformance;

/// <summary>
/// Tag and type queries at their edges, alike on every backend: positions past the head, type names no event can
/// have, and queries of many items or tags.
/// </summary>
public abstract class QueryEdgeTests<TFixture>(TFixture fixture) : StoreTests<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    private static IAsyncEnumerable<RecordedEvent> Query(IEventStore store, EventQuery query) =>
        store.ReadByQueryAsync(query, default, long.MaxValue, default);

    [Theory]
    [InlineData(1L << 32)]
    [InlineData(long.MaxValue)]
    public async Task A_condition_after_a_position_past_the_head_holds(long after)
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("course-c1", ExpectedVersion.Any, [TestEvents.Tagged("course.defined", "course:c1")]);

        var result = await sut.Store.AppendWithConditionAsync(
            "course-c1",
            [TestEvents.Tagged("course.renamed", "course:c1")],
            new AppendCondition(new EventQuery(EventQueryItem.WithTags("course:c1")), new GlobalPosition(after)));

        Assert.False(result.WasDuplicate);
        Assert.Equal(2, await sut.Store.ReadStreamAsync("course-c1").CountAsync());
    }

    [Fact]
    public void A_query_naming_an_event_type_no_event_can_have_is_refused()
    {
        // A plain list, not theory data: the test runner's serialization would mend the unpaired surrogate.
        foreach (var type in new[] { "a\0b", "a\uD800", "a b", "" })
        {
            var refused = Assert.Throws<InvalidEventException>(() => EventQueryItem.OfTypes(type));
            Assert.Contains("event type", refused.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task A_query_item_keeps_the_types_and_tags_it_was_made_with()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("course-c1", ExpectedVersion.Any, [TestEvents.Tagged("course.defined", "course:c1")]);
        var tags = new List<string> { "course:c1" };
        var item = EventQueryItem.WithTags([.. tags]);
        var listed = new EventQueryItem(null, tags);
        tags[0] = "course:c2";
        Assert.Single(await Query(sut.Store, new EventQuery(item)).ToListAsync());
        Assert.Single(await Query(sut.Store, new EventQuery(listed)).ToListAsync());
    }

    [Fact]
    public async Task A_query_and_a_condition_of_1500_items_or_1500_tags_are_answered()
    {
        await using var sut = await CreateAsync();
        var tags = Enumerable.Range(0, 1500).Select(i => $"product:{i}").ToArray();
        await sut.Store.AppendToStreamAsync("product-p1", ExpectedVersion.Any, [TestEvents.Tagged("product.reserved", "product:1499")]);
        await sut.Store.AppendToStreamAsync("product-all", ExpectedVersion.Any, [TestEvents.Tagged("product.reserved", tags)]);
        var anyOf = new EventQuery([.. tags.Select(tag => EventQueryItem.WithTags(tag))]);
        var allOf = new EventQuery(new EventQueryItem(["product.reserved"], tags));

        Assert.Equal(2, await Query(sut.Store, anyOf).CountAsync());
        Assert.Equal("product-all", Assert.Single(await Query(sut.Store, allOf).ToListAsync()).Stream.Value);
        await Assert.ThrowsAsync<AppendConditionFailedException>(() =>
            sut.Store.AppendWithConditionAsync("product-p2", [TestEvents.Tagged("product.reserved", "product:7")], new AppendCondition(anyOf, null)));
    }

    // Every backend answers a query of EventQuery.MaxNames types and tags, in many items of a type and a tag or in one
    // item of many tags; SQLite and PostgreSQL failed past their limits of bound values with raw driver errors (34,000
    // items of a type and a tag, or an item of 40,000 tags, on SQLite). One name more is refused when the query is made.
    [Fact]
    public async Task A_query_and_a_condition_of_the_most_names_are_answered_and_one_more_is_refused()
    {
        await using var sut = await CreateAsync();
        var half = EventQuery.MaxNames / 2;
        var tags = Enumerable.Range(0, EventQuery.MaxNames - 1).Select(i => $"product:{i}").ToArray();
        await sut.Store.AppendToStreamAsync("product-p1", ExpectedVersion.Any, [TestEvents.Tagged("product.reserved", $"product:{half - 1}")]);
        await sut.Store.AppendToStreamAsync("product-all", ExpectedVersion.Any, [TestEvents.Tagged("product.reserved", tags)]);
        var items = new EventQuery([.. Enumerable.Range(0, half).Select(i => new EventQueryItem(["product.reserved"], [$"product:{i}"]))]);
        var allOf = new EventQuery(new EventQueryItem(["product.reserved"], tags));

        Assert.Equal(2, await Query(sut.Store, items).CountAsync());
        Assert.Equal("product-all", Assert.Single(await Query(sut.Store, allOf).ToListAsync()).Stream.Value);
        await Assert.ThrowsAsync<AppendConditionFailedException>(() =>
            sut.Store.AppendWithConditionAsync("product-p2", [TestEvents.Tagged("product.reserved", "product:7")], new AppendCondition(items, null)));
        await Assert.ThrowsAsync<AppendConditionFailedException>(() =>
            sut.Store.AppendWithConditionAsync("product-p2", [TestEvents.Tagged("product.reserved", "product:7")], new AppendCondition(allOf, null)));

        var refused = Assert.Throws<ArgumentException>(() => new EventQuery([.. items.Items, EventQueryItem.WithTags("product:x")]));
        Assert.Contains("EventQuery.MaxNames", refused.Message, StringComparison.Ordinal);
    }

    // A refused append comes through its task on every backend: the in-memory store threw it from the call, before any
    // task existed, so code awaiting several appends together behaved otherwise on the store its tests use.
    [Fact]
    public async Task A_refused_append_is_reported_through_its_task_not_thrown_by_the_call()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [TestEvents.Tagged("order.placed", "order:1")]);
        var condition = new AppendCondition(new EventQuery(EventQueryItem.WithTags("order:1")), null);

        var conflicting = sut.Store.AppendAsync(new AppendRequest("order-1", ExpectedVersion.NoStream, TestEvents.Many(1)), default);
        var conditional = sut.Store.AppendAsync(new AppendRequest("order-2", ExpectedVersion.Any, TestEvents.Many(1), condition), default);

        await Assert.ThrowsAsync<WrongExpectedVersionException>(() => conflicting);
        await Assert.ThrowsAsync<AppendConditionFailedException>(() => conditional);
    }
}
