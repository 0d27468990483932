using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;

namespace Cairn.Tests;

/// <summary>
/// Dynamic consistency boundaries on the in-memory store: what a query or a condition is must be fixed when it is
/// made (or at the latest when the append is called), and a bad condition is refused with a typed error.
/// </summary>
public sealed class AppendConditionEdgeTests
{
    // A query copies the caller's list of items, as an item copies its own lists: a caller that reuses its list after
    // making the query does not change the query (cleared, it would match every event).
    [Fact]
    public async Task A_condition_is_not_changed_by_the_list_its_query_was_made_from()
    {
        var store = new InMemoryEventStore();
        await store.AppendToStreamAsync("misc-1", ExpectedVersion.Any, [TestEvents.Json()]);
        var items = new List<EventQueryItem> { EventQueryItem.WithTags("user:alice") };
        var condition = new AppendCondition(new EventQuery(items), null);
        items.Clear();   // the caller's buffer, reused for the next decision

        // No event carries user:alice, so the condition holds.
        var result = await store.AppendWithConditionAsync("user-alice", [TestEvents.Tagged("user.registered", "user:alice")], condition);

        Assert.False(result.WasDuplicate);
    }

    // Nor can a query grow past EventQuery.MaxNames after the check made when it was created.
    [Fact]
    public void A_query_cannot_grow_past_the_most_names_after_it_is_made()
    {
        var items = new List<EventQueryItem> { EventQueryItem.WithTags("product:0") };
        var query = new EventQuery(items);
        items.AddRange(Enumerable.Range(1, EventQuery.MaxNames).Select(i => EventQueryItem.WithTags($"product:{i}")));

        Assert.True(query.Items.Sum(i => i.Types.Count + i.Tags.Count) <= EventQuery.MaxNames);
    }

    // A null query is refused in a `with` as in the constructor, with a typed error naming it.
    [Fact]
    public void A_condition_whose_query_is_set_to_null_is_refused_with_a_typed_error()
    {
        var condition = new AppendCondition(EventQuery.All, null);

        var refused = Assert.Throws<ArgumentNullException>(() => condition with { FailIfEventsMatch = null! });

        Assert.Equal(nameof(AppendCondition.FailIfEventsMatch), refused.ParamName);
    }
}
