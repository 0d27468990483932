using System.Text.Json;
using Cairn.Conformance.Support;
using Cairn.EventStore;

namespace Cairn.Conformance;

/// <summary>Stream metadata, soft deletion and tombstones, each recorded in the stream's <c>$$</c> stream.</summary>
public abstract class LifecycleTests<TFixture>(TFixture fixture) : StoreTests<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    private static async Task<List<long>> VersionsAsync(IEventStore store, StreamName stream) =>
        await store.ReadStreamAsync(stream).Select(e => e.Version).ToListAsync();

    private static async Task<List<RecordedEvent>> LifecycleRecordsAsync(IEventStore store, StreamName stream) =>
        await store.ReadAllAsync(GlobalPosition.Start, EventFilter.ForStream(new StreamName("$$" + stream.Value)), long.MaxValue, default).ToListAsync();

    private static string StateIn(RecordedEvent record)
    {
        using var doc = JsonDocument.Parse(record.Data);
        return doc.RootElement.GetProperty("state").GetString()!;
    }

    [Fact]
    public async Task a_stream_with_a_name_of_the_longest_length_has_its_whole_lifecycle()
    {
        // Its metadata stream, $$ and the name, is two characters longer than any name a caller may give.
        await using var sut = await CreateAsync();
        var stream = new StreamName(new string('s', StreamName.MaxLength));
        await sut.Store.AppendToStreamAsync(stream, ExpectedVersion.NoStream, TestEvents.Many(3));

        await sut.Store.SetStreamMetadataAsync(stream, new StreamMetadata { MaxCount = 2 }, default);
        Assert.Equal([1, 2], await VersionsAsync(sut.Store, stream));
        await sut.Store.DeleteStreamAsync(stream, ExpectedVersion.Any, default);
        Assert.Equal(StreamState.SoftDeleted, (await sut.Store.GetStreamInfoAsync(stream, default)).State);
        await sut.Store.TombstoneStreamAsync(stream, ExpectedVersion.Any, default);
        Assert.Equal(StreamState.Tombstoned, (await sut.Store.GetStreamInfoAsync(stream, default)).State);
        Assert.Equal(3, (await LifecycleRecordsAsync(sut.Store, stream)).Count);
        Assert.Throws<InvalidStreamNameException>(() => new StreamName(new string('s', StreamName.MaxLength + 1)));
        Assert.Throws<InvalidStreamNameException>(() => new StreamName("$$" + new string('s', StreamName.MaxLength + 1)));
    }

    [Fact]
    public async Task max_count_keeps_only_the_newest_events_visible_in_stream_reads()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(5));

        await sut.Store.SetStreamMetadataAsync("order-1", new StreamMetadata { MaxCount = 3 }, default);
        Assert.Equal([2, 3, 4], await VersionsAsync(sut.Store, "order-1"));
        Assert.Equal([4, 3, 2], await sut.Store.ReadStreamBackwardsAsync("order-1").Select(e => e.Version).ToListAsync());

        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Exactly(4), TestEvents.Many(2, first: 5));
        Assert.Equal([4, 5, 6], await VersionsAsync(sut.Store, "order-1"));

        var info = await sut.Store.GetStreamInfoAsync("order-1", default);
        Assert.Equal(3, info.Metadata.MaxCount);
        Assert.Equal(6, info.LastVersion);
        Assert.Equal(StreamState.Active, info.State);

        // The log is the truth: $all keeps every event.
        Assert.Equal(7, await sut.Store.ReadAllAsync().CountAsync());
    }

    [Fact]
    public async Task truncate_before_hides_the_versions_below_it()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(5));

        await sut.Store.SetStreamMetadataAsync("order-1", new StreamMetadata { TruncateBefore = 2 }, default);

        Assert.Equal([2, 3, 4], await VersionsAsync(sut.Store, "order-1"));
        Assert.Equal([3, 4], await sut.Store.ReadStreamAsync("order-1", ReadDirection.Forwards, 3, long.MaxValue, default).Select(e => e.Version).ToListAsync());
        Assert.Equal([2], await sut.Store.ReadStreamAsync("order-1", ReadDirection.Forwards, 0, 1, default).Select(e => e.Version).ToListAsync());
        Assert.Equal(4, await sut.Store.GetStreamVersionAsync("order-1"));
        Assert.Equal(5, await sut.Store.ReadAllAsync().CountAsync());
    }

    [Fact]
    public async Task truncate_before_and_max_count_together_hide_whichever_is_more()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(10));

        await sut.Store.SetStreamMetadataAsync("order-1", new StreamMetadata { TruncateBefore = 3, MaxCount = 5 }, default);
        Assert.Equal([5, 6, 7, 8, 9], await VersionsAsync(sut.Store, "order-1"));

        await sut.Store.SetStreamMetadataAsync("order-1", new StreamMetadata { TruncateBefore = 8, MaxCount = 5 }, default);
        Assert.Equal([8, 9], await VersionsAsync(sut.Store, "order-1"));
    }

    [Fact]
    public async Task max_age_hides_events_older_than_the_age_by_the_store_clock()
    {
        var clock = new ManualTimeProvider();
        await using var sut = await CreateAsync(new EventStoreOptions { TimeProvider = clock });
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(2));
        clock.Advance(TimeSpan.FromMinutes(10));
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Exactly(1), TestEvents.Many(1, first: 2));

        await sut.Store.SetStreamMetadataAsync("order-1", new StreamMetadata { MaxAge = TimeSpan.FromMinutes(5) }, default);
        Assert.Equal([2], await VersionsAsync(sut.Store, "order-1"));

        clock.Advance(TimeSpan.FromMinutes(6));
        Assert.Empty(await VersionsAsync(sut.Store, "order-1"));

        // Hidden by age is not deleted: the stream still exists at its last version and accepts appends.
        var info = await sut.Store.GetStreamInfoAsync("order-1", default);
        Assert.Equal(StreamState.Active, info.State);
        Assert.Equal(2, info.CurrentVersion);
        Assert.Equal(TimeSpan.FromMinutes(5), info.Metadata.MaxAge);
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Exactly(2), TestEvents.Many(1, first: 3));
        Assert.Equal([3], await VersionsAsync(sut.Store, "order-1"));
        Assert.Equal(4, await sut.Store.ReadAllAsync().CountAsync());
    }

    [Fact]
    public async Task an_event_exactly_max_age_old_is_still_visible()
    {
        var clock = new ManualTimeProvider();
        await using var sut = await CreateAsync(new EventStoreOptions { TimeProvider = clock });
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(1));
        await sut.Store.SetStreamMetadataAsync("order-1", new StreamMetadata { MaxAge = TimeSpan.FromMinutes(5) }, default);

        clock.Advance(TimeSpan.FromMinutes(5));
        Assert.Equal([0], await VersionsAsync(sut.Store, "order-1"));

        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Empty(await VersionsAsync(sut.Store, "order-1"));
    }

    [Fact]
    public async Task a_max_age_reaching_back_past_the_earliest_time_hides_nothing()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(2));

        // "Forever", as TimeSpan.MaxValue, or any age longer than the calendar goes back.
        await sut.Store.SetStreamMetadataAsync("order-1", new StreamMetadata { MaxAge = TimeSpan.MaxValue }, default);
        Assert.Equal([0, 1], await VersionsAsync(sut.Store, "order-1"));
        Assert.Equal(TimeSpan.MaxValue, (await sut.Store.GetStreamInfoAsync("order-1", default)).Metadata.MaxAge);

        await sut.Store.SetStreamMetadataAsync("order-1", new StreamMetadata { MaxAge = TimeSpan.FromDays(365 * 3000) }, default);
        Assert.Equal([0, 1], await VersionsAsync(sut.Store, "order-1"));
    }

    [Fact]
    public async Task a_stream_read_shows_the_stream_as_it_was_when_the_read_began_through_a_delete_and_appends_meanwhile()
    {
        await using var sut = await CreateAsync();
        const int Events = 3000;
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(Events));
        await sut.Store.SetStreamMetadataAsync("order-1", new StreamMetadata { MaxCount = Events }, default);

        // A read long enough to take several pages; between them, more events, then a delete and a new life.
        var versions = new List<long>();
        await foreach (var e in sut.Store.ReadStreamAsync("order-1"))
        {
            if (versions.Count == 0)
            {
                await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Exactly(Events - 1), TestEvents.Many(5, first: Events));
                await sut.Store.DeleteStreamAsync("order-1", ExpectedVersion.Exactly(Events + 4), default);
                await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(1, first: Events + 5));
            }

            versions.Add(e.Version);
        }

        // Neither more than MaxCount events, nor the events of the life that began after the read did.
        Assert.Equal(Enumerable.Range(0, Events).Select(v => (long)v), versions);
        Assert.Equal([(long)Events + 5], await VersionsAsync(sut.Store, "order-1"));
    }

    [Fact]
    public async Task a_soft_delete_keeps_a_truncation_set_past_the_last_version()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(2));
        await sut.Store.SetStreamMetadataAsync("order-1", new StreamMetadata { TruncateBefore = 5 }, default);

        await sut.Store.DeleteStreamAsync("order-1", ExpectedVersion.Exactly(1), default);
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(4, first: 2));

        // Truncation only moves forward: versions 2 to 4 of the new life stay hidden, as they were before the delete.
        Assert.Equal(5, (await sut.Store.GetStreamInfoAsync("order-1", default)).Metadata.TruncateBefore);
        Assert.Equal([5L], await VersionsAsync(sut.Store, "order-1"));
    }

    [Fact]
    public async Task metadata_can_be_replaced_and_cleared()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(5));

        await sut.Store.SetStreamMetadataAsync("order-1", new StreamMetadata { MaxCount = 1 }, default);
        Assert.Equal([4], await VersionsAsync(sut.Store, "order-1"));

        await sut.Store.SetStreamMetadataAsync("order-1", new StreamMetadata(), default);
        Assert.Equal([0, 1, 2, 3, 4], await VersionsAsync(sut.Store, "order-1"));
        Assert.Equal(new StreamMetadata(), (await sut.Store.GetStreamInfoAsync("order-1", default)).Metadata);
    }

    [Fact]
    public async Task metadata_set_before_the_first_append_applies_to_the_stream()
    {
        await using var sut = await CreateAsync();
        await sut.Store.SetStreamMetadataAsync("order-1", new StreamMetadata { MaxCount = 2 }, default);
        Assert.False(await sut.Store.StreamExistsAsync("order-1"));

        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(4));

        Assert.Equal([2, 3], await VersionsAsync(sut.Store, "order-1"));
    }

    [Fact]
    public async Task impossible_metadata_is_refused_and_nothing_is_written()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(2));
        var before = await SnapshotAsync(sut.Store, "order-1");

        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => sut.Store.SetStreamMetadataAsync("order-1", new StreamMetadata { MaxCount = 0 }, default));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => sut.Store.SetStreamMetadataAsync("order-1", new StreamMetadata { MaxAge = TimeSpan.Zero }, default));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => sut.Store.SetStreamMetadataAsync("order-1", new StreamMetadata { MaxAge = TimeSpan.FromSeconds(-1) }, default));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => sut.Store.SetStreamMetadataAsync("order-1", new StreamMetadata { TruncateBefore = -1 }, default));

        await AssertNothingWrittenAsync(sut.Store, before, "order-1");
    }

    [Fact]
    public async Task the_lifecycle_of_cairns_own_streams_cannot_be_changed()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(1));
        await sut.Store.SetStreamMetadataAsync("order-1", new StreamMetadata { MaxCount = 3 }, default);
        var before = await SnapshotAsync(sut.Store, "order-1", "$$order-1");

        await Assert.ThrowsAsync<InvalidStreamNameException>(() => sut.Store.SetStreamMetadataAsync("$$order-1", new StreamMetadata { MaxCount = 1 }, default));
        await Assert.ThrowsAsync<InvalidStreamNameException>(() => sut.Store.DeleteStreamAsync("$$order-1", ExpectedVersion.Any, default));
        await Assert.ThrowsAsync<InvalidStreamNameException>(() => sut.Store.TombstoneStreamAsync("$$order-1", ExpectedVersion.Any, default));

        await AssertNothingWrittenAsync(sut.Store, before, "order-1", "$$order-1");
    }

    [Fact]
    public async Task soft_delete_hides_every_event_of_the_stream()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(3));
        await sut.Store.AppendToStreamAsync("order-2", ExpectedVersion.NoStream, TestEvents.Many(1));

        await sut.Store.DeleteStreamAsync("order-1", ExpectedVersion.Exactly(2), default);

        Assert.Empty(await sut.Store.ReadStreamAsync("order-1").ToListAsync());
        Assert.Empty(await sut.Store.ReadStreamBackwardsAsync("order-1").ToListAsync());
        var info = await sut.Store.GetStreamInfoAsync("order-1", default);
        Assert.Equal(StreamState.SoftDeleted, info.State);
        Assert.False(info.Exists);
        Assert.Null(info.CurrentVersion);
        Assert.Equal(2, info.LastVersion);
        Assert.Null(await sut.Store.GetStreamVersionAsync("order-1"));
        Assert.False(await sut.Store.StreamExistsAsync("order-1"));
        Assert.Single(await sut.Store.ReadStreamAsync("order-2").ToListAsync());

        // The log is the truth: $all still has everything.
        Assert.Equal(4, await sut.Store.ReadAllAsync().CountAsync());
        Assert.Equal(3, await sut.Store.ReadAllAsync(GlobalPosition.Start, EventFilter.ForStream("order-1"), long.MaxValue, default).CountAsync());
    }

    [Fact]
    public async Task a_soft_deleted_stream_starts_again_after_its_old_last_version_and_the_old_events_stay_hidden()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(3));
        await sut.Store.DeleteStreamAsync("order-1", ExpectedVersion.Any, default);

        var result = await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(2, first: 10));

        Assert.Equal(3, result.Streams[0].FirstVersion);
        Assert.Equal(4, result.Streams[0].LastVersion);
        var events = await sut.Store.ReadStreamAsync("order-1").ToListAsync();
        Assert.Equal([3, 4], events.Select(e => e.Version));
        Assert.Equal([10, 11], events.Select(TestEvents.NumberOf));
        var info = await sut.Store.GetStreamInfoAsync("order-1", default);
        Assert.Equal(StreamState.Active, info.State);
        Assert.Equal(4, info.CurrentVersion);
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Exactly(4), TestEvents.Many(1, first: 12));
        Assert.Equal([3, 4, 5], await VersionsAsync(sut.Store, "order-1"));
        Assert.Equal(6, await sut.Store.ReadAllAsync().CountAsync());
    }

    [Fact]
    public async Task new_metadata_cannot_bring_back_events_hidden_by_a_soft_delete_or_a_truncation()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(3));
        await sut.Store.DeleteStreamAsync("order-1", ExpectedVersion.Any, default);
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(2, first: 10));

        await sut.Store.SetStreamMetadataAsync("order-1", new StreamMetadata { MaxCount = 10 }, default);
        Assert.Equal([3, 4], await VersionsAsync(sut.Store, "order-1"));
        Assert.Equal(3, (await sut.Store.GetStreamInfoAsync("order-1", default)).Metadata.TruncateBefore);

        await sut.Store.SetStreamMetadataAsync("order-1", new StreamMetadata { TruncateBefore = 4 }, default);
        await sut.Store.SetStreamMetadataAsync("order-1", new StreamMetadata { TruncateBefore = 1 }, default);
        Assert.Equal([4], await VersionsAsync(sut.Store, "order-1"));
    }

    [Fact]
    public async Task a_soft_deleted_stream_expects_no_stream()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(3));
        await sut.Store.DeleteStreamAsync("order-1", ExpectedVersion.Any, default);
        var before = await SnapshotAsync(sut.Store, "order-1");

        var exact = await Assert.ThrowsAsync<WrongExpectedVersionException>(() =>
            sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Exactly(2), TestEvents.Many(1)));
        Assert.Null(exact.Actual);
        await Assert.ThrowsAsync<WrongExpectedVersionException>(() =>
            sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.StreamExists, TestEvents.Many(1)));
        await AssertNothingWrittenAsync(sut.Store, before, "order-1");

        var any = await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Any, TestEvents.Many(1));
        Assert.Equal(3, any.Streams[0].FirstVersion);
    }

    [Fact]
    public async Task delete_with_a_wrong_expected_version_fails_and_writes_nothing()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(3));
        var before = await SnapshotAsync(sut.Store, "order-1", "$$order-1");

        var ex = await Assert.ThrowsAsync<WrongExpectedVersionException>(() => sut.Store.DeleteStreamAsync("order-1", ExpectedVersion.Exactly(1), default));
        Assert.Equal(new StreamName("order-1"), ex.Stream);
        Assert.Equal(ExpectedVersion.Exactly(1), ex.Expected);
        Assert.Equal(2, ex.Actual);
        await Assert.ThrowsAsync<WrongExpectedVersionException>(() => sut.Store.DeleteStreamAsync("order-1", ExpectedVersion.NoStream, default));
        await Assert.ThrowsAsync<WrongExpectedVersionException>(() => sut.Store.TombstoneStreamAsync("order-1", ExpectedVersion.Exactly(7), default));

        await AssertNothingWrittenAsync(sut.Store, before, "order-1", "$$order-1");
        Assert.Equal([0, 1, 2], await VersionsAsync(sut.Store, "order-1"));
    }

    [Fact]
    public async Task deleting_a_stream_that_never_existed_changes_nothing()
    {
        await using var sut = await CreateAsync();
        var before = await SnapshotAsync(sut.Store, "order-1");

        await sut.Store.DeleteStreamAsync("order-1", ExpectedVersion.Any, default);

        await AssertNothingWrittenAsync(sut.Store, before, "order-1");
    }

    [Fact]
    public async Task a_tombstoned_stream_refuses_reads_and_appends()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(3));

        await sut.Store.TombstoneStreamAsync("order-1", ExpectedVersion.Exactly(2), default);

        var read = await Assert.ThrowsAsync<StreamDeletedException>(async () => await sut.Store.ReadStreamAsync("order-1").ToListAsync());
        Assert.Equal(new StreamName("order-1"), read.Stream);
        await Assert.ThrowsAsync<StreamDeletedException>(async () => await sut.Store.ReadStreamBackwardsAsync("order-1").ToListAsync());
        await Assert.ThrowsAsync<StreamDeletedException>(() => sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(1)));
        await Assert.ThrowsAsync<StreamDeletedException>(() => sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Any, TestEvents.Many(1)));

        var info = await sut.Store.GetStreamInfoAsync("order-1", default);
        Assert.Equal(StreamState.Tombstoned, info.State);
        Assert.False(info.Exists);
        Assert.Null(info.CurrentVersion);
        Assert.False(await sut.Store.StreamExistsAsync("order-1"));
    }

    [Fact]
    public async Task a_stream_can_be_tombstoned_before_it_ever_existed()
    {
        await using var sut = await CreateAsync();
        await sut.Store.TombstoneStreamAsync("order-1", ExpectedVersion.NoStream, default);

        Assert.Equal(StreamState.Tombstoned, (await sut.Store.GetStreamInfoAsync("order-1", default)).State);
        await Assert.ThrowsAsync<StreamDeletedException>(() => sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(1)));
    }

    [Fact]
    public async Task a_soft_deleted_stream_can_be_tombstoned()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(2));
        await sut.Store.DeleteStreamAsync("order-1", ExpectedVersion.Any, default);

        await sut.Store.TombstoneStreamAsync("order-1", ExpectedVersion.NoStream, default);

        Assert.Equal(StreamState.Tombstoned, (await sut.Store.GetStreamInfoAsync("order-1", default)).State);
        await Assert.ThrowsAsync<StreamDeletedException>(() => sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(1)));
    }

    [Fact]
    public async Task every_lifecycle_change_is_recorded_in_the_metadata_stream()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(3));
        await sut.Store.SetStreamMetadataAsync("order-1", new StreamMetadata { MaxCount = 2 }, default);
        await sut.Store.DeleteStreamAsync("order-1", ExpectedVersion.Any, default);
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(1));
        await sut.Store.TombstoneStreamAsync("order-1", ExpectedVersion.Any, default);

        var records = await LifecycleRecordsAsync(sut.Store, "order-1");

        Assert.Equal(["Active", "SoftDeleted", "Tombstoned"], records.Select(StateIn));
        Assert.All(records, r =>
        {
            Assert.Equal(new StreamName("$$order-1"), r.Stream);
            Assert.True(r.Stream.IsSystem);
            Assert.Equal("$metadata", r.Type);
            using var doc = JsonDocument.Parse(r.Data);
            Assert.Equal("order-1", doc.RootElement.GetProperty("stream").GetString());
        });
        Assert.Equal([0, 1, 2], records.Select(r => r.Version));
        AssertStrictlyIncreasing(records.Select(r => r.Position));

        // In $all with system events, in commit order between the user events; never in the user's view.
        var all = await sut.Store.ReadAllAsync(GlobalPosition.Start, EventFilter.AllWithSystemEvents, long.MaxValue, default).ToListAsync();
        Assert.Equal(
            ["order-1", "order-1", "order-1", "$$order-1", "$$order-1", "order-1", "$$order-1"],
            all.Select(e => e.Stream.Value));
        Assert.Equal(4, await sut.Store.ReadAllAsync().CountAsync());
    }

    [Fact]
    public async Task a_failed_lifecycle_change_records_nothing()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(1));
        await sut.Store.TombstoneStreamAsync("order-1", ExpectedVersion.Any, default);
        var before = await SnapshotAsync(sut.Store, "order-1", "$$order-1");

        await Assert.ThrowsAsync<StreamDeletedException>(() => sut.Store.DeleteStreamAsync("order-1", ExpectedVersion.Any, default));
        await Assert.ThrowsAsync<StreamDeletedException>(() => sut.Store.TombstoneStreamAsync("order-1", ExpectedVersion.Any, default));

        await AssertNothingWrittenAsync(sut.Store, before, "order-1", "$$order-1");
        Assert.Single(await LifecycleRecordsAsync(sut.Store, "order-1"));
    }

    [Fact]
    public async Task metadata_set_against_the_version_of_its_metadata_stream_loses_no_other_writers_change()
    {
        await using var sut = await CreateAsync();
        var stream = new StreamName("order-1");
        await sut.Store.AppendToStreamAsync(stream, ExpectedVersion.NoStream, TestEvents.Many(5));
        Assert.Equal(new StreamName("$$order-1"), stream.MetadataStream);
        Assert.Null(await sut.Store.GetStreamMetadataVersionAsync(stream));

        await sut.Store.SetStreamMetadataAsync(stream, new StreamMetadata { MaxCount = 4 }, ExpectedVersion.NoStream, default);
        Assert.Equal(0, await sut.Store.GetStreamMetadataVersionAsync(stream));

        // Two writers read version 0; the first to write wins, the second is told and changes nothing.
        await sut.Store.SetStreamMetadataAsync(stream, new StreamMetadata { MaxCount = 3 }, ExpectedVersion.Exactly(0), default);
        var before = await SnapshotAsync(sut.Store, "order-1", "$$order-1");
        var ex = await Assert.ThrowsAsync<WrongExpectedVersionException>(() =>
            sut.Store.SetStreamMetadataAsync(stream, new StreamMetadata { MaxCount = 2 }, ExpectedVersion.Exactly(0), default));
        Assert.Equal(stream.MetadataStream, ex.Stream);
        Assert.Equal(ExpectedVersion.Exactly(0), ex.Expected);
        Assert.Equal(1, ex.Actual);
        await Assert.ThrowsAsync<WrongExpectedVersionException>(() =>
            sut.Store.SetStreamMetadataAsync(stream, new StreamMetadata { MaxCount = 2 }, ExpectedVersion.NoStream, default));

        // Setting what is there already is checked too, though it would record nothing.
        await Assert.ThrowsAsync<WrongExpectedVersionException>(() =>
            sut.Store.SetStreamMetadataAsync(stream, new StreamMetadata { MaxCount = 3 }, ExpectedVersion.Exactly(5), default));
        await AssertNothingWrittenAsync(sut.Store, before, "order-1", "$$order-1");
        Assert.Equal(3, (await sut.Store.GetStreamInfoAsync(stream, default)).Metadata.MaxCount);
        Assert.Equal([2, 3, 4], await VersionsAsync(sut.Store, stream));
    }

    [Fact]
    public async Task of_two_metadata_changes_made_at_once_against_one_version_exactly_one_is_kept()
    {
        await using var sut = await CreateAsync();
        var stream = new StreamName("order-1");
        await sut.Store.SetStreamMetadataAsync(stream, new StreamMetadata { MaxCount = 10 }, ExpectedVersion.NoStream, default);

        var changes = new[] { 7L, 8L }.Select(count => Task.Run(() =>
            sut.Store.SetStreamMetadataAsync(stream, new StreamMetadata { MaxCount = count }, ExpectedVersion.Exactly(0), default))).ToArray();
        var outcomes = await Task.WhenAll(changes.Select(async c => await Record.ExceptionAsync(() => c))).Bounded();

        var refused = Assert.Single(outcomes, o => o is not null);
        Assert.IsType<WrongExpectedVersionException>(refused);
        var kept = outcomes[0] is null ? 7 : 8;
        Assert.Equal(kept, (await sut.Store.GetStreamInfoAsync(stream, default)).Metadata.MaxCount);
        Assert.Equal(1, await sut.Store.GetStreamMetadataVersionAsync(stream));
    }

    [Fact]
    public async Task a_delete_moves_the_metadata_version_a_metadata_change_expects()
    {
        await using var sut = await CreateAsync();
        var stream = new StreamName("order-1");
        await sut.Store.AppendToStreamAsync(stream, ExpectedVersion.NoStream, TestEvents.Many(2));
        await sut.Store.SetStreamMetadataAsync(stream, new StreamMetadata { MaxCount = 5 }, ExpectedVersion.NoStream, default);
        var read = await sut.Store.GetStreamMetadataVersionAsync(stream);

        await sut.Store.DeleteStreamAsync(stream, ExpectedVersion.Any, default);

        await Assert.ThrowsAsync<WrongExpectedVersionException>(() =>
            sut.Store.SetStreamMetadataAsync(stream, new StreamMetadata { MaxCount = 1 }, ExpectedVersion.Exactly(read!.Value), default));
        Assert.Equal(5, (await sut.Store.GetStreamInfoAsync(stream, default)).Metadata.MaxCount);
        await sut.Store.SetStreamMetadataAsync(stream, new StreamMetadata { MaxCount = 1 }, ExpectedVersion.Exactly(1), default);
        Assert.Equal(1, (await sut.Store.GetStreamInfoAsync(stream, default)).Metadata.MaxCount);
    }

    [Fact]
    public async Task cairns_own_streams_have_no_metadata_stream_to_expect()
    {
        await using var sut = await CreateAsync();

        Assert.Throws<InvalidStreamNameException>(() => new StreamName("$$order-1").MetadataStream);
        await ThroughTask.RefusedAsync(() => sut.Store.SetStreamMetadataAsync("$$order-1", new StreamMetadata { MaxCount = 1 }, ExpectedVersion.NoStream, default), typeof(InvalidStreamNameException));
        await ThroughTask.RefusedAsync(() => sut.Store.GetStreamMetadataVersionAsync("$$order-1").AsTask(), typeof(InvalidStreamNameException));
    }
}
