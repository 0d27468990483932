using System.Text;
using Cairn.Conformance.Support;
using Cairn.Envelopes;
using Cairn.EventStore;

namespace Cairn.Conformance;

/// <summary>Bad input is refused with a typed error naming the rule, and never half-writes.</summary>
public abstract class BadInputTests<TFixture>(TFixture fixture) : StoreTests<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    // Cases are named rather than passed as raw strings: control characters and lone surrogates do not belong in
    // test names and result files.
    private static readonly Dictionary<string, string> StreamNameCases = new()
    {
        ["empty"] = "",
        ["over-long"] = new string('s', StreamName.MaxLength + 1),
        ["line-feed"] = "order\n1",
        ["nul"] = "order\u00001",
        ["leading-tab"] = "\torder-1",
        ["trailing-space"] = "order-1 ",
        ["leading-space"] = " order-1",
        ["delete-char"] = "order-\u007f",
        ["lone-surrogate"] = "order-\ud800",
    };

    public static TheoryData<string> InvalidStreamNames => new(StreamNameCases.Keys);

    [Theory]
    [MemberData(nameof(InvalidStreamNames))]
    public void an_invalid_stream_name_cannot_even_be_made(string @case)
    {
        var name = StreamNameCases[@case];
        var ex = Assert.Throws<InvalidStreamNameException>(() => new StreamName(name));
        Assert.Equal(name, ex.StreamName);
        Assert.False(string.IsNullOrEmpty(ex.Reason));
        Assert.False(StreamName.TryCreate(name, out _));
    }

    [Fact]
    public async Task a_stream_name_of_the_maximum_length_is_accepted()
    {
        await using var sut = await CreateAsync();
        var name = new StreamName(new string('s', StreamName.MaxLength));
        await sut.Store.AppendToStreamAsync(name, ExpectedVersion.NoStream, [TestEvents.Numbered(0)]);
        Assert.Single(await sut.Store.ReadStreamAsync(name).ToListAsync());
        Assert.Equal(name, (await sut.Store.ReadAllAsync().SingleAsync()).Stream);
    }

    [Fact]
    public async Task a_missing_stream_name_is_refused_and_nothing_is_written()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [TestEvents.Numbered(0)]);
        var before = await SnapshotAsync(sut.Store, "order-1");

        await Assert.ThrowsAsync<InvalidStreamNameException>(() =>
            sut.Store.AppendAsync(new AppendRequest(default(StreamName), ExpectedVersion.Any, [TestEvents.Numbered(1)]), default));

        await AssertNothingWrittenAsync(sut.Store, before, "order-1");
    }

    [Theory]
    [InlineData("$all")]
    [InlineData("$$order-1")]
    [InlineData("$system-1")]
    public async Task a_stream_name_starting_with_a_dollar_is_reserved_and_nothing_is_written(string name)
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [TestEvents.Numbered(0)]);
        var before = await SnapshotAsync(sut.Store, "order-1", name);

        var ex = await Assert.ThrowsAsync<InvalidStreamNameException>(() =>
            sut.Store.AppendToStreamAsync(name, ExpectedVersion.Any, [TestEvents.Numbered(1)]));

        Assert.Equal(name, ex.StreamName);
        await AssertNothingWrittenAsync(sut.Store, before, "order-1", name);
    }

    [Fact]
    public async Task an_event_over_a_custom_size_limit_is_refused_and_nothing_is_written()
    {
        await using var sut = await CreateAsync(new EventStoreOptions { MaxEventSize = 1024 });
        await sut.Store.AppendToStreamAsync("blob-1", ExpectedVersion.NoStream, [TestEvents.Numbered(0)]);
        var before = await SnapshotAsync(sut.Store, "blob-1");
        var big = new EventData("blob", new byte[1025]) { ContentType = "application/octet-stream" };

        // The large event is second in the batch: the small one before it must not land either.
        var ex = await Assert.ThrowsAsync<EventTooLargeException>(() =>
            sut.Store.AppendToStreamAsync("blob-1", ExpectedVersion.Any, [TestEvents.Numbered(1), big]));

        Assert.Equal(big.Id, ex.EventId);
        Assert.Equal(1025, ex.Size);
        Assert.Equal(1024, ex.Limit);
        await AssertNothingWrittenAsync(sut.Store, before, "blob-1");
    }

    [Theory]
    [InlineData(nameof(EventData.Source), "")]
    [InlineData(nameof(EventData.CorrelationId), "line\nbreak")]
    [InlineData(nameof(EventData.CausationId), "")]
    [InlineData(nameof(EventData.TraceParent), "tab\there")]
    [InlineData(nameof(EventData.TraceParent), "not-a-traceparent")]
    [InlineData(nameof(EventData.TraceParent), "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01")]
    [InlineData(nameof(EventData.TraceParent), "00-00000000000000000000000000000000-b7ad6b7169203331-01")]
    [InlineData(nameof(EventData.TraceParent), "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]
    [InlineData(nameof(EventData.DataSchema), "")]
    [InlineData(nameof(EventData.Source), "order service")]
    [InlineData(nameof(EventData.DataSchema), "/schemas/order.json")]
    [InlineData(nameof(EventData.DataSchema), "order-v1")]
    public async Task an_invalid_envelope_attribute_is_refused_naming_it_and_nothing_is_written(string attribute, string value)
    {
        await using var sut = await CreateAsync();
        var before = await SnapshotAsync(sut.Store, "attr-1");
        var e = attribute switch
        {
            nameof(EventData.Source) => TestEvents.Numbered(1) with { Source = value },
            nameof(EventData.CorrelationId) => TestEvents.Numbered(1) with { CorrelationId = value },
            nameof(EventData.CausationId) => TestEvents.Numbered(1) with { CausationId = value },
            nameof(EventData.TraceParent) => TestEvents.Numbered(1) with { TraceParent = value },
            _ => TestEvents.Numbered(1) with { DataSchema = value },
        };

        var ex = await Assert.ThrowsAsync<InvalidEventException>(() => sut.Store.AppendToStreamAsync("attr-1", ExpectedVersion.Any, [e]));

        Assert.Contains(attribute, ex.Message);
        await AssertNothingWrittenAsync(sut.Store, before, "attr-1");
    }

    [Theory]
    [InlineData("")]
    [InlineData("bad\u0001key")]
    public async Task a_metadata_entry_with_an_invalid_key_is_refused_and_nothing_is_written(string key)
    {
        await using var sut = await CreateAsync();
        var before = await SnapshotAsync(sut.Store, "meta-1");
        var e = TestEvents.Numbered(1) with { Metadata = new Dictionary<string, string> { [key] = "value" } };

        var ex = await Assert.ThrowsAsync<InvalidEventException>(() => sut.Store.AppendToStreamAsync("meta-1", ExpectedVersion.Any, [e]));

        Assert.Contains("metadata", ex.Message);
        await AssertNothingWrittenAsync(sut.Store, before, "meta-1");
    }

    [Fact]
    public async Task text_with_an_unpaired_surrogate_is_refused_in_every_attribute_and_nothing_is_written()
    {
        // No UTF-8 text holds an unpaired surrogate: a backend would refuse it (PostgreSQL) or change it (SQLite).
        await using var sut = await CreateAsync();
        var before = await SnapshotAsync(sut.Store, "attr-1");
        const string Lone = "x\ud800y";
        EventData[] events =
        [
            TestEvents.Numbered(1) with { Source = Lone },
            TestEvents.Numbered(1) with { CorrelationId = Lone },
            TestEvents.Numbered(1) with { CausationId = Lone },
            TestEvents.Numbered(1) with { TraceParent = Lone },
            TestEvents.Numbered(1) with { Type = "order." + Lone },
            TestEvents.Numbered(1) with { Metadata = new Dictionary<string, string> { [Lone] = "value" } },
            TestEvents.Numbered(1) with { Metadata = new Dictionary<string, string> { ["note"] = Lone } },
            TestEvents.Tagged("t", "course:" + Lone),
        ];

        foreach (var e in events)
        {
            await Assert.ThrowsAsync<InvalidEventException>(() => sut.Store.AppendToStreamAsync("attr-1", ExpectedVersion.Any, [e]));
        }

        await AssertNothingWrittenAsync(sut.Store, before, "attr-1");

        // A pair is one character, and control characters stay allowed in a metadata value.
        await sut.Store.AppendToStreamAsync("pair-1", ExpectedVersion.Any, [TestEvents.Numbered(1) with { CorrelationId = "\ud83d\ude00", Metadata = new Dictionary<string, string> { ["note"] = "a\nb" } }]);
        var read = await sut.Store.ReadStreamAsync("pair-1").SingleAsync();
        Assert.Equal("\ud83d\ude00", read.CorrelationId);
        Assert.Equal("a\nb", read.Metadata["note"]);
    }

    [Fact]
    public async Task user_metadata_counts_towards_the_size_limit()
    {
        await using var sut = await CreateAsync(new EventStoreOptions { MaxEventSize = 1024 });
        var before = await SnapshotAsync(sut.Store, "blob-1");
        var e = new EventData("blob", new byte[1000])
        {
            ContentType = "application/octet-stream",
            Metadata = new Dictionary<string, string> { ["note"] = new string('m', 100) },
        };

        var ex = await Assert.ThrowsAsync<EventTooLargeException>(() => sut.Store.AppendToStreamAsync("blob-1", ExpectedVersion.Any, [e]));

        Assert.True(ex.Size > 1100);
        await AssertNothingWrittenAsync(sut.Store, before, "blob-1");
    }

    // Without this an event's tags (each up to 256 characters, any number of them) would have no bound at all.
    [Fact]
    public async Task tags_count_towards_the_size_limit()
    {
        await using var sut = await CreateAsync(new EventStoreOptions { MaxEventSize = 1024 });
        var before = await SnapshotAsync(sut.Store, "blob-1");
        var tags = Enumerable.Range(0, 8).Select(i => $"t{i}:" + new string('é', 100)).ToArray();
        var e = new EventData("blob", new byte[10]) { ContentType = "application/octet-stream", Tags = [.. tags, tags[0]] };

        var ex = await Assert.ThrowsAsync<EventTooLargeException>(() => sut.Store.AppendToStreamAsync("blob-1", ExpectedVersion.Any, [e]));

        // Counted in UTF-8 (two bytes a character here), a repeated tag once.
        Assert.Equal(10 + tags.Sum(t => System.Text.Encoding.UTF8.GetByteCount(t)), ex.Size);
        await AssertNothingWrittenAsync(sut.Store, before, "blob-1");
        await sut.Store.AppendToStreamAsync("blob-1", ExpectedVersion.Any, [new EventData("blob", new byte[10]) { ContentType = "application/octet-stream", Tags = tags[..4] }]);
    }

    [Fact]
    public async Task an_event_over_the_default_limit_of_one_mebibyte_is_refused_and_nothing_is_written()
    {
        await using var sut = await CreateAsync();
        var before = await SnapshotAsync(sut.Store, "blob-1");
        var big = new EventData("blob", new byte[EventStoreOptions.DefaultMaxEventSize + 1]) { ContentType = "application/octet-stream" };

        var ex = await Assert.ThrowsAsync<EventTooLargeException>(() => sut.Store.AppendToStreamAsync("blob-1", ExpectedVersion.Any, [big]));

        Assert.Equal(1024 * 1024, ex.Limit);
        Assert.Equal(1024 * 1024 + 1, ex.Size);
        await AssertNothingWrittenAsync(sut.Store, before, "blob-1");
    }

    [Fact]
    public async Task an_event_of_exactly_one_mebibyte_is_accepted_by_default()
    {
        await using var sut = await CreateAsync();
        var data = new byte[EventStoreOptions.DefaultMaxEventSize];
        data[^1] = 42;
        await sut.Store.AppendToStreamAsync("blob-1", ExpectedVersion.NoStream, [new EventData("blob", data) { ContentType = "application/octet-stream" }]);

        var recorded = Assert.Single(await sut.Store.ReadStreamAsync("blob-1").ToListAsync());
        Assert.Equal(data, recorded.Data.ToArray());
    }

    [Theory]
    [InlineData("application/json", "{")]
    [InlineData("application/json", "{\"a\":1} trailing")]
    [InlineData("application/json", "{} {}")]
    [InlineData("application/json", "")]
    [InlineData("application/json", "   ")]
    [InlineData("application/json", "{'a':1}")]
    [InlineData("application/json", "// a comment {}")]
    [InlineData("application/json", "nul")]
    [InlineData("application/json; charset=utf-8", "[1,2")]
    [InlineData("text/json", "{\"a\":}")]
    [InlineData("application/cloudevents+json", "not json")]
    public async Task invalid_json_with_a_json_content_type_is_refused_and_nothing_is_written(string contentType, string data)
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [TestEvents.Numbered(0)]);
        var before = await SnapshotAsync(sut.Store, "order-1");
        var bad = new EventData("bad", Encoding.UTF8.GetBytes(data)) { ContentType = contentType };

        var ex = await Assert.ThrowsAsync<InvalidEventDataException>(() =>
            sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Any, [TestEvents.Numbered(1), bad]));

        Assert.Equal(bad.Id, ex.EventId);
        await AssertNothingWrittenAsync(sut.Store, before, "order-1");
    }

    [Theory]
    [InlineData("null")]
    [InlineData("42")]
    [InlineData("\"text\"")]
    [InlineData("[]")]
    [InlineData(" {\"a\":[1,{\"b\":null}]} ")]
    public async Task any_single_json_value_is_accepted(string data)
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [TestEvents.Json(data)]);
        Assert.Equal(data, Encoding.UTF8.GetString((await sut.Store.ReadStreamAsync("order-1").SingleAsync()).Data.Span));
    }

    [Fact]
    public async Task duplicate_ids_in_one_batch_are_refused_and_nothing_is_written()
    {
        await using var sut = await CreateAsync();
        var before = await SnapshotAsync(sut.Store, "order-1");
        var e = TestEvents.Numbered(0);

        var ex = await Assert.ThrowsAsync<DuplicateEventIdException>(() =>
            sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Any, [e, TestEvents.Numbered(1), e with { Type = "other" }]));

        Assert.Equal(e.Id, ex.EventId);
        await AssertNothingWrittenAsync(sut.Store, before, "order-1");
    }

    [Fact]
    public async Task duplicate_ids_across_the_streams_of_one_request_are_refused_and_nothing_is_written()
    {
        await using var sut = await CreateAsync();
        var before = await SnapshotAsync(sut.Store, "order-1", "order-2");
        var e = TestEvents.Numbered(0);

        await Assert.ThrowsAsync<DuplicateEventIdException>(() => sut.Store.AppendToStreamsAsync(
        [
            new StreamAppend("order-1", ExpectedVersion.Any, [e]),
            new StreamAppend("order-2", ExpectedVersion.Any, [e]),
        ]));

        await AssertNothingWrittenAsync(sut.Store, before, "order-1", "order-2");
    }

    [Fact]
    public void impossible_expected_versions_cannot_be_made()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => ExpectedVersion.Exactly(-5));
        Assert.Throws<ArgumentOutOfRangeException>(() => ExpectedVersion.Exactly(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ExpectedVersion(-2));
        Assert.Throws<ArgumentOutOfRangeException>(() => ExpectedVersion.FromValue(-3));
        Assert.Throws<ArgumentOutOfRangeException>(() => ExpectedVersion.FromValue(-5));
        Assert.Throws<ArgumentOutOfRangeException>(() => ExpectedVersion.FromValue(long.MinValue));
    }

    [Fact]
    public async Task an_append_to_a_tombstoned_stream_is_refused_and_nothing_is_written()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(2));
        await sut.Store.TombstoneStreamAsync("order-1", ExpectedVersion.Any, default);
        var before = await SnapshotAsync(sut.Store, "order-1");

        foreach (var expected in new[] { ExpectedVersion.Any, ExpectedVersion.NoStream, ExpectedVersion.StreamExists, ExpectedVersion.Exactly(1) })
        {
            var ex = await Assert.ThrowsAsync<StreamDeletedException>(() =>
                sut.Store.AppendToStreamAsync("order-1", expected, [TestEvents.Numbered(2)]));
            Assert.Equal(new StreamName("order-1"), ex.Stream);
        }

        await AssertNothingWrittenAsync(sut.Store, before, "order-1");
    }

    [Fact]
    public async Task an_append_with_a_cancelled_token_is_refused_and_nothing_is_written()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [TestEvents.Numbered(0)]);
        var before = await SnapshotAsync(sut.Store, "order-1", "order-2");
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Exactly(0), [TestEvents.Numbered(1)], cancelled.Token));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => sut.Store.AppendToStreamsAsync(
        [
            new StreamAppend("order-1", ExpectedVersion.Any, [TestEvents.Numbered(2)]),
            new StreamAppend("order-2", ExpectedVersion.Any, [TestEvents.Numbered(3)]),
        ], cancelled.Token));

        await AssertNothingWrittenAsync(sut.Store, before, "order-1", "order-2");
    }

    [Fact]
    public async Task an_append_with_no_events_is_refused_and_nothing_is_written()
    {
        await using var sut = await CreateAsync();
        var before = await SnapshotAsync(sut.Store, "order-1");

        await Assert.ThrowsAsync<ArgumentException>(() => sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Any, []));
        await Assert.ThrowsAsync<ArgumentException>(() => sut.Store.AppendToStreamsAsync([]));
        await Assert.ThrowsAsync<ArgumentException>(() => sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Any, [TestEvents.Numbered(0), null!]));

        await AssertNothingWrittenAsync(sut.Store, before, "order-1");
    }

    [Fact]
    public async Task the_same_stream_twice_in_one_request_is_refused_and_nothing_is_written()
    {
        await using var sut = await CreateAsync();
        var before = await SnapshotAsync(sut.Store, "order-1", "order-2");

        await Assert.ThrowsAsync<ArgumentException>(() => sut.Store.AppendToStreamsAsync(
        [
            new StreamAppend("order-1", ExpectedVersion.Any, [TestEvents.Numbered(0)]),
            new StreamAppend("order-2", ExpectedVersion.Any, [TestEvents.Numbered(1)]),
            new StreamAppend("order-1", ExpectedVersion.Any, [TestEvents.Numbered(2)]),
        ]));

        await AssertNothingWrittenAsync(sut.Store, before, "order-1", "order-2");
    }

    private static readonly Dictionary<string, string?> TypeNameCases = new()
    {
        ["null"] = null,
        ["empty"] = "",
        ["blank"] = " ",
        ["inner-space"] = "order placed",
        ["trailing-tab"] = "order.placed\t",
        ["control-char"] = "order\u0001placed",
        ["over-long"] = new string('t', EventTypeNames.MaxLength + 1),
        ["reserved-metadata"] = "$metadata",
        ["reserved-dollar"] = "$custom",
        ["lone-surrogate"] = "order.\ud800placed",
    };

    public static TheoryData<string> InvalidTypeNames => new(TypeNameCases.Keys);

    [Theory]
    [MemberData(nameof(InvalidTypeNames))]
    public async Task an_invalid_event_type_name_is_refused_and_nothing_is_written(string @case)
    {
        await using var sut = await CreateAsync();
        var before = await SnapshotAsync(sut.Store, "order-1");

        await Assert.ThrowsAsync<InvalidEventException>(() =>
            sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Any, [TestEvents.Numbered(0), TestEvents.Numbered(1) with { Type = TypeNameCases[@case]! }]));

        await AssertNothingWrittenAsync(sut.Store, before, "order-1");
    }

    [Fact]
    public async Task an_event_type_name_of_the_maximum_length_is_accepted()
    {
        await using var sut = await CreateAsync();
        var type = new string('t', EventTypeNames.MaxLength);
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [TestEvents.Json("{}", type)]);
        Assert.Equal(type, (await sut.Store.ReadStreamAsync("order-1").SingleAsync()).Type);
    }

    private static readonly Dictionary<string, string?> TagCases = new()
    {
        ["null"] = null,
        ["empty"] = "",
        ["line-feed"] = "course:\n1",
        ["nul"] = "\u0000",
        ["over-long"] = new string('t', EventTags.MaxLength + 1),
    };

    public static TheoryData<string> InvalidTags => new(TagCases.Keys);

    [Theory]
    [MemberData(nameof(InvalidTags))]
    public async Task an_invalid_tag_is_refused_and_nothing_is_written(string @case)
    {
        await using var sut = await CreateAsync();
        var before = await SnapshotAsync(sut.Store, "order-1");

        await Assert.ThrowsAsync<InvalidEventException>(() =>
            sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Any, [TestEvents.Tagged("t", "ok:1", TagCases[@case]!)]));

        await AssertNothingWrittenAsync(sut.Store, before, "order-1");
    }

    [Fact]
    public async Task a_tag_of_the_maximum_length_is_accepted()
    {
        await using var sut = await CreateAsync();
        var tag = new string('t', EventTags.MaxLength);
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [TestEvents.Tagged("t", tag)]);
        Assert.Equal([tag], (await sut.Store.ReadStreamAsync("order-1").SingleAsync()).Tags);
    }

    [Fact]
    public void an_invalid_tag_is_refused_in_a_query_too()
    {
        Assert.Throws<InvalidEventException>(() => EventQueryItem.WithTags("ok", ""));
        Assert.Throws<ArgumentException>(() => new EventQueryItem());
    }

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    public async Task an_empty_content_type_is_refused_and_nothing_is_written(string contentType)
    {
        await using var sut = await CreateAsync();
        var before = await SnapshotAsync(sut.Store, "order-1");

        await Assert.ThrowsAsync<InvalidEventException>(() =>
            sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Any, [TestEvents.Numbered(0) with { ContentType = contentType }]));

        await AssertNothingWrittenAsync(sut.Store, before, "order-1");
    }

    [Fact]
    public async Task an_event_without_an_id_is_refused_and_nothing_is_written()
    {
        await using var sut = await CreateAsync();
        var before = await SnapshotAsync(sut.Store, "order-1");

        await Assert.ThrowsAsync<InvalidEventException>(() =>
            sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Any, [new EventData(default(MessageId), "t", "{}"u8.ToArray())]));

        await AssertNothingWrittenAsync(sut.Store, before, "order-1");
    }
}
