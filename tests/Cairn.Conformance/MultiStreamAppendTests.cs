using Cairn.Conformance.Support;
using Cairn.EventStore;

namespace Cairn.Conformance;

/// <summary>One append to several streams lands whole or not at all.</summary>
public abstract class MultiStreamAppendTests<TFixture>(TFixture fixture) : StoreTests<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    [Fact]
    public async Task every_stream_of_a_multi_stream_append_lands_with_its_own_versions()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("account-b", ExpectedVersion.NoStream, TestEvents.Many(3));

        var result = await sut.Store.AppendToStreamsAsync(
        [
            new StreamAppend("account-a", ExpectedVersion.NoStream, TestEvents.Many(2, first: 10)),
            new StreamAppend("account-b", ExpectedVersion.Exactly(2), TestEvents.Many(1, first: 20)),
            new StreamAppend("ledger-1", ExpectedVersion.Any, TestEvents.Many(3, first: 30)),
        ]);

        Assert.False(result.WasDuplicate);
        Assert.Equal(
            [("account-a", 0L, 1L), ("account-b", 3L, 3L), ("ledger-1", 0L, 2L)],
            result.Streams.Select(s => (s.Stream.Value, s.FirstVersion, s.LastVersion)));
        Assert.Equal(1, result.NextExpectedVersion);

        Assert.Equal([10, 11], (await sut.Store.ReadStreamAsync("account-a").ToListAsync()).Select(TestEvents.NumberOf));
        Assert.Equal([0, 1, 2, 20], (await sut.Store.ReadStreamAsync("account-b").ToListAsync()).Select(TestEvents.NumberOf));
        Assert.Equal([30, 31, 32], (await sut.Store.ReadStreamAsync("ledger-1").ToListAsync()).Select(TestEvents.NumberOf));

        // The six events are committed together, in request order, between the append's first and last positions.
        var written = await sut.Store.ReadAllAsync(result.FirstPosition, EventFilter.All, long.MaxValue, default).ToListAsync();
        Assert.Equal([10, 11, 20, 30, 31, 32], written.Select(TestEvents.NumberOf));
        Assert.Equal(result.FirstPosition, written[0].Position);
        Assert.Equal(result.LastPosition, written[^1].Position);
        AssertStrictlyIncreasing(written.Select(e => e.Position));
    }

    [Fact]
    public async Task if_one_streams_expected_version_fails_no_stream_lands()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("account-b", ExpectedVersion.NoStream, TestEvents.Many(3));
        var before = await SnapshotAsync(sut.Store, "account-a", "account-b", "ledger-1");

        var ex = await Assert.ThrowsAsync<WrongExpectedVersionException>(() => sut.Store.AppendToStreamsAsync(
        [
            new StreamAppend("account-a", ExpectedVersion.NoStream, TestEvents.Many(2)),
            new StreamAppend("ledger-1", ExpectedVersion.Any, TestEvents.Many(1)),
            new StreamAppend("account-b", ExpectedVersion.Exactly(1), TestEvents.Many(1)),
        ]));

        Assert.Equal(new StreamName("account-b"), ex.Stream);
        Assert.Equal(ExpectedVersion.Exactly(1), ex.Expected);
        Assert.Equal(2, ex.Actual);
        await AssertNothingWrittenAsync(sut.Store, before, "account-a", "account-b", "ledger-1");
        Assert.False(await sut.Store.StreamExistsAsync("account-a"));
    }

    [Fact]
    public async Task if_the_first_stream_fails_the_later_ones_do_not_land_either()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("account-a", ExpectedVersion.NoStream, TestEvents.Many(1));
        var before = await SnapshotAsync(sut.Store, "account-a", "account-b");

        await Assert.ThrowsAsync<WrongExpectedVersionException>(() => sut.Store.AppendToStreamsAsync(
        [
            new StreamAppend("account-a", ExpectedVersion.NoStream, TestEvents.Many(1)),
            new StreamAppend("account-b", ExpectedVersion.NoStream, TestEvents.Many(1)),
        ]));

        await AssertNothingWrittenAsync(sut.Store, before, "account-a", "account-b");
    }

    [Fact]
    public async Task a_tombstoned_stream_in_the_request_stops_every_stream_landing()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("account-b", ExpectedVersion.NoStream, TestEvents.Many(1));
        await sut.Store.TombstoneStreamAsync("account-b", ExpectedVersion.Any, default);
        var before = await SnapshotAsync(sut.Store, "account-a", "account-b");

        await Assert.ThrowsAsync<StreamDeletedException>(() => sut.Store.AppendToStreamsAsync(
        [
            new StreamAppend("account-a", ExpectedVersion.Any, TestEvents.Many(1)),
            new StreamAppend("account-b", ExpectedVersion.Any, TestEvents.Many(1)),
        ]));

        await AssertNothingWrittenAsync(sut.Store, before, "account-a", "account-b");
    }

    [Fact]
    public async Task an_invalid_event_in_any_stream_stops_every_stream_landing()
    {
        await using var sut = await CreateAsync();
        var before = await SnapshotAsync(sut.Store, "account-a", "account-b");

        await Assert.ThrowsAsync<InvalidEventDataException>(() => sut.Store.AppendToStreamsAsync(
        [
            new StreamAppend("account-a", ExpectedVersion.Any, TestEvents.Many(2)),
            new StreamAppend("account-b", ExpectedVersion.Any, [TestEvents.Json("{oops")]),
        ]));

        await AssertNothingWrittenAsync(sut.Store, before, "account-a", "account-b");
    }

    [Fact]
    public async Task retrying_a_multi_stream_append_returns_the_first_result_and_writes_nothing()
    {
        await using var sut = await CreateAsync();
        IReadOnlyList<StreamAppend> request =
        [
            new StreamAppend("account-a", ExpectedVersion.NoStream, TestEvents.Many(2)),
            new StreamAppend("account-b", ExpectedVersion.NoStream, TestEvents.Many(1)),
        ];
        var first = await sut.Store.AppendToStreamsAsync(request);
        var before = await SnapshotAsync(sut.Store, "account-a", "account-b");

        var retry = await sut.Store.AppendToStreamsAsync(request);

        Assert.True(retry.WasDuplicate);
        Assert.Equal(first.Streams, retry.Streams);
        Assert.Equal(first.FirstPosition, retry.FirstPosition);
        Assert.Equal(first.LastPosition, retry.LastPosition);
        await AssertNothingWrittenAsync(sut.Store, before, "account-a", "account-b");
    }

    [Fact]
    public async Task a_multi_stream_retry_that_adds_a_new_stream_is_refused_and_writes_nothing()
    {
        await using var sut = await CreateAsync();
        var stored = new StreamAppend("account-a", ExpectedVersion.NoStream, TestEvents.Many(2));
        await sut.Store.AppendToStreamsAsync([stored]);
        var before = await SnapshotAsync(sut.Store, "account-a", "account-b");

        await Assert.ThrowsAsync<DuplicateEventIdException>(() => sut.Store.AppendToStreamsAsync(
            [stored, new StreamAppend("account-b", ExpectedVersion.NoStream, TestEvents.Many(1))]));

        await AssertNothingWrittenAsync(sut.Store, before, "account-a", "account-b");
    }
}
