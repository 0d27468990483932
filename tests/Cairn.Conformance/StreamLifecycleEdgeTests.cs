using System.Text.Json;
using Cairn.Conformance.Support;
using Cairn.Domain;
using Cairn.EventStore;

namespace Cairn.Conformance;

/// <summary>
/// Edges of a stream's lifecycle: lives after a soft delete, metadata on streams in every state, limits combined,
/// reads starting in the hidden part, retries across a delete, and deciders over deleted or truncated streams.
/// </summary>
public abstract class StreamLifecycleEdgeTests<TFixture>(TFixture fixture) : StoreTests<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    private static async Task<List<long>> VersionsAsync(IEventStore store, StreamName stream) =>
        await store.ReadStreamAsync(stream).Select(e => e.Version).ToListAsync();

    private static async Task<List<long>> BackwardsAsync(IEventStore store, StreamName stream, long? from, long max = long.MaxValue) =>
        await store.ReadStreamAsync(stream, ReadDirection.Backwards, from, max, default).Select(e => e.Version).ToListAsync();

    private static async Task<List<long>> ForwardsAsync(IEventStore store, StreamName stream, long? from, long max = long.MaxValue) =>
        await store.ReadStreamAsync(stream, ReadDirection.Forwards, from, max, default).Select(e => e.Version).ToListAsync();

    private static async Task<List<RecordedEvent>> LifecycleRecordsAsync(IEventStore store, StreamName stream) =>
        await store.ReadAllAsync(GlobalPosition.Start, EventFilter.ForStream(new StreamName("$$" + stream.Value)), long.MaxValue, default).ToListAsync();

    private static string StateIn(RecordedEvent record)
    {
        using var doc = JsonDocument.Parse(record.Data);
        return doc.RootElement.GetProperty("state").GetString()!;
    }

    private static DeciderHandler<AccountCommand, AccountState, AccountEvent> Handler(IEventStore store) =>
        new(store, BankAccount.Serializer(), BankAccount.Decider);

    [Fact]
    public async Task a_second_soft_delete_changes_nothing_and_records_nothing()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(3));
        await sut.Store.DeleteStreamAsync("order-1", ExpectedVersion.Exactly(2), default);
        var before = await SnapshotAsync(sut.Store, "order-1", "$$order-1");

        await sut.Store.DeleteStreamAsync("order-1", ExpectedVersion.Any, default);
        await sut.Store.DeleteStreamAsync("order-1", ExpectedVersion.NoStream, default);
        await Assert.ThrowsAsync<WrongExpectedVersionException>(() => sut.Store.DeleteStreamAsync("order-1", ExpectedVersion.Exactly(2), default));
        await Assert.ThrowsAsync<WrongExpectedVersionException>(() => sut.Store.DeleteStreamAsync("order-1", ExpectedVersion.StreamExists, default));

        await AssertNothingWrittenAsync(sut.Store, before, "order-1", "$$order-1");
        var info = await sut.Store.GetStreamInfoAsync("order-1", default);
        Assert.Equal(StreamState.SoftDeleted, info.State);
        Assert.Equal(2, info.LastVersion);
        Assert.Equal(3, info.Metadata.TruncateBefore);
    }

    [Fact]
    public async Task metadata_set_on_a_soft_deleted_stream_keeps_it_deleted_and_applies_to_its_new_life()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(3));
        await sut.Store.DeleteStreamAsync("order-1", ExpectedVersion.Any, default);

        await sut.Store.SetStreamMetadataAsync("order-1", new StreamMetadata { MaxCount = 2 }, default);

        var info = await sut.Store.GetStreamInfoAsync("order-1", default);
        Assert.Equal(StreamState.SoftDeleted, info.State);
        Assert.Equal(new StreamMetadata { MaxCount = 2, TruncateBefore = 3 }, info.Metadata);
        Assert.Empty(await VersionsAsync(sut.Store, "order-1"));
        Assert.Equal(["SoftDeleted", "SoftDeleted"], (await LifecycleRecordsAsync(sut.Store, "order-1")).Select(StateIn));

        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(4, first: 3));
        Assert.Equal([5, 6], await VersionsAsync(sut.Store, "order-1"));
        Assert.Equal([6, 5], await BackwardsAsync(sut.Store, "order-1", null));
    }

    [Fact]
    public async Task metadata_on_a_stream_that_never_existed_leaves_it_not_found_and_expecting_no_stream()
    {
        await using var sut = await CreateAsync();
        await sut.Store.SetStreamMetadataAsync("order-1", new StreamMetadata { TruncateBefore = 2, MaxAge = TimeSpan.FromDays(1) }, default);

        var info = await sut.Store.GetStreamInfoAsync("order-1", default);
        Assert.Equal(StreamState.NotFound, info.State);
        Assert.Null(info.LastVersion);
        Assert.Equal(new StreamMetadata { TruncateBefore = 2, MaxAge = TimeSpan.FromDays(1) }, info.Metadata);
        Assert.Empty(await VersionsAsync(sut.Store, "order-1"));
        await Assert.ThrowsAsync<WrongExpectedVersionException>(() => sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.StreamExists, TestEvents.Many(1)));
        await Assert.ThrowsAsync<WrongExpectedVersionException>(() => sut.Store.DeleteStreamAsync("order-1", ExpectedVersion.StreamExists, default));

        // A soft delete of it changes nothing; the first append starts at version 0.
        await sut.Store.DeleteStreamAsync("order-1", ExpectedVersion.NoStream, default);
        var result = await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(4));
        Assert.Equal(0, result.Streams[0].FirstVersion);
        Assert.Equal([2, 3], await VersionsAsync(sut.Store, "order-1"));
        Assert.Single(await LifecycleRecordsAsync(sut.Store, "order-1"));
    }

    [Fact]
    public async Task metadata_on_a_tombstoned_stream_is_refused_and_records_nothing()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(2));
        await sut.Store.TombstoneStreamAsync("order-1", ExpectedVersion.Any, default);
        var before = await SnapshotAsync(sut.Store, "order-1", "$$order-1");

        await Assert.ThrowsAsync<StreamDeletedException>(() => sut.Store.SetStreamMetadataAsync("order-1", new StreamMetadata { MaxCount = 1 }, default));
        await Assert.ThrowsAsync<StreamDeletedException>(() => sut.Store.DeleteStreamAsync("order-1", ExpectedVersion.NoStream, default));

        await AssertNothingWrittenAsync(sut.Store, before, "order-1", "$$order-1");
        Assert.Equal(StreamState.Tombstoned, (await sut.Store.GetStreamInfoAsync("order-1", default)).State);
    }

    [Fact]
    public async Task a_tombstone_of_a_stream_with_only_metadata_keeps_it_deleted_for_ever()
    {
        await using var sut = await CreateAsync();
        await sut.Store.SetStreamMetadataAsync("order-1", new StreamMetadata { MaxCount = 3 }, default);

        await sut.Store.TombstoneStreamAsync("order-1", ExpectedVersion.NoStream, default);

        Assert.Equal(StreamState.Tombstoned, (await sut.Store.GetStreamInfoAsync("order-1", default)).State);
        await Assert.ThrowsAsync<StreamDeletedException>(() => sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Any, TestEvents.Many(1)));
        await Assert.ThrowsAsync<StreamDeletedException>(async () => await sut.Store.ReadStreamAsync("order-1").ToListAsync());
        Assert.Equal(["NotFound", "Tombstoned"], (await LifecycleRecordsAsync(sut.Store, "order-1")).Select(StateIn));
    }

    [Fact]
    public async Task reads_starting_inside_the_hidden_part_show_only_visible_versions()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(10));
        await sut.Store.SetStreamMetadataAsync("order-1", new StreamMetadata { TruncateBefore = 6 }, default);

        Assert.Equal([6, 7, 8, 9], await ForwardsAsync(sut.Store, "order-1", 2));
        Assert.Equal([6, 7], await ForwardsAsync(sut.Store, "order-1", 0, 2));
        Assert.Empty(await BackwardsAsync(sut.Store, "order-1", 5));
        Assert.Equal([7, 6], await BackwardsAsync(sut.Store, "order-1", 7));
        Assert.Equal([9, 8], await BackwardsAsync(sut.Store, "order-1", 500, 2));
        Assert.Empty(await ForwardsAsync(sut.Store, "order-1", 10));
        Assert.Empty(await ForwardsAsync(sut.Store, "order-1", long.MaxValue));
        Assert.Equal([9, 8, 7, 6], await BackwardsAsync(sut.Store, "order-1", long.MaxValue));
    }

    [Fact]
    public async Task a_new_life_read_from_an_old_version_shows_only_the_new_life()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(4));
        await sut.Store.DeleteStreamAsync("order-1", ExpectedVersion.Any, default);
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Any, TestEvents.Many(3, first: 4));

        Assert.Equal([4, 5, 6], await ForwardsAsync(sut.Store, "order-1", 0));
        Assert.Equal([4], await BackwardsAsync(sut.Store, "order-1", 4));
        Assert.Empty(await BackwardsAsync(sut.Store, "order-1", 3));
        Assert.Equal([6, 5, 4], await BackwardsAsync(sut.Store, "order-1", null));
    }

    [Fact]
    public async Task truncate_before_past_the_last_version_hides_everything_until_appends_reach_it()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(3));
        await sut.Store.SetStreamMetadataAsync("order-1", new StreamMetadata { TruncateBefore = 5 }, default);

        Assert.Empty(await VersionsAsync(sut.Store, "order-1"));
        var info = await sut.Store.GetStreamInfoAsync("order-1", default);
        Assert.Equal(StreamState.Active, info.State);
        Assert.Equal(2, info.CurrentVersion);

        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Exactly(2), TestEvents.Many(4, first: 3));
        Assert.Equal([5, 6], await VersionsAsync(sut.Store, "order-1"));
    }

    [Fact]
    public async Task truncate_before_max_count_and_max_age_together_hide_whatever_any_of_them_hides()
    {
        var clock = new ManualTimeProvider();
        await using var sut = await CreateAsync(new EventStoreOptions { TimeProvider = clock });
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(4));
        clock.Advance(TimeSpan.FromMinutes(10));
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Exactly(3), TestEvents.Many(6, first: 4));

        // Age hides 0-3, truncation hides 0-4, count keeps 7-9: count wins.
        await sut.Store.SetStreamMetadataAsync("order-1", new StreamMetadata { MaxAge = TimeSpan.FromMinutes(5), TruncateBefore = 5, MaxCount = 3 }, default);
        Assert.Equal([7, 8, 9], await VersionsAsync(sut.Store, "order-1"));

        // Truncation wins.
        await sut.Store.SetStreamMetadataAsync("order-1", new StreamMetadata { MaxAge = TimeSpan.FromMinutes(5), TruncateBefore = 8, MaxCount = 5 }, default);
        Assert.Equal([8, 9], await VersionsAsync(sut.Store, "order-1"));

        // Age wins, once everything is older than it.
        clock.Advance(TimeSpan.FromMinutes(6));
        Assert.Empty(await VersionsAsync(sut.Store, "order-1"));
        Assert.Empty(await BackwardsAsync(sut.Store, "order-1", null));
        Assert.Equal(9, await sut.Store.GetStreamVersionAsync("order-1"));
    }

    [Fact]
    public async Task max_count_of_the_largest_value_hides_nothing()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(3));

        await sut.Store.SetStreamMetadataAsync("order-1", new StreamMetadata { MaxCount = long.MaxValue }, default);
        Assert.Equal([0, 1, 2], await VersionsAsync(sut.Store, "order-1"));

        await sut.Store.SetStreamMetadataAsync("order-1", new StreamMetadata { TruncateBefore = long.MaxValue }, default);
        Assert.Empty(await VersionsAsync(sut.Store, "order-1"));
        Assert.Equal(long.MaxValue, (await sut.Store.GetStreamInfoAsync("order-1", default)).Metadata.TruncateBefore);
        await sut.Store.DeleteStreamAsync("order-1", ExpectedVersion.Exactly(2), default);
        Assert.Equal(long.MaxValue, (await sut.Store.GetStreamInfoAsync("order-1", default)).Metadata.TruncateBefore);
    }

    [Fact]
    public async Task a_retry_after_a_soft_delete_returns_the_first_result_and_does_not_start_the_stream_again()
    {
        await using var sut = await CreateAsync();
        var events = TestEvents.Many(2);
        var first = await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, events);
        await sut.Store.DeleteStreamAsync("order-1", ExpectedVersion.Any, default);
        var before = await SnapshotAsync(sut.Store, "order-1", "$$order-1");

        var retry = await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, events);

        Assert.True(retry.WasDuplicate);
        Assert.Equal(first.Streams[0].FirstVersion, retry.Streams[0].FirstVersion);
        Assert.Equal(first.LastPosition, retry.LastPosition);
        await AssertNothingWrittenAsync(sut.Store, before, "order-1", "$$order-1");
        Assert.Equal(StreamState.SoftDeleted, (await sut.Store.GetStreamInfoAsync("order-1", default)).State);
        Assert.Empty(await VersionsAsync(sut.Store, "order-1"));
    }

    [Fact]
    public async Task a_retry_of_an_old_life_append_after_a_new_life_writes_nothing()
    {
        await using var sut = await CreateAsync();
        var old = TestEvents.Many(2);
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, old);
        await sut.Store.DeleteStreamAsync("order-1", ExpectedVersion.Any, default);
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(1, first: 2));

        var retry = await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, old);

        Assert.True(retry.WasDuplicate);
        Assert.Equal(0, retry.Streams[0].FirstVersion);
        Assert.Equal([2], await VersionsAsync(sut.Store, "order-1"));
        Assert.Equal(2, await sut.Store.GetStreamVersionAsync("order-1"));
    }

    [Fact]
    public async Task a_multi_stream_append_starts_a_soft_deleted_stream_again_beside_a_live_one()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(2));
        await sut.Store.AppendToStreamAsync("order-2", ExpectedVersion.NoStream, TestEvents.Many(1));
        await sut.Store.DeleteStreamAsync("order-1", ExpectedVersion.Any, default);

        // A refused part leaves the deleted stream deleted.
        await Assert.ThrowsAsync<WrongExpectedVersionException>(() => sut.Store.AppendToStreamsAsync(
            [new StreamAppend("order-1", ExpectedVersion.NoStream, TestEvents.Many(1)), new StreamAppend("order-2", ExpectedVersion.Exactly(5), TestEvents.Many(1))]));
        Assert.Equal(StreamState.SoftDeleted, (await sut.Store.GetStreamInfoAsync("order-1", default)).State);

        var result = await sut.Store.AppendToStreamsAsync(
            [new StreamAppend("order-1", ExpectedVersion.NoStream, TestEvents.Many(1)), new StreamAppend("order-2", ExpectedVersion.Exactly(0), TestEvents.Many(1))]);
        Assert.Equal(2, result.Streams[0].FirstVersion);
        Assert.Equal([2], await VersionsAsync(sut.Store, "order-1"));
        Assert.Equal([0, 1], await VersionsAsync(sut.Store, "order-2"));
    }

    [Fact]
    public async Task the_metadata_stream_of_a_stream_reads_like_any_stream()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(2));
        await sut.Store.SetStreamMetadataAsync("order-1", new StreamMetadata { MaxCount = 1 }, default);
        await sut.Store.DeleteStreamAsync("order-1", ExpectedVersion.Any, default);

        var records = await sut.Store.ReadStreamAsync("$$order-1").ToListAsync();
        Assert.Equal([0, 1], records.Select(r => r.Version));
        Assert.All(records, r => Assert.Equal("$metadata", r.Type));
        var info = await sut.Store.GetStreamInfoAsync("$$order-1", default);
        Assert.Equal(StreamState.Active, info.State);
        Assert.Equal(1, info.LastVersion);
        await Assert.ThrowsAsync<InvalidStreamNameException>(() => sut.Store.AppendToStreamAsync("$$order-1", ExpectedVersion.Any, TestEvents.Many(1)));
    }

    [Fact]
    public async Task a_decider_starts_a_soft_deleted_stream_afresh_after_its_old_last_version()
    {
        await using var sut = await CreateAsync();
        var handler = Handler(sut.Store);
        await handler.HandleAsync("account-1", new OpenAccount("ada"));
        await handler.HandleAsync("account-1", new Deposit(10m));
        await sut.Store.DeleteStreamAsync("account-1", ExpectedVersion.Any, default);

        Assert.Equal(new LoadedState<AccountState>(AccountState.Initial, null), await handler.LoadAsync("account-1"));
        await Assert.ThrowsAsync<AccountRuleException>(() => handler.HandleAsync("account-1", new Deposit(1m)));
        var opened = await handler.HandleAsync("account-1", new OpenAccount("bob"));

        Assert.Equal(2, opened.Append!.Streams[0].FirstVersion);
        Assert.Equal(new LoadedState<AccountState>(new AccountState("bob", 0m, false), 2), await handler.LoadAsync("account-1"));
    }

    [Fact]
    public async Task a_decider_on_a_tombstoned_stream_fails_with_stream_deleted()
    {
        await using var sut = await CreateAsync();
        var handler = Handler(sut.Store);
        await handler.HandleAsync("account-1", new OpenAccount("ada"));
        await sut.Store.TombstoneStreamAsync("account-1", ExpectedVersion.Any, default);

        await Assert.ThrowsAsync<StreamDeletedException>(() => handler.HandleAsync("account-1", new OpenAccount("bob")));
        await Assert.ThrowsAsync<StreamDeletedException>(() => handler.LoadAsync("account-1"));
    }

    [Fact]
    public async Task a_decider_appends_after_the_real_last_version_of_a_stream_whose_events_are_all_truncated()
    {
        await using var sut = await CreateAsync();
        var handler = Handler(sut.Store);
        await handler.HandleAsync("account-1", new OpenAccount("ada"));
        await handler.HandleAsync("account-1", new Deposit(10m));
        await sut.Store.SetStreamMetadataAsync("account-1", new StreamMetadata { TruncateBefore = 2 }, default);

        Assert.Equal(new LoadedState<AccountState>(AccountState.Initial, 1), await handler.LoadAsync("account-1"));
        var opened = await handler.HandleAsync("account-1", new OpenAccount("bob"));

        Assert.Equal(1, opened.Attempts);
        Assert.Equal(2, opened.Append!.Streams[0].FirstVersion);
    }

    [Fact]
    public async Task a_soft_delete_racing_appends_leaves_every_append_either_before_it_or_in_the_new_life()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(1));

        var appends = Enumerable.Range(1, 20).Select(i => Task.Run(() => sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.Any, TestEvents.Many(1, first: i)))).ToList();
        var delete = Task.Run(() => sut.Store.DeleteStreamAsync("order-1", ExpectedVersion.Any, default));
        var results = await Task.WhenAll(appends).Bounded();
        await delete.Bounded();

        var info = await sut.Store.GetStreamInfoAsync("order-1", default);
        Assert.Equal(20, info.LastVersion);
        var truncate = info.Metadata.TruncateBefore!.Value;
        var visible = await VersionsAsync(sut.Store, "order-1");
        Assert.Equal(Enumerable.Range((int)truncate, 21 - (int)truncate).Select(v => (long)v), visible);
        Assert.Equal(21, (await sut.Store.ReadAllAsync().ToListAsync()).Count);
        Assert.Equal(Enumerable.Range(1, 20).Select(v => (long)v), results.Select(r => r.Streams[0].FirstVersion).Order());
    }
}
