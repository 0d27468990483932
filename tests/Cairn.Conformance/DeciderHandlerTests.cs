using Cairn.Conformance.Support;
using Cairn.Domain;
using Cairn.EventStore;

namespace Cairn.Conformance;

/// <summary>Commands handled with a decider against a real store.</summary>
public abstract class DeciderHandlerTests<TFixture>(TFixture fixture) : StoreTests<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    private static DeciderHandler<AccountCommand, AccountState, AccountEvent> Handler(IEventStore store, int maxConflictRetries = 3) =>
        new(store, BankAccount.Serializer(), BankAccount.Decider, new DeciderHandlerOptions { MaxConflictRetries = maxConflictRetries });

    [Fact]
    public async Task commands_are_decided_on_the_stored_state_and_their_events_appended()
    {
        await using var sut = await CreateAsync();
        var handler = Handler(sut.Store);

        var opened = await handler.HandleAsync("account-1", new OpenAccount("ada"));
        await handler.HandleAsync("account-1", new Deposit(100m));
        var withdrawn = await handler.HandleAsync("account-1", new Withdraw(30m));

        Assert.Equal(new AccountOpened("ada"), Assert.Single(opened.Events));
        Assert.Equal(new AccountState("ada", 70m, false), withdrawn.State);
        Assert.Equal(1, withdrawn.Attempts);
        Assert.Equal(2, withdrawn.Append!.NextExpectedVersion);

        var stored = await sut.Store.ReadStreamAsync("account-1").ToListAsync();
        Assert.Equal(["account.opened", "account.deposited", "account.withdrawn"], stored.Select(e => e.Type));
        Assert.Equal(new LoadedState<AccountState>(new AccountState("ada", 70m, false), 2), await handler.LoadAsync("account-1"));
    }

    [Fact]
    public async Task a_refused_command_writes_nothing()
    {
        await using var sut = await CreateAsync();
        var handler = Handler(sut.Store);
        await handler.HandleAsync("account-1", new OpenAccount("ada"));
        var before = await SnapshotAsync(sut.Store, "account-1");

        await Assert.ThrowsAsync<AccountRuleException>(() => handler.HandleAsync("account-1", new Withdraw(1m)));

        await AssertNothingWrittenAsync(sut.Store, before, "account-1");
    }

    [Fact]
    public async Task a_command_that_decides_nothing_appends_nothing()
    {
        await using var sut = await CreateAsync();
        var handler = Handler(sut.Store);
        await handler.HandleAsync("account-1", new OpenAccount("ada"));
        var before = await SnapshotAsync(sut.Store, "account-1");

        var again = await handler.HandleAsync("account-1", new OpenAccount("ada"));

        Assert.Empty(again.Events);
        Assert.Null(again.Append);
        await AssertNothingWrittenAsync(sut.Store, before, "account-1");
    }

    [Fact]
    public async Task a_command_racing_another_writer_is_decided_again_on_the_new_state()
    {
        await using var sut = await CreateAsync();
        var handler = Handler(sut.Store);
        await handler.HandleAsync("account-1", new OpenAccount("ada"));
        await handler.HandleAsync("account-1", new Deposit(100m));

        // Between this handler's read and its append, another handler withdraws 80.
        var interfering = new InterferingEventStore(sut.Store, 1, inner => Handler(inner).HandleAsync("account-1", new Withdraw(80m)));
        var racing = Handler(interfering);

        var result = await racing.HandleAsync("account-1", new Withdraw(15m));

        Assert.Equal(2, result.Attempts);
        Assert.Equal(5m, result.State.Balance);
        Assert.Equal(5m, (await handler.LoadAsync("account-1")).State.Balance);

        // Decided again on the new state, the same command can now be refused.
        var refusing = Handler(new InterferingEventStore(sut.Store, 1, inner => Handler(inner).HandleAsync("account-1", new Withdraw(5m))));
        await Assert.ThrowsAsync<AccountRuleException>(() => refusing.HandleAsync("account-1", new Withdraw(1m)));
        Assert.Equal(0m, (await handler.LoadAsync("account-1")).State.Balance);
    }

    [Fact]
    public async Task the_state_as_of_a_version_folds_the_events_up_to_it()
    {
        await using var sut = await CreateAsync();
        var handler = Handler(sut.Store);
        await handler.HandleAsync("account-1", new OpenAccount("ada"));
        await handler.HandleAsync("account-1", new Deposit(10m));
        await handler.HandleAsync("account-1", new Deposit(20m));

        Assert.Equal(new LoadedState<AccountState>(new AccountState("ada", 0m, false), 0), await handler.LoadAsOfVersionAsync("account-1", 0));
        Assert.Equal(new LoadedState<AccountState>(new AccountState("ada", 10m, false), 1), await handler.LoadAsOfVersionAsync("account-1", 1));
        Assert.Equal(new LoadedState<AccountState>(new AccountState("ada", 30m, false), 2), await handler.LoadAsOfVersionAsync("account-1", 99));
    }

    [Fact]
    public async Task the_state_as_of_a_time_folds_the_events_committed_by_then()
    {
        var clock = new ManualTimeProvider();
        await using var sut = await CreateAsync(new EventStoreOptions { TimeProvider = clock });
        var handler = Handler(sut.Store);
        var t0 = clock.GetUtcNow();
        await handler.HandleAsync("account-1", new OpenAccount("ada"));
        clock.Advance(TimeSpan.FromHours(1));
        await handler.HandleAsync("account-1", new Deposit(10m));
        clock.Advance(TimeSpan.FromHours(1));
        await handler.HandleAsync("account-1", new Deposit(20m));

        Assert.Equal(new LoadedState<AccountState>(AccountState.Initial, null), await handler.LoadAsOfTimeAsync("account-1", t0.AddSeconds(-1)));
        Assert.Equal(new LoadedState<AccountState>(new AccountState("ada", 0m, false), 0), await handler.LoadAsOfTimeAsync("account-1", t0));
        Assert.Equal(new LoadedState<AccountState>(new AccountState("ada", 10m, false), 1), await handler.LoadAsOfTimeAsync("account-1", t0.AddMinutes(119)));
        Assert.Equal(new LoadedState<AccountState>(new AccountState("ada", 30m, false), 2), await handler.LoadAsOfTimeAsync("account-1", t0.AddHours(2)));
    }
}
