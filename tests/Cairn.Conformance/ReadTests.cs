using Cairn.Conformance.Support;
using Cairn.EventStore;

namespace Cairn.Conformance;

/// <summary>Stream reads, <c>$all</c> reads, filters and stream information.</summary>
public abstract class ReadTests<TFixture>(TFixture fixture) : StoreTests<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    private static IAsyncEnumerable<RecordedEvent> Stream(IEventStore store, StreamName stream, ReadDirection direction, long? from = null, long maxCount = long.MaxValue) =>
        store.ReadStreamAsync(stream, direction, from, maxCount, default);

    private static async Task<List<long>> VersionsAsync(IAsyncEnumerable<RecordedEvent> events) =>
        await events.Select(e => e.Version).ToListAsync();

    /// <summary>
    /// A read cancelled while its caller takes the events stops at the next one with <see cref="OperationCanceledException"/>,
    /// whatever the backend's pages: a cancellation asked for is never lost in a page already read.
    /// </summary>
    [Theory]
    [InlineData("stream-forwards")]
    [InlineData("stream-backwards")]
    [InlineData("all")]
    [InlineData("query")]
    public async Task a_read_cancelled_while_its_events_are_taken_stops_at_the_next_one(string read)
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(10));
        using var cancel = new CancellationTokenSource();
        var events = read switch
        {
            "stream-forwards" => sut.Store.ReadStreamAsync("order-1", ReadDirection.Forwards, null, long.MaxValue, cancel.Token),
            "stream-backwards" => sut.Store.ReadStreamAsync("order-1", ReadDirection.Backwards, null, long.MaxValue, cancel.Token),
            "all" => sut.Store.ReadAllAsync(GlobalPosition.Start, EventFilter.All, long.MaxValue, cancel.Token),
            _ => sut.Store.ReadByQueryAsync(EventQuery.All, GlobalPosition.Start, long.MaxValue, cancel.Token),
        };

        var taken = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in events)
            {
                if (++taken == 1)
                {
                    await cancel.CancelAsync();
                }
            }
        });
        Assert.Equal(1, taken);
    }

    /// <summary>
    /// Bad input to a read is refused as the read is enumerated, never by the call that makes it: a caller making several
    /// reads and taking them later meets every refusal in one place, on every backend, as a stream read's.
    /// </summary>
    [Fact]
    public async Task a_bad_read_is_refused_as_it_is_enumerated_not_by_the_call()
    {
        await using var sut = await CreateAsync();
        var reads = new Func<IAsyncEnumerable<RecordedEvent>>[]
        {
            () => sut.Store.ReadStreamAsync("order-1", ReadDirection.Forwards, null, -1, default),
            () => sut.Store.ReadAllAsync(GlobalPosition.Start, EventFilter.All, -1, default),
            () => sut.Store.ReadAllAsync(GlobalPosition.Start, null!, 10, default),
            () => sut.Store.ReadByQueryAsync(EventQuery.All, GlobalPosition.Start, -1, default),
            () => sut.Store.ReadByQueryAsync(null!, GlobalPosition.Start, 10, default),
        };

        foreach (var make in reads)
        {
            IAsyncEnumerable<RecordedEvent> read;
            try
            {
                read = make();
            }
            catch (Exception e)
            {
                Assert.Fail($"The call threw {e.GetType().Name} ({e.Message}) instead of refusing as the read is enumerated.");
                return;
            }

            await Assert.ThrowsAnyAsync<ArgumentException>(async () => await read.ToListAsync());
        }
    }

    [Fact]
    public async Task a_stream_reads_forwards_from_a_version_inclusive_with_a_max_count()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(10));

        Assert.Equal([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], await VersionsAsync(Stream(sut.Store, "order-1", ReadDirection.Forwards)));
        Assert.Equal([4, 5, 6, 7, 8, 9], await VersionsAsync(Stream(sut.Store, "order-1", ReadDirection.Forwards, from: 4)));
        Assert.Equal([4, 5, 6], await VersionsAsync(Stream(sut.Store, "order-1", ReadDirection.Forwards, from: 4, maxCount: 3)));
        Assert.Equal([0, 1], await VersionsAsync(Stream(sut.Store, "order-1", ReadDirection.Forwards, maxCount: 2)));
        Assert.Equal([9], await VersionsAsync(Stream(sut.Store, "order-1", ReadDirection.Forwards, from: 9)));
        Assert.Empty(await VersionsAsync(Stream(sut.Store, "order-1", ReadDirection.Forwards, from: 10)));
        Assert.Empty(await VersionsAsync(Stream(sut.Store, "order-1", ReadDirection.Forwards, maxCount: 0)));
    }

    [Fact]
    public async Task a_stream_reads_backwards_from_a_version_inclusive_with_a_max_count()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(10));

        Assert.Equal([9, 8, 7, 6, 5, 4, 3, 2, 1, 0], await VersionsAsync(Stream(sut.Store, "order-1", ReadDirection.Backwards)));
        Assert.Equal([5, 4, 3, 2, 1, 0], await VersionsAsync(Stream(sut.Store, "order-1", ReadDirection.Backwards, from: 5)));
        Assert.Equal([5, 4], await VersionsAsync(Stream(sut.Store, "order-1", ReadDirection.Backwards, from: 5, maxCount: 2)));
        Assert.Equal([9, 8, 7], await VersionsAsync(sut.Store.ReadStreamBackwardsAsync("order-1", 3)));
        Assert.Equal([0], await VersionsAsync(Stream(sut.Store, "order-1", ReadDirection.Backwards, from: 0)));
        Assert.Equal([9, 8], await VersionsAsync(Stream(sut.Store, "order-1", ReadDirection.Backwards, from: 50, maxCount: 2)));
    }

    [Fact]
    public async Task a_stream_read_carries_the_data_of_each_version()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(3, first: 100));
        await sut.Store.AppendToStreamAsync("order-2", ExpectedVersion.NoStream, TestEvents.Many(3, first: 200));
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Exactly(2), TestEvents.Many(2, first: 103));

        var events = await sut.Store.ReadStreamAsync("order-1").ToListAsync();
        Assert.Equal([100, 101, 102, 103, 104], events.Select(TestEvents.NumberOf));
        Assert.All(events, e => Assert.Equal(new StreamName("order-1"), e.Stream));
        AssertStrictlyIncreasing(events.Select(e => e.Position));
    }

    [Fact]
    public async Task reading_a_missing_stream_yields_nothing()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(2));

        Assert.Empty(await sut.Store.ReadStreamAsync("order-2").ToListAsync());
        Assert.Empty(await Stream(sut.Store, "order-2", ReadDirection.Backwards).ToListAsync());
        Assert.Empty(await sut.Store.ReadStreamAsync("order").ToListAsync());
    }

    [Fact]
    public async Task all_reads_from_a_position_inclusive_with_a_max_count()
    {
        await using var sut = await CreateAsync();
        var positions = new List<GlobalPosition>();
        for (var i = 0; i < 10; i++)
        {
            positions.Add((await sut.Store.AppendToStreamAsync($"order-{i % 3}", ExpectedVersion.Any, [TestEvents.Numbered(i)])).FirstPosition);
        }

        Assert.Equal(positions, await sut.Store.ReadAllAsync().Select(e => e.Position).ToListAsync());
        Assert.Equal(positions, await sut.Store.ReadAllAsync(GlobalPosition.Start).Select(e => e.Position).ToListAsync());
        Assert.Equal(positions[4..], await sut.Store.ReadAllAsync(positions[4]).Select(e => e.Position).ToListAsync());
        Assert.Equal(positions[4..7], await sut.Store.ReadAllAsync(positions[4], EventFilter.All, 3, default).Select(e => e.Position).ToListAsync());
        Assert.Equal([positions[9]], await sut.Store.ReadAllAsync(positions[9]).Select(e => e.Position).ToListAsync());
        Assert.Empty(await sut.Store.ReadAllAsync(positions[9].Next).ToListAsync());
        Assert.Empty(await sut.Store.ReadAllAsync(GlobalPosition.Start, EventFilter.All, 0, default).ToListAsync());
        Assert.Equal(Enumerable.Range(0, 10), await sut.Store.ReadAllAsync().Select(TestEvents.NumberOf).ToListAsync());
    }

    private static async Task<Dictionary<string, GlobalPosition>> SeedMixedAsync(IEventStore store)
    {
        var positions = new Dictionary<string, GlobalPosition>();
        async Task Add(string key, StreamName stream, string type)
        {
            positions[key] = (await store.AppendToStreamAsync(stream, ExpectedVersion.Any, [TestEvents.Json("{}", type)])).FirstPosition;
        }

        await Add("order-1.placed", "order-1", "order.placed");
        await Add("invoice-1.issued", "invoice-1", "invoice.issued");
        await Add("order-2.placed", "order-2", "order.placed");
        await Add("order-1.shipped", "order-1", "order.shipped");
        await Add("orders.placed", "orders", "order.placed");
        await Add("order-1-a.placed", "order-1-a", "order.placed");
        await Add("invoice-1.paid", "invoice-1", "invoice.paid");
        return positions;
    }

    [Fact]
    public async Task all_filtered_by_category_reads_the_streams_named_category_dash_anything()
    {
        await using var sut = await CreateAsync();
        var p = await SeedMixedAsync(sut.Store);

        var read = await sut.Store.ReadAllAsync(GlobalPosition.Start, EventFilter.ForCategory("order"), long.MaxValue, default).ToListAsync();

        Assert.Equal([p["order-1.placed"], p["order-2.placed"], p["order-1.shipped"], p["order-1-a.placed"]], read.Select(e => e.Position));
        Assert.All(read, e => Assert.Equal("order", e.Stream.Category));
    }

    [Fact]
    public async Task all_filtered_by_category_honours_the_start_and_max_count()
    {
        await using var sut = await CreateAsync();
        var p = await SeedMixedAsync(sut.Store);

        var read = await sut.Store.ReadAllAsync(p["order-2.placed"], EventFilter.ForCategory("order"), 2, default).ToListAsync();

        Assert.Equal([p["order-2.placed"], p["order-1.shipped"]], read.Select(e => e.Position));
    }

    [Fact]
    public async Task all_filtered_by_stream_reads_only_that_stream()
    {
        await using var sut = await CreateAsync();
        var p = await SeedMixedAsync(sut.Store);

        var read = await sut.Store.ReadAllAsync(GlobalPosition.Start, EventFilter.ForStream("order-1"), long.MaxValue, default).ToListAsync();

        Assert.Equal([p["order-1.placed"], p["order-1.shipped"]], read.Select(e => e.Position));
    }

    [Fact]
    public async Task all_filtered_by_event_types_reads_only_those_types()
    {
        await using var sut = await CreateAsync();
        var p = await SeedMixedAsync(sut.Store);

        var read = await sut.Store.ReadAllAsync(GlobalPosition.Start, EventFilter.ForEventTypes("order.shipped", "invoice.paid"), long.MaxValue, default).ToListAsync();
        Assert.Equal([p["order-1.shipped"], p["invoice-1.paid"]], read.Select(e => e.Position));

        var narrowed = await sut.Store.ReadAllAsync(GlobalPosition.Start, EventFilter.ForCategory("invoice").WithEventTypes("invoice.issued"), long.MaxValue, default).ToListAsync();
        Assert.Equal([p["invoice-1.issued"]], narrowed.Select(e => e.Position));
    }

    [Fact]
    public async Task lifecycle_records_are_hidden_from_all_and_shown_with_system_events()
    {
        await using var sut = await CreateAsync();
        var p = await SeedMixedAsync(sut.Store);
        await sut.Store.SetStreamMetadataAsync("order-2", new StreamMetadata { MaxCount = 10 }, default);
        await sut.Store.DeleteStreamAsync("invoice-1", ExpectedVersion.Any, default);

        var user = await sut.Store.ReadAllAsync().ToListAsync();
        Assert.Equal(p.Values.Order(), user.Select(e => e.Position));
        Assert.DoesNotContain(user, e => e.Stream.IsSystem);

        var everything = await sut.Store.ReadAllAsync(GlobalPosition.Start, EventFilter.AllWithSystemEvents, long.MaxValue, default).ToListAsync();
        var system = everything.Where(e => e.Stream.IsSystem).ToList();
        Assert.Equal(["$$order-2", "$$invoice-1"], system.Select(e => e.Stream.Value));
        Assert.Equal(p.Count + 2, everything.Count);
        AssertStrictlyIncreasing(everything.Select(e => e.Position));
        Assert.True(system[0].Position > p.Values.Max());

        // Category and type filters never show them either.
        Assert.Empty(await sut.Store.ReadAllAsync(GlobalPosition.Start, EventFilter.ForEventTypes("$metadata"), long.MaxValue, default).ToListAsync());
    }

    [Fact]
    public async Task stream_info_describes_missing_and_existing_streams()
    {
        await using var sut = await CreateAsync();
        var missing = await sut.Store.GetStreamInfoAsync("order-1", default);
        Assert.Equal(new StreamName("order-1"), missing.Stream);
        Assert.Equal(StreamState.NotFound, missing.State);
        Assert.Null(missing.LastVersion);
        Assert.Null(missing.CurrentVersion);
        Assert.False(missing.Exists);
        Assert.Equal(new StreamMetadata(), missing.Metadata);
        Assert.Null(await sut.Store.GetStreamVersionAsync("order-1"));
        Assert.False(await sut.Store.StreamExistsAsync("order-1"));

        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(4));
        var existing = await sut.Store.GetStreamInfoAsync("order-1", default);
        Assert.Equal(StreamState.Active, existing.State);
        Assert.Equal(3, existing.LastVersion);
        Assert.Equal(3, existing.CurrentVersion);
        Assert.True(existing.Exists);
        Assert.Equal(3, await sut.Store.GetStreamVersionAsync("order-1"));
        Assert.True(await sut.Store.StreamExistsAsync("order-1"));
    }

    [Fact]
    public async Task the_head_position_is_the_position_of_the_last_committed_event()
    {
        await using var sut = await CreateAsync();
        Assert.Equal(GlobalPosition.Start, await sut.Store.GetHeadPositionAsync(default));

        var first = await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(3));
        Assert.Equal(first.LastPosition, await sut.Store.GetHeadPositionAsync(default));

        var second = await sut.Store.AppendToStreamAsync("order-2", ExpectedVersion.NoStream, TestEvents.Many(1));
        Assert.Equal(second.LastPosition, await sut.Store.GetHeadPositionAsync(default));
        Assert.Equal(second.LastPosition, (await sut.Store.ReadAllAsync().LastAsync()).Position);
    }

    [Fact]
    public async Task the_head_position_counts_lifecycle_records()
    {
        await using var sut = await CreateAsync();
        var appended = await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(1));
        await sut.Store.DeleteStreamAsync("order-1", ExpectedVersion.Any, default);

        var head = await sut.Store.GetHeadPositionAsync(default);
        Assert.True(head > appended.LastPosition);
        Assert.Equal(head, (await sut.Store.ReadAllAsync(GlobalPosition.Start, EventFilter.AllWithSystemEvents, long.MaxValue, default).LastAsync()).Position);
    }

    [Fact]
    public async Task reading_thousands_of_events_across_pages_is_complete_and_in_order()
    {
        const int total = 5_000;
        await using var sut = await CreateAsync();
        var versions = new long?[5];
        for (var batch = 0; batch < total / 100; batch++)
        {
            var bulk = $"bulk-{batch % 5}";
            var expected = versions[batch % 5] is { } v ? ExpectedVersion.Exactly(v) : ExpectedVersion.NoStream;
            versions[batch % 5] = (await sut.Store.AppendToStreamAsync(bulk, expected, TestEvents.Many(100, first: batch * 100))).NextExpectedVersion;
        }

        var all = await sut.Store.ReadAllAsync().ToListAsync();
        Assert.Equal(total, all.Count);
        Assert.Equal(Enumerable.Range(0, total), all.Select(TestEvents.NumberOf));
        AssertStrictlyIncreasing(all.Select(e => e.Position));

        // Paging by hand from the last position seen gives the same sequence.
        var paged = new List<RecordedEvent>();
        var from = GlobalPosition.Start;
        while (true)
        {
            var page = await sut.Store.ReadAllAsync(from, EventFilter.All, 777, default).ToListAsync();
            paged.AddRange(page);
            if (page.Count < 777)
            {
                break;
            }

            from = page[^1].Position.Next;
        }

        Assert.Equal(all.Select(e => e.Position), paged.Select(e => e.Position));

        var stream = await sut.Store.ReadStreamAsync("bulk-3").ToListAsync();
        Assert.Equal(total / 5, stream.Count);
        Assert.Equal(Enumerable.Range(0, total / 5).Select(v => (long)v), stream.Select(e => e.Version));
        Assert.Equal(Enumerable.Range(0, total / 100).Where(b => b % 5 == 3).SelectMany(b => Enumerable.Range(b * 100, 100)), stream.Select(TestEvents.NumberOf));

        var backwards = await sut.Store.ReadStreamBackwardsAsync("bulk-3").ToListAsync();
        Assert.Equal(stream.Select(e => e.Version).Reverse(), backwards.Select(e => e.Version));

        var category = await sut.Store.ReadAllAsync(GlobalPosition.Start, EventFilter.ForStream("bulk-3"), long.MaxValue, default).ToListAsync();
        Assert.Equal(stream.Select(e => e.Position), category.Select(e => e.Position));
    }

    [Fact]
    public async Task events_too_large_to_share_a_page_are_all_read_in_order_forwards_and_backwards()
    {
        // Twenty events of about 1 MB: a backend that caps its pages by bytes reads them a few at a time.
        await using var sut = await CreateAsync();
        var pad = new string('x', 1_000_000);
        for (var batch = 0; batch < 4; batch++)
        {
            var events = Enumerable.Range(batch * 5, 5).Select(n => TestEvents.Json($"{{\"n\":{n},\"pad\":\"{pad}\"}}")).ToArray();
            await sut.Store.AppendToStreamAsync("big-1", ExpectedVersion.Any, events);
        }

        var all = await sut.Store.ReadAllAsync().ToListAsync();
        Assert.Equal(Enumerable.Range(0, 20), all.Select(TestEvents.NumberOf));
        Assert.All(all, e => Assert.True(e.Data.Length > 1_000_000));

        var backwards = await sut.Store.ReadStreamBackwardsAsync("big-1").ToListAsync();
        Assert.Equal(Enumerable.Range(0, 20).Reverse(), backwards.Select(TestEvents.NumberOf));
        Assert.Equal(Enumerable.Range(5, 10), (await sut.Store.ReadAllAsync(all[5].Position, EventFilter.All, 10, default).ToListAsync()).Select(TestEvents.NumberOf));
    }

    [Fact]
    public async Task a_read_can_be_cancelled()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(10));
        using var cancel = new CancellationTokenSource();
        await cancel.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in sut.Store.ReadAllAsync(GlobalPosition.Start, EventFilter.All, long.MaxValue, cancel.Token))
            {
            }
        });
    }
}
