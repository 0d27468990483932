using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Cairn.Conformance.Support;
using Cairn.Diagnostics;
using Cairn.Domain;
using Cairn.EventStore;

namespace Cairn.Conformance.Domain;

/// <summary>
/// Decider snapshots against a real store and the backend's snapshot store: taken every N events or on demand, used
/// only while they are exactly the fold of what the stream shows, and never misread.
/// </summary>
public abstract class SnapshotTests<TFixture>(TFixture fixture, Func<IEventStore, ISnapshotStore> snapshotStore) : StoreTests<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    private static readonly StreamName Account = "account-1";

    /// <summary>A kind of its own per test, so the counters of tests running beside it do not mix in.</summary>
    private readonly string _kind = "account-" + Guid.NewGuid().ToString("N")[..12];

    // ---- taken and used ----

    [Fact]
    public async Task a_snapshot_is_taken_every_n_events_and_a_load_folds_only_the_events_after_it()
    {
        await using var sut = await CreateAsync();
        var snapshots = snapshotStore(sut.Store);
        using var counters = new SnapshotCounters(_kind);
        var counting = new CountingDecider();
        var handler = Handler(sut.Store, snapshots, Policy(every: 3), counting.Decider);

        await handler.HandleAsync(Account, new OpenAccount("ada"));
        await handler.HandleAsync(Account, new Deposit(10m));
        Assert.Null(await snapshots.LoadAsync(Account, _kind, default));
        await handler.HandleAsync(Account, new Deposit(20m));
        await handler.HandleAsync(Account, new Deposit(5m));
        await handler.HandleAsync(Account, new Deposit(7m));

        // The third event (version 2) reached a multiple of 3.
        var snapshot = Assert.IsType<StoredSnapshot>(await snapshots.LoadAsync(Account, _kind, default));
        Assert.Equal((2L, 0L, 1, _kind), (snapshot.StreamVersion, snapshot.FirstVersion, snapshot.SchemaVersion, snapshot.Kind));
        Assert.Equal(await PositionOfAsync(sut.Store, 2), snapshot.Position);
        Assert.Equal(new AccountState("ada", 30m, false), Deserialize(snapshot));

        counting.Reset();
        var loaded = await handler.LoadAsync(Account);

        Assert.Equal(new LoadedState<AccountState>(new AccountState("ada", 42m, false), 4), loaded);
        Assert.Equal(2, counting.Evolved);
        Assert.Equal(loaded, await Plain(sut.Store).LoadAsync(Account));

        // The sixth event (version 5) reaches the next multiple.
        await handler.HandleAsync(Account, new Withdraw(2m));
        Assert.Equal(5, (await snapshots.LoadAsync(Account, _kind, default))!.StreamVersion);
        counting.Reset();
        Assert.Equal(new LoadedState<AccountState>(new AccountState("ada", 40m, false), 5), await handler.LoadAsync(Account));
        Assert.Equal(0, counting.Evolved);

        Assert.Equal(2, counters["cairn.snapshots.taken"]);
        Assert.True(counters["cairn.snapshots.used"] >= 2);
        Assert.Equal(0, counters.Ignored);
    }

    [Fact]
    public async Task a_snapshot_taken_on_demand_is_used_by_later_loads_and_none_is_taken_unasked()
    {
        await using var sut = await CreateAsync();
        var snapshots = snapshotStore(sut.Store);
        var counting = new CountingDecider();
        var handler = Handler(sut.Store, snapshots, Policy(every: null), counting.Decider);
        await handler.HandleAsync(Account, new OpenAccount("ada"));
        for (var i = 1; i <= 9; i++)
        {
            await handler.HandleAsync(Account, new Deposit(i));
        }

        Assert.Null(await snapshots.LoadAsync(Account, _kind, default));

        var taken = Assert.IsType<StoredSnapshot>(await handler.TakeSnapshotAsync(Account));

        Assert.Equal(9, taken.StreamVersion);
        Assert.Equal(9, (await snapshots.LoadAsync(Account, _kind, default))!.StreamVersion);
        counting.Reset();
        Assert.Equal(new LoadedState<AccountState>(new AccountState("ada", 45m, false), 9), await handler.LoadAsync(Account));
        Assert.Equal(0, counting.Evolved);

        await handler.HandleAsync(Account, new Withdraw(5m));
        counting.Reset();
        Assert.Equal(new LoadedState<AccountState>(new AccountState("ada", 40m, false), 10), await handler.LoadAsync(Account));
        Assert.Equal(1, counting.Evolved);
        Assert.Equal(9, (await snapshots.LoadAsync(Account, _kind, default))!.StreamVersion);
    }

    [Fact]
    public async Task a_snapshot_on_demand_of_a_stream_without_events_takes_nothing()
    {
        await using var sut = await CreateAsync();
        var snapshots = snapshotStore(sut.Store);
        var handler = Handler(sut.Store, snapshots, Policy(every: null));

        Assert.Null(await handler.TakeSnapshotAsync("account-none"));
        Assert.Null(await snapshots.LoadAsync("account-none", _kind, default));
    }

    [Fact]
    public async Task an_append_that_passes_a_multiple_without_landing_on_it_takes_a_snapshot()
    {
        await using var sut = await CreateAsync();
        var snapshots = snapshotStore(sut.Store);
        var handler = new DeciderHandler<AccountCommand, AccountState, AccountEvent>(
            sut.Store, snapshots, BankAccount.Serializer(), TwoDepositsDecider, new DeciderHandlerOptions { Snapshots = Policy(every: 3) });
        await handler.HandleAsync(Account, new OpenAccount("ada"));
        await handler.HandleAsync(Account, new Deposit(2m));

        // Each deposit is two events. From 1 event to 3: on the multiple 3.
        Assert.Equal(2, (await snapshots.LoadAsync(Account, _kind, default))!.StreamVersion);

        // From 3 to 5: no multiple reached.
        await handler.HandleAsync(Account, new Deposit(4m));
        Assert.Equal(2, (await snapshots.LoadAsync(Account, _kind, default))!.StreamVersion);

        await handler.HandleAsync(Account, new Deposit(6m));

        // From 5 events to 7: the multiple 6 lies inside the append.
        var snapshot = await snapshots.LoadAsync(Account, _kind, default);
        Assert.Equal(6, snapshot!.StreamVersion);
        Assert.Equal(new AccountState("ada", 12m, false), Deserialize(snapshot));
    }

    // ---- passed over, never misread ----

    [Fact]
    public async Task a_snapshot_of_another_schema_version_is_ignored_and_the_state_folded_from_every_event()
    {
        await using var sut = await CreateAsync();
        var snapshots = snapshotStore(sut.Store);
        using var counters = new SnapshotCounters(_kind);
        await SeedAsync(sut.Store);

        // Version 1 of the state's shape: JSON that would deserialize into today's state and mean something else.
        await snapshots.SaveAsync(Forged(2, await PositionOfAsync(sut.Store, 2), schemaVersion: 1, new AccountState("mallory", 999m, false)), default);
        var counting = new CountingDecider();
        var handler = Handler(sut.Store, snapshots, Policy(every: 100, schemaVersion: 2), counting.Decider);

        Assert.Equal(new LoadedState<AccountState>(new AccountState("ada", 30m, false), 2), await handler.LoadAsync(Account));
        Assert.Equal(3, counting.Evolved);
        Assert.Equal(1, counters["cairn.snapshots.ignored|schema_version"]);

        // A newer shape (written by a newer deployment) is ignored just the same, and kept for it.
        await snapshots.SaveAsync(Forged(2, await PositionOfAsync(sut.Store, 2), schemaVersion: 3, new AccountState("mallory", 999m, false)), default);
        Assert.Equal(new AccountState("ada", 30m, false), (await handler.LoadAsync(Account)).State);
        Assert.Equal(2, counters["cairn.snapshots.ignored|schema_version"]);
        Assert.Equal(3, (await snapshots.LoadAsync(Account, _kind, default))!.SchemaVersion);
        Assert.Equal(0, counters["cairn.snapshots.used"]);

        // The forged snapshot was otherwise fit: a handler of its schema version would have used it.
        var ofVersion3 = Handler(sut.Store, snapshots, Policy(every: 100, schemaVersion: 3));
        Assert.Equal(new AccountState("mallory", 999m, false), (await ofVersion3.LoadAsync(Account)).State);
    }

    [Fact]
    public async Task after_a_schema_change_the_next_multiple_replaces_the_old_snapshot()
    {
        await using var sut = await CreateAsync();
        var snapshots = snapshotStore(sut.Store);
        var v1 = Handler(sut.Store, snapshots, Policy(every: 2, schemaVersion: 1));
        await v1.HandleAsync(Account, new OpenAccount("ada"));
        await v1.HandleAsync(Account, new Deposit(10m));
        Assert.Equal(1, (await snapshots.LoadAsync(Account, _kind, default))!.SchemaVersion);

        var v2 = Handler(sut.Store, snapshots, Policy(every: 2, schemaVersion: 2));
        await v2.HandleAsync(Account, new Deposit(20m));
        await v2.HandleAsync(Account, new Deposit(30m));

        var snapshot = await snapshots.LoadAsync(Account, _kind, default);
        Assert.Equal((3L, 2), (snapshot!.StreamVersion, snapshot.SchemaVersion));
        Assert.Equal(new AccountState("ada", 60m, false), (await v2.LoadAsync(Account)).State);
    }

    [Theory]
    [InlineData("not json at all")]
    [InlineData("{\"owner\":\"ada\",\"balance\":\"lots\"}")]
    [InlineData("null")]
    [InlineData("")]
    public async Task a_snapshot_whose_bytes_do_not_deserialize_is_ignored(string data)
    {
        await using var sut = await CreateAsync();
        var snapshots = snapshotStore(sut.Store);
        using var counters = new SnapshotCounters(_kind);
        await SeedAsync(sut.Store);
        await snapshots.SaveAsync(new StoredSnapshot(Account, _kind, 2, 0, await PositionOfAsync(sut.Store, 2), 1, Encoding.UTF8.GetBytes(data)), default);
        var counting = new CountingDecider();
        var handler = Handler(sut.Store, snapshots, Policy(every: 2), counting.Decider);

        Assert.Equal(new LoadedState<AccountState>(new AccountState("ada", 30m, false), 2), await handler.LoadAsync(Account));
        Assert.Equal(3, counting.Evolved);
        Assert.Equal(1, counters["cairn.snapshots.ignored|unreadable"]);

        // The next multiple replaces it with a readable one.
        await handler.HandleAsync(Account, new Deposit(1m));
        Assert.Equal(3, (await snapshots.LoadAsync(Account, _kind, default))!.StreamVersion);
        Assert.Equal(new AccountState("ada", 31m, false), (await handler.LoadAsync(Account)).State);
    }

    [Fact]
    public async Task a_snapshot_beyond_the_streams_version_is_ignored_and_deleted()
    {
        await using var sut = await CreateAsync();
        var snapshots = snapshotStore(sut.Store);
        using var counters = new SnapshotCounters(_kind);
        await SeedAsync(sut.Store);
        await snapshots.SaveAsync(Forged(50, new GlobalPosition(1), schemaVersion: 1, new AccountState("mallory", 999m, false)), default);
        await snapshots.SaveAsync(Forged(50, new GlobalPosition(1), schemaVersion: 1, new AccountState("mallory", 999m, false)) with { Stream = "account-none" }, default);
        var counting = new CountingDecider();
        var handler = Handler(sut.Store, snapshots, Policy(every: 2), counting.Decider);

        Assert.Equal(new LoadedState<AccountState>(new AccountState("ada", 30m, false), 2), await handler.LoadAsync(Account));
        Assert.Equal(3, counting.Evolved);
        Assert.Equal(new LoadedState<AccountState>(AccountState.Initial, null), await handler.LoadAsync("account-none"));
        Assert.Equal(2, counters["cairn.snapshots.ignored|beyond_stream"]);
        Assert.Null(await snapshots.LoadAsync(Account, _kind, default));
        Assert.Null(await snapshots.LoadAsync("account-none", _kind, default));

        // Gone, it no longer keeps the stream's own snapshots out.
        await handler.HandleAsync(Account, new Deposit(1m));
        Assert.Equal(3, (await snapshots.LoadAsync(Account, _kind, default))!.StreamVersion);
    }

    [Fact]
    public async Task a_snapshot_of_another_history_at_the_same_version_is_ignored()
    {
        await using var sut = await CreateAsync();
        var snapshots = snapshotStore(sut.Store);
        using var counters = new SnapshotCounters(_kind);
        await SeedAsync(sut.Store);
        var other = await PositionOfAsync(sut.Store, 1);
        await snapshots.SaveAsync(Forged(2, other, schemaVersion: 1, new AccountState("mallory", 999m, false)), default);
        var handler = Handler(sut.Store, snapshots, Policy(every: 2));

        Assert.Equal(new LoadedState<AccountState>(new AccountState("ada", 30m, false), 2), await handler.LoadAsync(Account));
        Assert.Equal(1, counters["cairn.snapshots.ignored|history_changed"]);
    }

    [Fact]
    public async Task a_snapshot_that_folded_events_hidden_since_is_ignored()
    {
        await using var sut = await CreateAsync();
        var snapshots = snapshotStore(sut.Store);
        using var counters = new SnapshotCounters(_kind);
        var handler = Handler(sut.Store, snapshots, Policy(every: 2));
        await handler.HandleAsync(Account, new OpenAccount("ada"));
        await handler.HandleAsync(Account, new Deposit(10m));
        await handler.HandleAsync(Account, new Deposit(20m));
        await handler.HandleAsync(Account, new Deposit(30m));
        await handler.HandleAsync(Account, new Deposit(40m));
        Assert.Equal(3, (await snapshots.LoadAsync(Account, _kind, default))!.StreamVersion);

        await sut.Store.SetStreamMetadataAsync(Account, new StreamMetadata { TruncateBefore = 2 }, default);

        // With or without snapshots, a load is the fold of the events the stream shows.
        var expected = await Plain(sut.Store).LoadAsync(Account);
        Assert.Equal(new LoadedState<AccountState>(new AccountState(null, 90m, false), 4), expected);
        Assert.Equal(expected, await handler.LoadAsync(Account));
        Assert.Equal(1, counters["cairn.snapshots.ignored|history_changed"]);

        // A snapshot taken from the shorter history is used. (The account's opening is hidden: it takes no command.)
        await sut.Store.AppendToStreamAsync(Account, ExpectedVersion.Exactly(4), [Event(new Deposited(50m))]);
        var snapshot = await handler.TakeSnapshotAsync(Account);
        Assert.Equal((5L, 2L), (snapshot!.StreamVersion, snapshot.FirstVersion));
        Assert.Equal(2, counters["cairn.snapshots.ignored|history_changed"]);
        var used = counters["cairn.snapshots.used"];
        Assert.Equal(await Plain(sut.Store).LoadAsync(Account), await handler.LoadAsync(Account));
        Assert.Equal(2, counters["cairn.snapshots.ignored|history_changed"]);
        Assert.Equal(used + 1, counters["cairn.snapshots.used"]);
    }

    [Fact]
    public async Task a_stream_deleted_and_started_again_does_not_inherit_its_old_snapshot()
    {
        await using var sut = await CreateAsync();
        var snapshots = snapshotStore(sut.Store);
        using var counters = new SnapshotCounters(_kind);
        var handler = Handler(sut.Store, snapshots, Policy(every: 2));
        await handler.HandleAsync(Account, new OpenAccount("ada"));
        await handler.HandleAsync(Account, new Deposit(10m));
        Assert.Equal(1, (await snapshots.LoadAsync(Account, _kind, default))!.StreamVersion);

        // Deleted, then started again by another writer: its new first event directly follows the snapshot's.
        await sut.Store.DeleteStreamAsync(Account, ExpectedVersion.Any, default);
        await sut.Store.AppendToStreamAsync(Account, ExpectedVersion.NoStream, [Event(new AccountOpened("bob"))]);

        var loaded = await handler.LoadAsync(Account);

        Assert.Equal(new LoadedState<AccountState>(new AccountState("bob", 0m, false), 2), loaded);
        Assert.Equal(loaded, await Plain(sut.Store).LoadAsync(Account));
        Assert.Equal(1, counters["cairn.snapshots.ignored|history_changed"]);
    }

    [Fact]
    public async Task a_deleted_stream_ignores_and_drops_its_snapshot()
    {
        await using var sut = await CreateAsync();
        var snapshots = snapshotStore(sut.Store);
        using var counters = new SnapshotCounters(_kind);
        var handler = Handler(sut.Store, snapshots, Policy(every: 2));
        await handler.HandleAsync(Account, new OpenAccount("ada"));
        await handler.HandleAsync(Account, new Deposit(10m));
        await sut.Store.DeleteStreamAsync(Account, ExpectedVersion.Any, default);

        Assert.Equal(new LoadedState<AccountState>(AccountState.Initial, null), await handler.LoadAsync(Account));
        Assert.Equal(1, counters["cairn.snapshots.ignored|beyond_stream"]);
        Assert.Null(await snapshots.LoadAsync(Account, _kind, default));

        // Opened again, it starts from nothing and snapshots its new history.
        await handler.HandleAsync(Account, new OpenAccount("bob"));
        await handler.HandleAsync(Account, new Deposit(5m));
        Assert.Equal(new LoadedState<AccountState>(new AccountState("bob", 5m, false), 3), await handler.LoadAsync(Account));
        var snapshot = await snapshots.LoadAsync(Account, _kind, default);
        Assert.Equal((3L, 2L), (snapshot!.StreamVersion, snapshot.FirstVersion));
    }

    // ---- as of a version or a time ----

    [Fact]
    public async Task the_state_as_of_a_version_uses_only_a_snapshot_taken_at_or_before_it()
    {
        await using var sut = await CreateAsync();
        var snapshots = snapshotStore(sut.Store);
        var counting = new CountingDecider();
        var handler = Handler(sut.Store, snapshots, Policy(every: null), counting.Decider);
        await handler.HandleAsync(Account, new OpenAccount("ada"));
        for (var i = 1; i <= 5; i++)
        {
            await handler.HandleAsync(Account, new Deposit(i));
        }

        await handler.TakeSnapshotAsync(Account); // at version 5
        await handler.HandleAsync(Account, new Deposit(6m));
        await handler.HandleAsync(Account, new Deposit(7m));
        var plain = Plain(sut.Store);

        foreach (var (version, evolved) in new (long, int)[] { (0, 1), (3, 4), (4, 5), (5, 0), (6, 1), (7, 2), (99, 2) })
        {
            counting.Reset();
            var loaded = await handler.LoadAsOfVersionAsync(Account, version);
            Assert.Equal(await plain.LoadAsOfVersionAsync(Account, version), loaded);
            Assert.Equal(evolved, counting.Evolved);
        }

        Assert.Equal(new LoadedState<AccountState>(new AccountState("ada", 10m, false), 4), await handler.LoadAsOfVersionAsync(Account, 4));
        Assert.Equal(new LoadedState<AccountState>(new AccountState("ada", 21m, false), 6), await handler.LoadAsOfVersionAsync(Account, 6));
    }

    [Fact]
    public async Task the_state_as_of_a_time_never_uses_a_snapshot()
    {
        var clock = new ManualTimeProvider();
        await using var sut = await CreateAsync(new EventStoreOptions { TimeProvider = clock });
        var snapshots = snapshotStore(sut.Store);
        var counting = new CountingDecider();
        var handler = Handler(sut.Store, snapshots, Policy(every: 2), counting.Decider);
        var t0 = clock.GetUtcNow();
        await handler.HandleAsync(Account, new OpenAccount("ada"));
        clock.Advance(TimeSpan.FromHours(1));
        await handler.HandleAsync(Account, new Deposit(10m));
        clock.Advance(TimeSpan.FromHours(1));
        await handler.HandleAsync(Account, new Deposit(20m));
        Assert.NotNull(await snapshots.LoadAsync(Account, _kind, default));

        counting.Reset();
        Assert.Equal(new LoadedState<AccountState>(new AccountState("ada", 10m, false), 1), await handler.LoadAsOfTimeAsync(Account, t0.AddMinutes(90)));
        Assert.Equal(2, counting.Evolved);
        counting.Reset();
        Assert.Equal(new LoadedState<AccountState>(new AccountState("ada", 30m, false), 2), await handler.LoadAsOfTimeAsync(Account, t0.AddHours(2)));
        Assert.Equal(3, counting.Evolved);
    }

    // ---- concurrency and failures ----

    [Fact]
    public async Task a_command_racing_a_writer_that_took_a_snapshot_is_decided_again_on_the_new_state()
    {
        await using var sut = await CreateAsync();
        var snapshots = snapshotStore(sut.Store);
        var handler = Handler(sut.Store, snapshots, Policy(every: 2));
        await handler.HandleAsync(Account, new OpenAccount("ada"));
        await handler.HandleAsync(Account, new Deposit(100m));

        // Between this handler's read and its append, another one withdraws 80 and snapshots version 3.
        var interfering = new InterferingEventStore(sut.Store, 1, async inner =>
        {
            var other = Handler(inner, snapshots, Policy(every: 2));
            await other.HandleAsync(Account, new Withdraw(50m));
            await other.HandleAsync(Account, new Withdraw(30m));
        });
        var racing = Handler(interfering, snapshots, Policy(every: 2));

        var result = await racing.HandleAsync(Account, new Withdraw(15m));

        Assert.Equal(2, result.Attempts);
        Assert.Equal(5m, result.State.Balance);
        Assert.Equal(new LoadedState<AccountState>(new AccountState("ada", 5m, false), 4), await handler.LoadAsync(Account));
        Assert.Equal(await Plain(sut.Store).LoadAsync(Account), await handler.LoadAsync(Account));
        Assert.Equal(3, (await snapshots.LoadAsync(Account, _kind, default))!.StreamVersion);
    }

    [Fact]
    public async Task concurrent_commands_with_snapshots_fold_every_event_exactly_once()
    {
        await using var sut = await CreateAsync();
        var snapshots = snapshotStore(sut.Store);
        var setup = Handler(sut.Store, snapshots, Policy(every: 3));
        await setup.HandleAsync(Account, new OpenAccount("ada"));
        const int writers = 4, deposits = 15;

        await Task.WhenAll(Enumerable.Range(0, writers).Select(w => Task.Run(async () =>
        {
            var handler = Handler(sut.Store, snapshots, Policy(every: 3), maxConflictRetries: 1000);
            for (var i = 0; i < deposits; i++)
            {
                await handler.HandleAsync(Account, new Deposit(1m));
            }
        })));

        var expected = new LoadedState<AccountState>(new AccountState("ada", writers * deposits, false), writers * deposits);
        Assert.Equal(expected, await Plain(sut.Store).LoadAsync(Account));
        Assert.Equal(expected, await setup.LoadAsync(Account));

        // The stored snapshot is the exact fold at its version, whichever writer saved it.
        var snapshot = await snapshots.LoadAsync(Account, _kind, default);
        Assert.True(snapshot!.StreamVersion >= writers * deposits - 2, $"The latest snapshot is at {snapshot.StreamVersion}.");
        Assert.Equal((await Plain(sut.Store).LoadAsOfVersionAsync(Account, snapshot.StreamVersion)).State, Deserialize(snapshot));
        Assert.Equal(await PositionOfAsync(sut.Store, snapshot.StreamVersion), snapshot.Position);
    }

    [Fact]
    public async Task a_snapshot_that_fails_to_save_does_not_fail_the_command()
    {
        await using var sut = await CreateAsync();
        var inner = snapshotStore(sut.Store);
        using var counters = new SnapshotCounters(_kind);
        var failing = new FailingSnapshotStore(inner) { FailSaves = true };
        var handler = Handler(sut.Store, failing, Policy(every: 1));

        var opened = await handler.HandleAsync(Account, new OpenAccount("ada"));
        var deposited = await handler.HandleAsync(Account, new Deposit(10m));

        Assert.Equal(new AccountState("ada", 10m, false), deposited.State);
        Assert.Equal(1, deposited.Append!.NextExpectedVersion);
        Assert.NotNull(opened.Append);
        Assert.Equal(2, failing.SaveAttempts);
        Assert.Null(await inner.LoadAsync(Account, _kind, default));
        Assert.Equal(0, counters["cairn.snapshots.taken"]);

        // On demand, the caller asked for it: the failure is its to see.
        await Assert.ThrowsAsync<IOException>(() => handler.TakeSnapshotAsync(Account));
    }

    [Fact]
    public async Task a_snapshot_store_that_fails_to_load_leaves_the_state_folded_from_every_event()
    {
        await using var sut = await CreateAsync();
        var inner = snapshotStore(sut.Store);
        using var counters = new SnapshotCounters(_kind);
        await SeedAsync(sut.Store);
        var handler = Handler(sut.Store, new FailingSnapshotStore(inner) { FailLoads = true }, Policy(every: 1));

        Assert.Equal(new LoadedState<AccountState>(new AccountState("ada", 30m, false), 2), await handler.LoadAsync(Account));
        var result = await handler.HandleAsync(Account, new Deposit(1m));

        Assert.Equal(new AccountState("ada", 31m, false), result.State);
        // The load, the command's load, and the load of what the command's snapshot is taken from.
        Assert.Equal(3, counters["cairn.snapshots.ignored|unreadable"]);
        Assert.Equal(3, (await inner.LoadAsync(Account, _kind, default))!.StreamVersion);
    }

    // ---- the snapshot store ----

    [Fact]
    public async Task a_missing_snapshot_reads_as_null_and_deletes_as_false()
    {
        await using var sut = await CreateAsync();
        var snapshots = snapshotStore(sut.Store);

        Assert.Null(await snapshots.LoadAsync(Account, _kind, default));
        Assert.False(await snapshots.DeleteAsync(Account, _kind, default));
    }

    [Fact]
    public async Task a_saved_snapshot_reads_back_whole()
    {
        await using var sut = await CreateAsync();
        var snapshots = snapshotStore(sut.Store);
        var data = new byte[100_000];
        new Random(7).NextBytes(data);
        var saved = new StoredSnapshot("konto-ü プ", _kind, long.MaxValue - 1, 3, new GlobalPosition(long.MaxValue), int.MaxValue, data);

        Assert.True(await snapshots.SaveAsync(saved, default));
        data[0] ^= 0xFF; // the store keeps its own copy

        var loaded = await snapshots.LoadAsync("konto-ü プ", _kind, default);
        Assert.NotNull(loaded);
        Assert.Equal(
            (saved.Stream, saved.Kind, saved.StreamVersion, saved.FirstVersion, saved.Position, saved.SchemaVersion),
            (loaded.Stream, loaded.Kind, loaded.StreamVersion, loaded.FirstVersion, loaded.Position, loaded.SchemaVersion));
        data[0] ^= 0xFF;
        Assert.Equal(data, loaded.Data.ToArray());

        Assert.True(await snapshots.SaveAsync(saved with { StreamVersion = 0, FirstVersion = 0, Data = Array.Empty<byte>(), Stream = "account-empty" }, default));
        Assert.True((await snapshots.LoadAsync("account-empty", _kind, default))!.Data.IsEmpty);
    }

    [Fact]
    public async Task an_older_snapshot_never_replaces_a_newer_one()
    {
        await using var sut = await CreateAsync();
        var snapshots = snapshotStore(sut.Store);

        Assert.True(await snapshots.SaveAsync(Raw(5, "five"), default));
        Assert.False(await snapshots.SaveAsync(Raw(3, "three"), default));
        Assert.Equal("five", Text(await snapshots.LoadAsync(Account, _kind, default)));

        // The same version replaces (a new schema version, say); a later one too.
        Assert.True(await snapshots.SaveAsync(Raw(5, "five again") with { SchemaVersion = 2 }, default));
        Assert.Equal(("five again", 2), (Text(await snapshots.LoadAsync(Account, _kind, default)), (await snapshots.LoadAsync(Account, _kind, default))!.SchemaVersion));
        Assert.True(await snapshots.SaveAsync(Raw(8, "eight"), default));
        Assert.Equal("eight", Text(await snapshots.LoadAsync(Account, _kind, default)));
    }

    [Fact]
    public async Task concurrent_saves_keep_the_latest_version()
    {
        await using var sut = await CreateAsync();
        var snapshots = snapshotStore(sut.Store);

        await Task.WhenAll(Enumerable.Range(0, 50).Select(i => Task.Run(async () => await snapshots.SaveAsync(Raw(i, "v" + i), default))));

        var loaded = await snapshots.LoadAsync(Account, _kind, default);
        Assert.Equal((49L, "v49"), (loaded!.StreamVersion, Text(loaded)));
    }

    [Fact]
    public async Task snapshots_are_kept_per_stream_and_kind()
    {
        await using var sut = await CreateAsync();
        var snapshots = snapshotStore(sut.Store);
        await snapshots.SaveAsync(Raw(1, "a1"), default);
        await snapshots.SaveAsync(Raw(2, "a2") with { Kind = _kind + ".summary" }, default);
        await snapshots.SaveAsync(Raw(3, "b") with { Stream = "account-2" }, default);
        await snapshots.SaveAsync(Raw(4, "A") with { Kind = _kind.ToUpperInvariant() }, default);

        Assert.Equal("a1", Text(await snapshots.LoadAsync(Account, _kind, default)));
        Assert.Equal("a2", Text(await snapshots.LoadAsync(Account, _kind + ".summary", default)));
        Assert.Equal("b", Text(await snapshots.LoadAsync("account-2", _kind, default)));
        Assert.Equal("A", Text(await snapshots.LoadAsync(Account, _kind.ToUpperInvariant(), default)));

        Assert.True(await snapshots.DeleteAsync(Account, _kind, default));
        Assert.Null(await snapshots.LoadAsync(Account, _kind, default));
        Assert.Equal("a2", Text(await snapshots.LoadAsync(Account, _kind + ".summary", default)));
        Assert.Equal("b", Text(await snapshots.LoadAsync("account-2", _kind, default)));
        Assert.False(await snapshots.DeleteAsync(Account, _kind, default));

        // Deleted, any version may be saved again.
        Assert.True(await snapshots.SaveAsync(Raw(0, "again"), default));
    }

    // ---- bad input ----

    [Theory]
    [InlineData("")]
    [InlineData("has space")]
    [InlineData("a/b")]
    [InlineData("tab\there")]
    [InlineData("ünïcode")]
    public async Task a_bad_kind_is_refused_with_a_typed_error(string kind)
    {
        await using var sut = await CreateAsync();
        var snapshots = snapshotStore(sut.Store);

        var ex = Assert.Throws<InvalidSnapshotKindException>(() => Handler(sut.Store, snapshots, new SnapshotPolicy { Kind = kind }));
        Assert.Equal(kind, ex.Kind);
        await Assert.ThrowsAsync<InvalidSnapshotKindException>(async () => await snapshots.SaveAsync(Raw(1, "x") with { Kind = kind }, default));
        await Assert.ThrowsAsync<InvalidSnapshotKindException>(async () => await snapshots.LoadAsync(Account, kind, default));
        await Assert.ThrowsAsync<InvalidSnapshotKindException>(async () => await snapshots.DeleteAsync(Account, kind, default));
        Assert.Throws<InvalidSnapshotKindException>(() => Handler(sut.Store, snapshots, new SnapshotPolicy { Kind = new string('k', SnapshotKinds.MaxLength + 1) }));
        Assert.Throws<InvalidSnapshotKindException>(() => Handler(sut.Store, snapshots, new SnapshotPolicy { Kind = null! }));
    }

    [Fact]
    public async Task impossible_policies_are_refused_with_typed_errors()
    {
        await using var sut = await CreateAsync();
        var snapshots = snapshotStore(sut.Store);

        Assert.Equal("SchemaVersion", Assert.Throws<ArgumentOutOfRangeException>(() => Handler(sut.Store, snapshots, Policy(every: 1, schemaVersion: 0))).ParamName);
        Assert.Equal("SchemaVersion", Assert.Throws<ArgumentOutOfRangeException>(() => Handler(sut.Store, snapshots, Policy(every: 1, schemaVersion: -3))).ParamName);
        Assert.Equal("Every", Assert.Throws<ArgumentOutOfRangeException>(() => Handler(sut.Store, snapshots, Policy(every: 0))).ParamName);
        Assert.Equal("Every", Assert.Throws<ArgumentOutOfRangeException>(() => Handler(sut.Store, snapshots, Policy(every: -1))).ParamName);

        // A policy needs a store, and a store a policy.
        Assert.Throws<ArgumentException>(() => new DeciderHandler<AccountCommand, AccountState, AccountEvent>(
            sut.Store, BankAccount.Serializer(), BankAccount.Decider, new DeciderHandlerOptions { Snapshots = Policy(every: 1) }));
        Assert.Throws<ArgumentException>(() => new DeciderHandler<AccountCommand, AccountState, AccountEvent>(
            sut.Store, snapshots, BankAccount.Serializer(), BankAccount.Decider, new DeciderHandlerOptions()));
        Assert.Throws<ArgumentNullException>(() => new DeciderHandler<AccountCommand, AccountState, AccountEvent>(
            sut.Store, null!, BankAccount.Serializer(), BankAccount.Decider, new DeciderHandlerOptions { Snapshots = Policy(every: 1) }));

        // State the JSON options cannot write.
        var ex = Assert.Throws<SnapshotSerializationException>(() => Handler(sut.Store, snapshots, Policy(every: 1) with
        {
            JsonOptions = new JsonSerializerOptions { TypeInfoResolver = JsonTypeInfoResolver.Combine() },
        }));
        Assert.Equal(typeof(AccountState), ex.StateType);

        // No snapshots on demand from a handler without a policy.
        await Assert.ThrowsAsync<InvalidOperationException>(() => Plain(sut.Store).TakeSnapshotAsync(Account));
    }

    [Fact]
    public async Task impossible_snapshots_are_refused_and_nothing_is_stored()
    {
        await using var sut = await CreateAsync();
        var snapshots = snapshotStore(sut.Store);

        Assert.Equal("StreamVersion", (await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await snapshots.SaveAsync(Raw(-1, "x") with { FirstVersion = 0 }, default))).ParamName);
        Assert.Equal("FirstVersion", (await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await snapshots.SaveAsync(Raw(2, "x") with { FirstVersion = 3 }, default))).ParamName);
        Assert.Equal("FirstVersion", (await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await snapshots.SaveAsync(Raw(2, "x") with { FirstVersion = -1 }, default))).ParamName);
        Assert.Equal("SchemaVersion", (await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await snapshots.SaveAsync(Raw(2, "x") with { SchemaVersion = 0 }, default))).ParamName);
        await Assert.ThrowsAsync<InvalidStreamNameException>(async () => await snapshots.SaveAsync(Raw(2, "x") with { Stream = default }, default));
        await Assert.ThrowsAsync<ArgumentNullException>(async () => await snapshots.SaveAsync(null!, default));

        Assert.Null(await snapshots.LoadAsync(Account, _kind, default));
    }

    // ---- helpers ----

    private SnapshotPolicy Policy(int? every, int schemaVersion = 1) => new() { Kind = _kind, SchemaVersion = schemaVersion, Every = every };

    private static DeciderHandler<AccountCommand, AccountState, AccountEvent> Handler(
        IEventStore store,
        ISnapshotStore snapshots,
        SnapshotPolicy policy,
        Decider<AccountCommand, AccountState, AccountEvent>? decider = null,
        int maxConflictRetries = 3) =>
        new(store, snapshots, BankAccount.Serializer(), decider ?? BankAccount.Decider, new DeciderHandlerOptions { Snapshots = policy, MaxConflictRetries = maxConflictRetries });

    /// <summary>A handler without snapshots: the reference every snapshot load must agree with.</summary>
    private static DeciderHandler<AccountCommand, AccountState, AccountEvent> Plain(IEventStore store) =>
        new(store, BankAccount.Serializer(), BankAccount.Decider);

    /// <summary>Deposits decided as two events each, for appends of more than one event.</summary>
    private static Decider<AccountCommand, AccountState, AccountEvent> TwoDepositsDecider { get; } = BankAccount.Decider with
    {
        Decide = (command, state) => command is Deposit d
            ? [new Deposited(d.Amount / 2), new Deposited(d.Amount / 2)]
            : BankAccount.Decider.Decide(command, state),
    };

    /// <summary>Opens the account, deposits 10 and 20: versions 0 to 2, written without snapshots.</summary>
    private static async Task SeedAsync(IEventStore store)
    {
        var plain = Plain(store);
        await plain.HandleAsync(Account, new OpenAccount("ada"));
        await plain.HandleAsync(Account, new Deposit(10m));
        await plain.HandleAsync(Account, new Deposit(20m));
    }

    private static EventData Event(AccountEvent e) => BankAccount.Serializer().ToEventData(e);

    private static async Task<GlobalPosition> PositionOfAsync(IEventStore store, long version) =>
        (await store.ReadStreamAsync(Account, ReadDirection.Forwards, version, 1, default).SingleAsync()).Position;

    private StoredSnapshot Forged(long version, GlobalPosition position, int schemaVersion, AccountState state) =>
        new(Account, _kind, version, 0, position, schemaVersion, JsonSerializer.SerializeToUtf8Bytes(state, BankAccount.Serializer().Options));

    private StoredSnapshot Raw(long version, string text) =>
        new(Account, _kind, version, 0, new GlobalPosition(version + 1), 1, Encoding.UTF8.GetBytes(text));

    private static string? Text(StoredSnapshot? snapshot) => snapshot is null ? null : Encoding.UTF8.GetString(snapshot.Data.Span);

    private static AccountState? Deserialize(StoredSnapshot snapshot) =>
        JsonSerializer.Deserialize<AccountState>(snapshot.Data.Span, BankAccount.Serializer().Options);

    /// <summary>The bank account decider, counting the events it folds.</summary>
    private sealed class CountingDecider
    {
        private int _evolved;

        public CountingDecider() =>
            Decider = BankAccount.Decider with
            {
                Evolve = (state, e) =>
                {
                    Interlocked.Increment(ref _evolved);
                    return BankAccount.Decider.Evolve(state, e);
                },
            };

        public Decider<AccountCommand, AccountState, AccountEvent> Decider { get; }

        public int Evolved => Volatile.Read(ref _evolved);

        public void Reset() => Interlocked.Exchange(ref _evolved, 0);
    }

    /// <summary>A snapshot store whose saves or loads fail, as a full disk or a lost connection would make them.</summary>
    private sealed class FailingSnapshotStore(ISnapshotStore inner) : ISnapshotStore
    {
        private int _saveAttempts;

        public bool FailSaves { get; init; }

        public bool FailLoads { get; init; }

        public int SaveAttempts => Volatile.Read(ref _saveAttempts);

        public ValueTask<bool> SaveAsync(StoredSnapshot snapshot, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _saveAttempts);
            return FailSaves ? throw new IOException("The disk is full.") : inner.SaveAsync(snapshot, cancellationToken);
        }

        public ValueTask<StoredSnapshot?> LoadAsync(StreamName stream, string kind, CancellationToken cancellationToken) =>
            FailLoads ? throw new IOException("The connection was lost.") : inner.LoadAsync(stream, kind, cancellationToken);

        public ValueTask<bool> DeleteAsync(StreamName stream, string kind, CancellationToken cancellationToken) =>
            inner.DeleteAsync(stream, kind, cancellationToken);
    }

    /// <summary>The snapshot counters recorded for one kind, keyed by name and, for ignored ones, <c>|reason</c>.</summary>
    private sealed class SnapshotCounters : IDisposable
    {
        private readonly MeterListener _listener = new();
        private readonly ConcurrentDictionary<string, long> _totals = new();

        public SnapshotCounters(string kind)
        {
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Name == CairnDiagnostics.DomainName)
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            };
            _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
            {
                string? measuredKind = null, reason = null;
                foreach (var tag in tags)
                {
                    if (tag.Key == "kind")
                    {
                        measuredKind = tag.Value as string;
                    }
                    else if (tag.Key == "reason")
                    {
                        reason = tag.Value as string;
                    }
                }

                if (measuredKind == kind)
                {
                    _totals.AddOrUpdate(reason is null ? instrument.Name : instrument.Name + "|" + reason, value, (_, total) => total + value);
                }
            });
            _listener.Start();
        }

        public long this[string key] => _totals.GetValueOrDefault(key);

        /// <summary>Every snapshot ignored, whatever the reason.</summary>
        public long Ignored => _totals.Where(t => t.Key.StartsWith("cairn.snapshots.ignored", StringComparison.Ordinal)).Sum(t => t.Value);

        public void Dispose() => _listener.Dispose();
    }
}
