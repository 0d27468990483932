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
}
