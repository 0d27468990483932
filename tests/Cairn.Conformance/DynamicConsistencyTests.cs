using System.Text.Json;
using Cairn.Conformance.Support;
using Cairn.EventStore;

namespace Cairn.Conformance;

/// <summary>Dynamic consistency boundaries: tags, tag queries and append conditions.</summary>
public abstract class DynamicConsistencyTests<TFixture>(TFixture fixture) : StoreTests<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    private static IAsyncEnumerable<RecordedEvent> Query(IEventStore store, EventQuery query, GlobalPosition after = default, long maxCount = long.MaxValue) =>
        store.ReadByQueryAsync(query, after, maxCount, default);

    private static async Task<List<GlobalPosition>> SeedAsync(IEventStore store)
    {
        var results = new List<GlobalPosition>
        {
            (await store.AppendToStreamAsync("course-c1", ExpectedVersion.Any, [TestEvents.Tagged("course.defined", "course:c1")])).FirstPosition,
            (await store.AppendToStreamAsync("course-c2", ExpectedVersion.Any, [TestEvents.Tagged("course.defined", "course:c2")])).FirstPosition,
            (await store.AppendToStreamAsync("student-s1", ExpectedVersion.Any, [TestEvents.Tagged("student.subscribed", "course:c1", "student:s1")])).FirstPosition,
            (await store.AppendToStreamAsync("student-s2", ExpectedVersion.Any, [TestEvents.Tagged("student.subscribed", "course:c2", "student:s2")])).FirstPosition,
            (await store.AppendToStreamAsync("student-s1", ExpectedVersion.Any, [TestEvents.Tagged("student.subscribed", "course:c2", "student:s1")])).FirstPosition,
            (await store.AppendToStreamAsync("misc-1", ExpectedVersion.Any, [TestEvents.Json("{}", "student.subscribed")])).FirstPosition,
        };
        return results;
    }

    [Fact]
    public async Task tags_round_trip_in_their_order()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("course-c1", ExpectedVersion.NoStream, [TestEvents.Tagged("t", "z:1", "a:2", "course:c1")]);
        Assert.Equal(["z:1", "a:2", "course:c1"], (await sut.Store.ReadStreamAsync("course-c1").SingleAsync()).Tags);
    }

    [Fact]
    public async Task a_query_by_type_reads_every_event_of_the_types_in_position_order()
    {
        await using var sut = await CreateAsync();
        var p = await SeedAsync(sut.Store);

        var read = await Query(sut.Store, new EventQuery(EventQueryItem.OfTypes("student.subscribed"))).ToListAsync();

        Assert.Equal([p[2], p[3], p[4], p[5]], read.Select(e => e.Position));
    }

    [Fact]
    public async Task a_query_by_tag_reads_the_events_carrying_the_tag_across_streams()
    {
        await using var sut = await CreateAsync();
        var p = await SeedAsync(sut.Store);

        var read = await Query(sut.Store, new EventQuery(EventQueryItem.WithTags("course:c1"))).ToListAsync();

        Assert.Equal([p[0], p[2]], read.Select(e => e.Position));
        Assert.Equal(["course-c1", "student-s1"], read.Select(e => e.Stream.Value));
    }

    [Fact]
    public async Task the_tags_of_one_item_must_all_match()
    {
        await using var sut = await CreateAsync();
        var p = await SeedAsync(sut.Store);

        var read = await Query(sut.Store, new EventQuery(EventQueryItem.WithTags("student:s1", "course:c2"))).ToListAsync();

        Assert.Equal([p[4]], read.Select(e => e.Position));
    }

    [Fact]
    public async Task an_item_with_types_and_tags_needs_one_of_the_types_and_all_the_tags()
    {
        await using var sut = await CreateAsync();
        var p = await SeedAsync(sut.Store);

        var read = await Query(sut.Store, new EventQuery(new EventQueryItem(["course.defined", "course.renamed"], ["course:c2"]))).ToListAsync();

        Assert.Equal([p[1]], read.Select(e => e.Position));
    }

    [Fact]
    public async Task the_items_of_a_query_are_alternatives()
    {
        await using var sut = await CreateAsync();
        var p = await SeedAsync(sut.Store);

        var read = await Query(sut.Store, new EventQuery(
            new EventQueryItem(["course.defined"], ["course:c1"]),
            EventQueryItem.WithTags("student:s2"),
            EventQueryItem.WithTags("course:c1", "student:s1"))).ToListAsync();

        Assert.Equal([p[0], p[2], p[3]], read.Select(e => e.Position));
    }

    [Fact]
    public async Task a_query_reads_after_a_position_exclusive_and_at_most_max_count()
    {
        await using var sut = await CreateAsync();
        var p = await SeedAsync(sut.Store);
        var query = new EventQuery(EventQueryItem.OfTypes("student.subscribed"));

        Assert.Equal([p[3], p[4], p[5]], await Query(sut.Store, query, after: p[2]).Select(e => e.Position).ToListAsync());
        Assert.Equal([p[3], p[4]], await Query(sut.Store, query, after: p[2], maxCount: 2).Select(e => e.Position).ToListAsync());
        Assert.Empty(await Query(sut.Store, query, after: p[5]).ToListAsync());
        Assert.Empty(await Query(sut.Store, query, maxCount: 0).ToListAsync());
    }

    [Fact]
    public async Task the_empty_query_reads_every_user_event_but_no_lifecycle_record()
    {
        await using var sut = await CreateAsync();
        var p = await SeedAsync(sut.Store);
        await sut.Store.DeleteStreamAsync("misc-1", ExpectedVersion.Any, default);

        var read = await Query(sut.Store, EventQuery.All).ToListAsync();

        Assert.Equal(p, read.Select(e => e.Position));
    }

    [Fact]
    public async Task a_query_matching_nothing_reads_nothing()
    {
        await using var sut = await CreateAsync();
        await SeedAsync(sut.Store);
        Assert.Empty(await Query(sut.Store, new EventQuery(EventQueryItem.WithTags("course:c3"))).ToListAsync());
        Assert.Empty(await Query(sut.Store, new EventQuery(EventQueryItem.OfTypes("course.cancelled"))).ToListAsync());
    }

    [Fact]
    public async Task a_condition_fails_when_a_matching_event_was_appended_after_its_position_and_writes_nothing()
    {
        await using var sut = await CreateAsync();
        var p = await SeedAsync(sut.Store);
        var query = new EventQuery(EventQueryItem.WithTags("course:c1"));
        var seen = p[2];
        var conflicting = await sut.Store.AppendToStreamAsync("student-s3", ExpectedVersion.Any, [TestEvents.Tagged("student.subscribed", "course:c1", "student:s3")]);
        var before = await SnapshotAsync(sut.Store, "student-s4");

        var ex = await Assert.ThrowsAsync<AppendConditionFailedException>(() => sut.Store.AppendWithConditionAsync(
            "student-s4",
            [TestEvents.Tagged("student.subscribed", "course:c1", "student:s4")],
            new AppendCondition(query, seen)));

        Assert.Equal(conflicting.FirstPosition, ex.ConflictingPosition);
        Assert.Equal(query, ex.Condition.FailIfEventsMatch);
        await AssertNothingWrittenAsync(sut.Store, before, "student-s4");
    }

    [Fact]
    public async Task a_condition_holds_when_only_other_events_were_appended_after_its_position()
    {
        await using var sut = await CreateAsync();
        var p = await SeedAsync(sut.Store);
        var query = new EventQuery(EventQueryItem.WithTags("course:c1"));

        // Events after the position, but none matching: another course, the same type without the tag, the tag on a
        // different item's terms.
        await sut.Store.AppendToStreamAsync("student-s9", ExpectedVersion.Any, [TestEvents.Tagged("student.subscribed", "course:c2", "student:s9")]);
        await sut.Store.AppendToStreamAsync("misc-2", ExpectedVersion.Any, [TestEvents.Json("{}", "course.defined")]);

        var result = await sut.Store.AppendWithConditionAsync(
            "student-s4",
            [TestEvents.Tagged("student.subscribed", "course:c1", "student:s4")],
            new AppendCondition(query, p[^1]));

        Assert.False(result.WasDuplicate);
        Assert.Single(await sut.Store.ReadStreamAsync("student-s4").ToListAsync());
    }

    [Fact]
    public async Task a_condition_at_the_position_of_the_last_matching_event_holds()
    {
        await using var sut = await CreateAsync();
        var p = await SeedAsync(sut.Store);

        await sut.Store.AppendWithConditionAsync(
            "student-s4",
            [TestEvents.Tagged("student.subscribed", "course:c1", "student:s4")],
            new AppendCondition(new EventQuery(EventQueryItem.WithTags("course:c1")), p[2]));

        Assert.True(await sut.Store.StreamExistsAsync("student-s4"));
    }

    [Fact]
    public async Task a_condition_without_a_position_fails_if_any_matching_event_exists()
    {
        await using var sut = await CreateAsync();
        var p = await SeedAsync(sut.Store);
        var before = await SnapshotAsync(sut.Store, "course-c9");

        var ex = await Assert.ThrowsAsync<AppendConditionFailedException>(() => sut.Store.AppendWithConditionAsync(
            "course-c9",
            [TestEvents.Tagged("course.defined", "course:c9")],
            new AppendCondition(new EventQuery(EventQueryItem.OfTypes("course.defined")), null)));

        Assert.Equal(p[0], ex.ConflictingPosition);
        await AssertNothingWrittenAsync(sut.Store, before, "course-c9");
    }

    [Fact]
    public async Task a_condition_without_a_position_holds_when_no_matching_event_exists()
    {
        await using var sut = await CreateAsync();
        await SeedAsync(sut.Store);

        await sut.Store.AppendWithConditionAsync(
            "course-c9",
            [TestEvents.Tagged("course.defined", "course:c9")],
            new AppendCondition(new EventQuery(EventQueryItem.WithTags("course:c9")), null));

        Assert.True(await sut.Store.StreamExistsAsync("course-c9"));
    }

    [Fact]
    public async Task a_condition_ignores_lifecycle_records_as_tag_queries_do()
    {
        await using var sut = await CreateAsync();
        var p = await SeedAsync(sut.Store);
        await sut.Store.SetStreamMetadataAsync("misc-1", new StreamMetadata { MaxCount = 5 }, default);
        await sut.Store.DeleteStreamAsync("course-c2", ExpectedVersion.Any, default);

        await sut.Store.AppendWithConditionAsync("misc-3", [TestEvents.Json()], new AppendCondition(EventQuery.All, p[^1]));

        Assert.True(await sut.Store.StreamExistsAsync("misc-3"));
    }

    [Fact]
    public async Task a_condition_and_expected_versions_combine_in_one_multi_stream_append()
    {
        await using var sut = await CreateAsync();
        var p = await SeedAsync(sut.Store);
        var condition = new AppendCondition(new EventQuery(EventQueryItem.WithTags("course:c1")), p[^1]);
        var request = new AppendRequest(
        [
            new StreamAppend("student-s7", ExpectedVersion.NoStream, [TestEvents.Tagged("student.subscribed", "course:c1", "student:s7")]),
            new StreamAppend("course-c1", ExpectedVersion.Exactly(0), [TestEvents.Tagged("course.seat_taken", "course:c1")]),
        ], condition);

        var result = await sut.Store.AppendAsync(request, default);
        Assert.Equal(2, result.Streams.Count);

        // The same shape again fails on the condition (the append above matched it) and writes nothing.
        var before = await SnapshotAsync(sut.Store, "student-s8", "course-c1");
        await Assert.ThrowsAsync<AppendConditionFailedException>(() => sut.Store.AppendAsync(new AppendRequest(
        [
            new StreamAppend("student-s8", ExpectedVersion.NoStream, [TestEvents.Tagged("student.subscribed", "course:c1", "student:s8")]),
            new StreamAppend("course-c1", ExpectedVersion.Any, [TestEvents.Tagged("course.seat_taken", "course:c1")]),
        ], condition), default));
        await AssertNothingWrittenAsync(sut.Store, before, "student-s8", "course-c1");
    }

    // The classic example: a course has a capacity, and a subscription is decided on the events of the course and
    // of its subscriptions, which live in different streams. No stream holds the whole boundary; the condition does.
    [Fact]
    public async Task course_capacity_holds_across_streams_when_two_subscriptions_race_for_the_last_seat()
    {
        await using var sut = await CreateAsync();
        var store = sut.Store;
        await store.AppendToStreamAsync("course-c1", ExpectedVersion.NoStream, [TestEvents.Tagged("course.defined", "course:c1") with { Data = """{"capacity":2}"""u8.ToArray() }]);
        Assert.True(await TrySubscribeAsync(store, "s1", await DecideAsync(store)));

        // Two students read the same state (one seat left) and both decide to take it.
        var decisionOfS2 = await DecideAsync(store);
        var decisionOfS3 = await DecideAsync(store);
        Assert.Equal(decisionOfS2, decisionOfS3);
        Assert.Equal(1, decisionOfS2.Subscribed);

        Assert.True(await TrySubscribeAsync(store, "s2", decisionOfS2));
        await Assert.ThrowsAsync<AppendConditionFailedException>(() => TrySubscribeAsync(store, "s3", decisionOfS3));
        Assert.False(await store.StreamExistsAsync("student-s3"));

        // Deciding again on the new state refuses: the course is full.
        Assert.False(await TrySubscribeAsync(store, "s3", await DecideAsync(store)));
        var subscribed = await store.ReadByQueryAsync(new EventQuery(new EventQueryItem(["student.subscribed"], ["course:c1"])), GlobalPosition.Start, long.MaxValue, default).ToListAsync();
        Assert.Equal(["student-s1", "student-s2"], subscribed.Select(e => e.Stream.Value));
    }

    [Fact]
    public async Task a_username_stays_unique_across_user_streams()
    {
        await using var sut = await CreateAsync();
        var store = sut.Store;
        var taken = new EventQuery(new EventQueryItem(["user.registered"], ["username:alice"]));

        // Both registrations decide on an empty history: nothing seen, so no position.
        var seenByFirst = await store.ReadByQueryAsync(taken, GlobalPosition.Start, long.MaxValue, default).ToListAsync();
        var seenBySecond = await store.ReadByQueryAsync(taken, GlobalPosition.Start, long.MaxValue, default).ToListAsync();
        Assert.Empty(seenByFirst);
        Assert.Empty(seenBySecond);

        await store.AppendWithConditionAsync("user-1", [TestEvents.Tagged("user.registered", "username:alice", "user:1")], new AppendCondition(taken, null));
        var ex = await Assert.ThrowsAsync<AppendConditionFailedException>(() =>
            store.AppendWithConditionAsync("user-2", [TestEvents.Tagged("user.registered", "username:alice", "user:2")], new AppendCondition(taken, null)));

        Assert.Equal(await store.GetHeadPositionAsync(default), ex.ConflictingPosition);
        Assert.False(await store.StreamExistsAsync("user-2"));

        // Another name is free.
        await store.AppendWithConditionAsync("user-2", [TestEvents.Tagged("user.registered", "username:bob", "user:2")], new AppendCondition(new EventQuery(new EventQueryItem(["user.registered"], ["username:bob"])), null));
        Assert.True(await store.StreamExistsAsync("user-2"));
    }

    private static readonly EventQuery CourseC1 = new(
        new EventQueryItem(["course.defined"], ["course:c1"]),
        new EventQueryItem(["student.subscribed"], ["course:c1"]));

    private sealed record CourseDecision(int Capacity, int Subscribed, GlobalPosition? SeenUpTo);

    private static async Task<CourseDecision> DecideAsync(IEventStore store)
    {
        int capacity = 0, subscribed = 0;
        GlobalPosition? seen = null;
        await foreach (var e in store.ReadByQueryAsync(CourseC1, GlobalPosition.Start, long.MaxValue, default))
        {
            if (e.Type == "course.defined")
            {
                using var doc = JsonDocument.Parse(e.Data);
                capacity = doc.RootElement.GetProperty("capacity").GetInt32();
            }
            else
            {
                subscribed++;
            }

            seen = e.Position;
        }

        return new CourseDecision(capacity, subscribed, seen);
    }

    private static async Task<bool> TrySubscribeAsync(IEventStore store, string student, CourseDecision decision)
    {
        if (decision.Subscribed >= decision.Capacity)
        {
            return false;
        }

        await store.AppendWithConditionAsync(
            $"student-{student}",
            [TestEvents.Tagged("student.subscribed", "course:c1", $"student:{student}")],
            new AppendCondition(CourseC1, decision.SeenUpTo));
        return true;
    }
}
