using System.Text;
using Cairn.Conformance.Support;
using Cairn.Envelopes;
using Cairn.EventStore;

namespace Cairn.Conformance;

/// <summary>Appends: versions, positions, expected versions, idempotent retries and the envelope.</summary>
public abstract class AppendTests<TFixture>(TFixture fixture) : StoreTests<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    [Fact]
    public async Task a_new_store_is_empty()
    {
        await using var sut = await CreateAsync();
        Assert.Equal(GlobalPosition.Start, await sut.Store.GetHeadPositionAsync(default));
        Assert.Empty(await sut.Store.ReadAllAsync(GlobalPosition.Start, EventFilter.AllWithSystemEvents, long.MaxValue, default).ToListAsync());
    }

    [Fact]
    public async Task single_append_writes_version_zero_at_a_position_after_the_start()
    {
        await using var sut = await CreateAsync();
        var result = await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [TestEvents.Numbered(0)]);

        Assert.False(result.WasDuplicate);
        var part = Assert.Single(result.Streams);
        Assert.Equal(new StreamName("order-1"), part.Stream);
        Assert.Equal(0, part.FirstVersion);
        Assert.Equal(0, part.LastVersion);
        Assert.Equal(0, result.NextExpectedVersion);
        Assert.True(result.FirstPosition > GlobalPosition.Start);
        Assert.Equal(result.FirstPosition, result.LastPosition);
        Assert.Equal(result.LastPosition, await sut.Store.GetHeadPositionAsync(default));

        var recorded = Assert.Single(await sut.Store.ReadStreamAsync("order-1").ToListAsync());
        Assert.Equal(0, recorded.Version);
        Assert.Equal(result.FirstPosition, recorded.Position);
    }

    [Fact]
    public async Task batch_append_writes_gap_free_versions_and_strictly_increasing_positions()
    {
        await using var sut = await CreateAsync();
        var first = await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(5));
        var second = await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Exactly(4), TestEvents.Many(3, first: 5));

        Assert.Equal((0, 4), (first.Streams[0].FirstVersion, first.Streams[0].LastVersion));
        Assert.Equal((5, 7), (second.Streams[0].FirstVersion, second.Streams[0].LastVersion));
        Assert.True(second.FirstPosition > first.LastPosition);

        var events = await sut.Store.ReadStreamAsync("order-1").ToListAsync();
        Assert.Equal(Enumerable.Range(0, 8).Select(v => (long)v), events.Select(e => e.Version));
        Assert.Equal(Enumerable.Range(0, 8), events.Select(TestEvents.NumberOf));
        AssertStrictlyIncreasing(events.Select(e => e.Position));
        Assert.Equal(first.FirstPosition, events[0].Position);
        Assert.Equal(first.LastPosition, events[4].Position);
        Assert.Equal(second.FirstPosition, events[5].Position);
        Assert.Equal(second.LastPosition, events[7].Position);
    }

    [Fact]
    public async Task appends_to_different_streams_keep_their_own_versions_and_share_one_increasing_log()
    {
        await using var sut = await CreateAsync();
        var positions = new List<GlobalPosition>();
        for (var i = 0; i < 6; i++)
        {
            var stream = $"order-{i % 2}";
            var result = await sut.Store.AppendToStreamAsync(stream, ExpectedVersion.Any, [TestEvents.Numbered(i)]);
            Assert.Equal(i / 2, result.Streams[0].FirstVersion);
            positions.Add(result.FirstPosition);
        }

        AssertStrictlyIncreasing(positions);
        var all = await sut.Store.ReadAllAsync().ToListAsync();
        Assert.Equal(positions, all.Select(e => e.Position));
        Assert.Equal(Enumerable.Range(0, 6), all.Select(TestEvents.NumberOf));
    }

    [Fact]
    public async Task append_with_any_lands_whatever_the_stream_state()
    {
        await using var sut = await CreateAsync();
        var first = await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Any, [TestEvents.Numbered(0)]);
        var second = await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Any, [TestEvents.Numbered(1)]);
        Assert.Equal(0, first.NextExpectedVersion);
        Assert.Equal(1, second.NextExpectedVersion);
    }

    [Fact]
    public async Task append_with_no_stream_lands_on_a_new_stream()
    {
        await using var sut = await CreateAsync();
        var result = await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(2));
        Assert.Equal(1, result.NextExpectedVersion);
    }

    [Fact]
    public async Task append_with_no_stream_to_an_existing_stream_fails_and_writes_nothing()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(2));
        var before = await SnapshotAsync(sut.Store, "order-1");

        var ex = await Assert.ThrowsAsync<WrongExpectedVersionException>(() =>
            sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [TestEvents.Numbered(9)]));

        Assert.Equal(new StreamName("order-1"), ex.Stream);
        Assert.Equal(ExpectedVersion.NoStream, ex.Expected);
        Assert.Equal(1, ex.Actual);
        await AssertNothingWrittenAsync(sut.Store, before, "order-1");
    }

    [Fact]
    public async Task append_with_stream_exists_lands_on_an_existing_stream()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [TestEvents.Numbered(0)]);
        var result = await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.StreamExists, [TestEvents.Numbered(1)]);
        Assert.Equal(1, result.NextExpectedVersion);
    }

    [Fact]
    public async Task append_with_stream_exists_to_a_missing_stream_fails_and_writes_nothing()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("other-1", ExpectedVersion.NoStream, [TestEvents.Numbered(0)]);
        var before = await SnapshotAsync(sut.Store, "order-1");

        var ex = await Assert.ThrowsAsync<WrongExpectedVersionException>(() =>
            sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.StreamExists, [TestEvents.Numbered(1)]));

        Assert.Equal(new StreamName("order-1"), ex.Stream);
        Assert.Equal(ExpectedVersion.StreamExists, ex.Expected);
        Assert.Null(ex.Actual);
        await AssertNothingWrittenAsync(sut.Store, before, "order-1");
    }

    [Fact]
    public async Task append_with_the_exact_last_version_lands()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(3));
        var result = await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Exactly(2), [TestEvents.Numbered(3)]);
        Assert.Equal(3, result.Streams[0].FirstVersion);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(100)]
    public async Task append_with_wrong_expected_version_fails_and_writes_nothing(long expected)
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(3));
        var before = await SnapshotAsync(sut.Store, "order-1");

        var ex = await Assert.ThrowsAsync<WrongExpectedVersionException>(() =>
            sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Exactly(expected), TestEvents.Many(2)));

        Assert.Equal(new StreamName("order-1"), ex.Stream);
        Assert.Equal(ExpectedVersion.Exactly(expected), ex.Expected);
        Assert.Equal(2, ex.Actual);
        await AssertNothingWrittenAsync(sut.Store, before, "order-1");
    }

    [Fact]
    public async Task append_with_an_exact_version_to_a_missing_stream_fails_with_no_actual_version()
    {
        await using var sut = await CreateAsync();
        var before = await SnapshotAsync(sut.Store, "order-1");

        var ex = await Assert.ThrowsAsync<WrongExpectedVersionException>(() =>
            sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Exactly(0), [TestEvents.Numbered(0)]));

        Assert.Null(ex.Actual);
        await AssertNothingWrittenAsync(sut.Store, before, "order-1");
    }

    [Fact]
    public async Task retrying_a_successful_append_returns_the_first_result_and_writes_nothing()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [TestEvents.Numbered(0)]);
        var events = TestEvents.Many(3, first: 1);
        var first = await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Exactly(0), events);
        await sut.Store.AppendToStreamAsync("order-2", ExpectedVersion.NoStream, [TestEvents.Numbered(9)]);
        var before = await SnapshotAsync(sut.Store, "order-1", "order-2");

        // The same ids again, as a client would after a lost reply: the stream has moved on, yet it is a retry.
        var retry = await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Exactly(0), events);

        Assert.True(retry.WasDuplicate);
        Assert.False(first.WasDuplicate);
        Assert.Equal(first.FirstPosition, retry.FirstPosition);
        Assert.Equal(first.LastPosition, retry.LastPosition);
        Assert.Equal(first.Streams, retry.Streams);
        await AssertNothingWrittenAsync(sut.Store, before, "order-1", "order-2");
        Assert.Equal(4, (await sut.Store.ReadStreamAsync("order-1").ToListAsync()).Count);
    }

    [Fact]
    public async Task retrying_a_successful_append_with_any_expected_version_is_also_a_duplicate()
    {
        await using var sut = await CreateAsync();
        var events = TestEvents.Many(2);
        var first = await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Any, events);
        var retry = await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Any, events);

        Assert.True(retry.WasDuplicate);
        Assert.Equal(first.Streams, retry.Streams);
        Assert.Equal(2, (await sut.Store.ReadStreamAsync("order-1").ToListAsync()).Count);
    }

    [Fact]
    public async Task an_append_that_partly_overlaps_stored_ids_fails_with_duplicate_event_id_and_writes_nothing()
    {
        await using var sut = await CreateAsync();
        var stored = TestEvents.Many(2);
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, stored);
        var before = await SnapshotAsync(sut.Store, "order-1");

        var overlapping = new[] { stored[1], TestEvents.Numbered(2) };
        var ex = await Assert.ThrowsAsync<DuplicateEventIdException>(() =>
            sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Any, overlapping));

        Assert.Equal(stored[1].Id, ex.EventId);
        await AssertNothingWrittenAsync(sut.Store, before, "order-1");
    }

    [Fact]
    public async Task an_id_already_stored_in_another_stream_fails_with_duplicate_event_id_and_writes_nothing()
    {
        await using var sut = await CreateAsync();
        var stored = TestEvents.Numbered(0);
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [stored]);
        var before = await SnapshotAsync(sut.Store, "order-1", "order-2");

        var ex = await Assert.ThrowsAsync<DuplicateEventIdException>(() =>
            sut.Store.AppendToStreamAsync("order-2", ExpectedVersion.Any, [stored]));

        Assert.Equal(stored.Id, ex.EventId);
        await AssertNothingWrittenAsync(sut.Store, before, "order-1", "order-2");
    }

    [Fact]
    public async Task stored_ids_in_another_order_are_not_a_retry_and_fail_with_duplicate_event_id()
    {
        await using var sut = await CreateAsync();
        var stored = TestEvents.Many(2);
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, stored);
        var before = await SnapshotAsync(sut.Store, "order-1");

        await Assert.ThrowsAsync<DuplicateEventIdException>(() =>
            sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Any, [stored[1], stored[0]]));

        await AssertNothingWrittenAsync(sut.Store, before, "order-1");
    }

    [Fact]
    public async Task every_cloud_events_attribute_set_by_the_writer_round_trips()
    {
        await using var sut = await CreateAsync();
        var id = MessageId.New();
        var data = Encoding.UTF8.GetBytes("{\"amount\":12.5,\"note\":\"paid\"}");
        var metadata = new Dictionary<string, string> { ["tenant"] = "acme", ["größe"] = "groß ✓", ["empty"] = "" };
        var written = new EventData(id, "order.paid", data)
        {
            ContentType = "application/vnd.cairn.order+json; charset=utf-8",
            DataSchema = "https://schemas.example.com/order.paid/v2.json",
            Source = "urn:test:checkout",
            CorrelationId = "corr-42",
            CausationId = "cmd-7",
            TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            Tags = ["order:1", "customer:c-9"],
            Metadata = metadata,
        };

        var result = await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [written]);
        var recorded = Assert.Single(await sut.Store.ReadStreamAsync("order-1").ToListAsync());

        Assert.Equal(id, recorded.Id);
        Assert.Equal(new StreamName("order-1"), recorded.Stream);
        Assert.Equal("order-1", recorded.Subject);
        Assert.Equal(0, recorded.Version);
        Assert.Equal(result.FirstPosition, recorded.Position);
        Assert.Equal("order.paid", recorded.Type);
        Assert.Equal("urn:test:checkout", recorded.Source);
        Assert.Equal("application/vnd.cairn.order+json; charset=utf-8", recorded.ContentType);
        Assert.Equal("https://schemas.example.com/order.paid/v2.json", recorded.DataSchema);
        Assert.Equal("corr-42", recorded.CorrelationId);
        Assert.Equal("cmd-7", recorded.CausationId);
        Assert.Equal("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", recorded.TraceParent);
        Assert.Equal(["order:1", "customer:c-9"], recorded.Tags);
        Assert.Equal(metadata.OrderBy(p => p.Key, StringComparer.Ordinal), recorded.Metadata.OrderBy(p => p.Key, StringComparer.Ordinal));
        Assert.Equal(data, recorded.Data.ToArray());
    }

    [Fact]
    public async Task the_same_envelope_comes_back_from_stream_reads_all_reads_and_query_reads()
    {
        await using var sut = await CreateAsync();
        var written = TestEvents.Tagged("order.placed", "order:1") with
        {
            DataSchema = "urn:schema:placed",
            CorrelationId = "c",
            CausationId = "k",
            Metadata = new Dictionary<string, string> { ["a"] = "b" },
        };
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [written]);

        var fromStream = Assert.Single(await sut.Store.ReadStreamAsync("order-1").ToListAsync());
        var fromAll = Assert.Single(await sut.Store.ReadAllAsync().ToListAsync());
        var fromQuery = Assert.Single(await sut.Store.ReadByQueryAsync(new EventQuery(EventQueryItem.WithTags("order:1")), GlobalPosition.Start, long.MaxValue, default).ToListAsync());
        foreach (var e in new[] { fromAll, fromQuery })
        {
            Assert.Equal(fromStream.Id, e.Id);
            Assert.Equal(fromStream.Stream, e.Stream);
            Assert.Equal(fromStream.Version, e.Version);
            Assert.Equal(fromStream.Position, e.Position);
            Assert.Equal(fromStream.Type, e.Type);
            Assert.Equal(fromStream.Source, e.Source);
            Assert.Equal(fromStream.Time, e.Time);
            Assert.Equal(fromStream.ContentType, e.ContentType);
            Assert.Equal(fromStream.DataSchema, e.DataSchema);
            Assert.Equal(fromStream.CorrelationId, e.CorrelationId);
            Assert.Equal(fromStream.CausationId, e.CausationId);
            Assert.Equal(fromStream.TraceParent, e.TraceParent);
            Assert.Equal(fromStream.Tags, e.Tags);
            Assert.Equal(fromStream.Metadata, e.Metadata);
            Assert.Equal(fromStream.Data.ToArray(), e.Data.ToArray());
        }
    }

    [Fact]
    public async Task an_event_without_envelope_attributes_gets_the_defaults()
    {
        await using var sut = await CreateAsync();
        var written = TestEvents.Numbered(0);
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [written]);
        var recorded = Assert.Single(await sut.Store.ReadStreamAsync("order-1").ToListAsync());

        Assert.Equal(new EventStoreOptions().Source, recorded.Source);
        Assert.Equal(EventData.JsonContentType, recorded.ContentType);
        Assert.Null(recorded.DataSchema);
        Assert.Equal(written.Id.ToString(), recorded.CorrelationId);
        Assert.Null(recorded.CausationId);
        Assert.Null(recorded.TraceParent);
        Assert.Empty(recorded.Tags);
        Assert.Empty(recorded.Metadata);
    }

    [Fact]
    public async Task the_source_defaults_to_the_store_options_and_the_event_can_override_it()
    {
        await using var sut = await CreateAsync(new EventStoreOptions { Source = "urn:test:billing" });
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream,
        [
            TestEvents.Numbered(0),
            TestEvents.Numbered(1) with { Source = "https://example.com/importer" },
        ]);

        var events = await sut.Store.ReadStreamAsync("order-1").ToListAsync();
        Assert.Equal("urn:test:billing", events[0].Source);
        Assert.Equal("https://example.com/importer", events[1].Source);
    }

    [Fact]
    public async Task the_time_is_the_commit_time()
    {
        await using var sut = await CreateAsync();
        var before = DateTimeOffset.UtcNow;
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [TestEvents.Numbered(0)]);
        var after = DateTimeOffset.UtcNow;
        var recorded = Assert.Single(await sut.Store.ReadStreamAsync("order-1").ToListAsync());

        // A backend may keep whole milliseconds only.
        Assert.InRange(recorded.Time, before.AddMilliseconds(-1), after.AddMilliseconds(1));
        Assert.Equal(TimeSpan.Zero, recorded.Time.Offset);
    }

    [Fact]
    public async Task the_time_comes_from_the_store_clock()
    {
        var clock = new ManualTimeProvider(new DateTimeOffset(2024, 2, 29, 23, 59, 58, 123, TimeSpan.Zero));
        await using var sut = await CreateAsync(new EventStoreOptions { TimeProvider = clock });
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [TestEvents.Numbered(0)]);
        clock.Advance(TimeSpan.FromHours(25));
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Exactly(0), [TestEvents.Numbered(1)]);

        var events = await sut.Store.ReadStreamAsync("order-1").ToListAsync();
        Assert.Equal(new DateTimeOffset(2024, 2, 29, 23, 59, 58, 123, TimeSpan.Zero), events[0].Time);
        Assert.Equal(new DateTimeOffset(2024, 3, 2, 0, 59, 58, 123, TimeSpan.Zero), events[1].Time);
    }

    [Fact]
    public async Task correlation_and_causation_default_from_the_message_context()
    {
        await using var sut = await CreateAsync();
        using (MessageContext.Begin("corr-1", "cause-1"))
        {
            await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream,
            [
                TestEvents.Numbered(0),
                TestEvents.Numbered(1) with { CorrelationId = "own-corr", CausationId = "own-cause" },
            ]);

            // A nested context without a correlation id keeps the outer one and names its own cause.
            using (MessageContext.Begin(causationId: "cause-2"))
            {
                await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Exactly(1), [TestEvents.Numbered(2)]);
            }
        }

        var events = await sut.Store.ReadStreamAsync("order-1").ToListAsync();
        Assert.Equal(("corr-1", "cause-1"), (events[0].CorrelationId, events[0].CausationId));
        Assert.Equal(("own-corr", "own-cause"), (events[1].CorrelationId, events[1].CausationId));
        Assert.Equal(("corr-1", "cause-2"), (events[2].CorrelationId, events[2].CausationId));
    }

    [Fact]
    public async Task without_a_message_context_the_correlation_id_is_the_event_id()
    {
        await using var sut = await CreateAsync();
        var events = TestEvents.Many(3);
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, events);

        var recorded = await sut.Store.ReadStreamAsync("order-1").ToListAsync();
        Assert.Equal(events.Select(e => e.Id.ToString()), recorded.Select(e => e.CorrelationId));
        Assert.All(recorded, e => Assert.Null(e.CausationId));
    }

    [Fact]
    public async Task the_trace_parent_comes_from_the_current_activity()
    {
        await using var sut = await CreateAsync();
        string expected;
        using (var activity = TestTracing.StartActivity("append"))
        {
            expected = activity.Id!;
            await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream,
            [
                TestEvents.Numbered(0),
                TestEvents.Numbered(1) with { TraceParent = "00-11111111111111111111111111111111-2222222222222222-01" },
            ]);
        }

        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Exactly(1), [TestEvents.Numbered(2)]);

        var events = await sut.Store.ReadStreamAsync("order-1").ToListAsync();
        Assert.StartsWith("00-", expected, StringComparison.Ordinal);
        Assert.Equal(expected, events[0].TraceParent);
        Assert.Equal("00-11111111111111111111111111111111-2222222222222222-01", events[1].TraceParent);
        Assert.Null(events[2].TraceParent);
    }

    [Fact]
    public async Task data_given_as_part_of_a_larger_buffer_is_stored_as_that_part_alone()
    {
        await using var sut = await CreateAsync();
        var buffer = Encoding.UTF8.GetBytes("xx{\"n\":1}yy{\"n\":2}zz");
        var whole = Encoding.UTF8.GetBytes("{\"n\":3}");
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream,
        [
            new EventData("counted", buffer.AsMemory(2, 7)),
            new EventData("counted", buffer.AsMemory(11, 7)),
            new EventData("counted", whole),
        ]);

        var recorded = await sut.Store.ReadStreamAsync("order-1").ToListAsync();
        Assert.Equal(["{\"n\":1}", "{\"n\":2}", "{\"n\":3}"], recorded.Select(e => Encoding.UTF8.GetString(e.Data.Span)));
    }

    [Fact]
    public async Task non_ascii_json_round_trips_byte_for_byte()
    {
        await using var sut = await CreateAsync();
        var data = Encoding.UTF8.GetBytes("{\"name\":\"Zoë Ångström – 東京 🚀\",\"escaped\":\"\\u00e9\\n\",\"n\":1e3}");
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [new EventData("named", data)]);

        var recorded = Assert.Single(await sut.Store.ReadStreamAsync("order-1").ToListAsync());
        Assert.Equal(data, recorded.Data.ToArray());
    }

    [Fact]
    public async Task json_keeps_its_exact_bytes_including_white_space_and_key_order()
    {
        await using var sut = await CreateAsync();
        var data = Encoding.UTF8.GetBytes("  {\n\t\"b\" : 1 ,\"a\":[ 1,2 ], \"b\":2}\r\n");
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [new EventData("spaced", data)]);

        var recorded = Assert.Single(await sut.Store.ReadStreamAsync("order-1").ToListAsync());
        Assert.Equal(data, recorded.Data.ToArray());
    }

    [Fact]
    public async Task arbitrary_bytes_with_a_binary_content_type_round_trip()
    {
        await using var sut = await CreateAsync();
        var data = Enumerable.Range(0, 512).Select(i => (byte)(i * 7 % 256)).ToArray();
        await sut.Store.AppendToStreamAsync("blob-1", ExpectedVersion.NoStream,
        [
            new EventData("blob.stored", data) { ContentType = "application/octet-stream" },
            new EventData("blob.stored", new byte[] { 0, 0, 0 }) { ContentType = "application/octet-stream" },
            new EventData("text.stored", Encoding.UTF8.GetBytes("not json at all, { but fine")) { ContentType = "text/plain; charset=utf-8" },
            new EventData("blob.emptied", ReadOnlyMemory<byte>.Empty) { ContentType = "application/octet-stream" },
        ]);

        var events = await sut.Store.ReadStreamAsync("blob-1").ToListAsync();
        Assert.Equal(data, events[0].Data.ToArray());
        Assert.Equal(new byte[] { 0, 0, 0 }, events[1].Data.ToArray());
        Assert.Equal("not json at all, { but fine", Encoding.UTF8.GetString(events[2].Data.Span));
        Assert.Equal("text/plain; charset=utf-8", events[2].ContentType);
        Assert.Equal(0, events[3].Data.Length);
        Assert.Equal("application/octet-stream", events[3].ContentType);
    }

    [Fact]
    public async Task changing_the_callers_buffer_after_append_does_not_change_the_stored_event()
    {
        await using var sut = await CreateAsync();
        var buffer = Encoding.UTF8.GetBytes("{\"n\":1}");
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [new EventData("t", buffer)]);
        buffer[5] = (byte)'9';

        var recorded = Assert.Single(await sut.Store.ReadStreamAsync("order-1").ToListAsync());
        Assert.Equal("{\"n\":1}", Encoding.UTF8.GetString(recorded.Data.Span));
    }

    [Fact]
    public async Task an_event_of_exactly_the_size_limit_is_accepted()
    {
        await using var sut = await CreateAsync(new EventStoreOptions { MaxEventSize = 1024 });
        var data = new byte[1024];
        await sut.Store.AppendToStreamAsync("blob-1", ExpectedVersion.NoStream, [new EventData("blob", data) { ContentType = "application/octet-stream" }]);

        var recorded = Assert.Single(await sut.Store.ReadStreamAsync("blob-1").ToListAsync());
        Assert.Equal(1024, recorded.Data.Length);
    }

    [Fact]
    public async Task what_the_caller_changes_after_the_call_never_changes_the_stored_event()
    {
        await using var sut = await CreateAsync();
        var data = Encoding.UTF8.GetBytes("{\"n\":1}");
        var tags = new List<string> { "course:c1" };
        var metadata = new Dictionary<string, string> { ["by"] = "clerk" };
        var appending = sut.Store.AppendToStreamAsync("copy-1", ExpectedVersion.NoStream, [new EventData("thing.happened", data) { Tags = tags, Metadata = metadata }]);
        data[0] = (byte)'X';
        tags[0] = "course:hacked";
        metadata["by"] = "hacker";
        await appending;

        var stored = (await sut.Store.ReadStreamAsync("copy-1").ToListAsync()).Single();
        Assert.Equal("{\"n\":1}", Encoding.UTF8.GetString(stored.Data.Span));
        Assert.Equal(["course:c1"], stored.Tags);
        Assert.Equal("clerk", stored.Metadata["by"]);
    }

    [Fact]
    public async Task a_tag_repeated_on_one_event_is_stored_once()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("tags-1", ExpectedVersion.NoStream, [TestEvents.Tagged("thing.happened", "a", "b", "a")]);

        var stored = (await sut.Store.ReadStreamAsync("tags-1").ToListAsync()).Single();
        Assert.Equal(["a", "b"], stored.Tags);
        Assert.Single(await sut.Store.ReadByQueryAsync(new EventQuery(EventQueryItem.WithTags("a")), GlobalPosition.Start, long.MaxValue, default).ToListAsync());
    }

    [Fact]
    public async Task an_id_reused_by_an_append_that_is_not_a_retry_is_refused_after_the_expectations_and_writes_nothing()
    {
        await using var sut = await CreateAsync();
        var reused = TestEvents.Numbered(2);
        await sut.Store.AppendToStreamAsync("ids-1", ExpectedVersion.NoStream, [TestEvents.Numbered(1), reused]);

        // The first id is new, so this is no retry: a wrong expectation is reported first, as on every backend.
        await Assert.ThrowsAsync<WrongExpectedVersionException>(() => sut.Store.AppendToStreamAsync("ids-1", ExpectedVersion.Exactly(7), [TestEvents.Numbered(3), reused]));
        var error = await Assert.ThrowsAsync<DuplicateEventIdException>(() => sut.Store.AppendToStreamAsync("ids-1", ExpectedVersion.Exactly(1), [TestEvents.Numbered(3), reused]));
        Assert.Equal(reused.Id, error.EventId);
        Assert.Equal(2, (await sut.Store.ReadStreamAsync("ids-1").ToListAsync()).Count);
        Assert.Equal(2, (await sut.Store.GetHeadPositionAsync(default)).Value);
    }
}
