using Cairn.Conformance.Support;
using Cairn.Domain;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;

namespace Cairn.Tests.Domain;

public sealed class DeciderHandlerTests
{
    private static readonly StreamName Account = "account-1";

    private static DeciderHandler<AccountCommand, AccountState, AccountEvent> Handler(IEventStore store, int maxConflictRetries = 3) =>
        new(store, BankAccount.Serializer(), BankAccount.Decider, new DeciderHandlerOptions { MaxConflictRetries = maxConflictRetries });

    private static async Task<InMemoryEventStore> OpenedWithAsync(decimal balance, EventStoreOptions? options = null)
    {
        var store = new InMemoryEventStore(options);
        var handler = Handler(store);
        await handler.HandleAsync(Account, new OpenAccount("ada"));
        await handler.HandleAsync(Account, new Deposit(balance));
        return store;
    }

    // A deposit by someone else, appended straight to the store between the handler's read and its write.
    private static Func<IEventStore, Task> ConcurrentDeposit(decimal amount) =>
        inner => inner.AppendToStreamAsync(Account, ExpectedVersion.Any, [BankAccount.Serializer().ToEventData(new Deposited(amount))]);

    [Fact]
    public async Task a_conflicting_append_is_retried_on_the_new_state()
    {
        var store = new InterferingEventStore(await OpenedWithAsync(10m), 1, ConcurrentDeposit(100m));

        var result = await Handler(store).HandleAsync(Account, new Withdraw(5m));

        Assert.Equal(2, result.Attempts);
        Assert.Equal(2, store.Appends);
        Assert.Equal(new Withdrawn(5m), Assert.Single(result.Events));
        Assert.Equal(105m, result.State.Balance);
        Assert.Equal(3, result.Append!.NextExpectedVersion);
        var stored = await store.ReadStreamAsync(Account).Select(e => e.Type).ToListAsync();
        Assert.Equal(["account.opened", "account.deposited", "account.deposited", "account.withdrawn"], stored);
    }

    [Fact]
    public async Task several_conflicts_in_a_row_are_retried_up_to_the_limit()
    {
        var store = new InterferingEventStore(await OpenedWithAsync(10m), 3, ConcurrentDeposit(1m));

        var result = await Handler(store, maxConflictRetries: 3).HandleAsync(Account, new Deposit(5m));

        Assert.Equal(4, result.Attempts);
        Assert.Equal(18m, result.State.Balance);
    }

    [Fact]
    public async Task the_handler_gives_up_after_max_conflict_retries_with_wrong_expected_version()
    {
        var store = new InterferingEventStore(await OpenedWithAsync(10m), int.MaxValue, ConcurrentDeposit(1m));

        var ex = await Assert.ThrowsAsync<WrongExpectedVersionException>(() => Handler(store, maxConflictRetries: 2).HandleAsync(Account, new Withdraw(5m)));

        Assert.Equal(Account, ex.Stream);
        Assert.Equal(3, store.Appends);
        var stored = await store.ReadStreamAsync(Account).Select(e => e.Type).ToListAsync();
        Assert.DoesNotContain("account.withdrawn", stored);
        Assert.Equal(5, stored.Count);
    }

    [Fact]
    public async Task with_no_retries_the_first_conflict_fails()
    {
        var store = new InterferingEventStore(await OpenedWithAsync(10m), 1, ConcurrentDeposit(1m));

        await Assert.ThrowsAsync<WrongExpectedVersionException>(() => Handler(store, maxConflictRetries: 0).HandleAsync(Account, new Withdraw(5m)));

        Assert.Equal(1, store.Appends);
    }

    [Fact]
    public async Task a_refusal_after_a_conflict_is_not_retried()
    {
        // The competing write empties the account: deciding again on the new state refuses the withdrawal.
        var store = new InterferingEventStore(await OpenedWithAsync(10m), int.MaxValue, inner => Handler(inner).HandleAsync(Account, new Withdraw(10m)));

        await Assert.ThrowsAsync<AccountRuleException>(() => Handler(store).HandleAsync(Account, new Withdraw(10m)));

        Assert.Equal(1, store.Appends);
    }

    [Fact]
    public void negative_max_conflict_retries_are_refused() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => Handler(new InMemoryEventStore(), maxConflictRetries: -1));

    [Fact]
    public async Task loading_a_missing_stream_gives_the_initial_state_and_no_version()
    {
        var loaded = await Handler(new InMemoryEventStore()).LoadAsync(Account);
        Assert.Equal(AccountState.Initial, loaded.State);
        Assert.Null(loaded.Version);
        Assert.Equal(ExpectedVersion.NoStream, loaded.ExpectedVersion);
    }

    [Fact]
    public async Task the_state_as_of_a_version_folds_the_events_up_to_it()
    {
        var store = await OpenedWithAsync(10m);
        var handler = Handler(store);
        await handler.HandleAsync(Account, new Withdraw(3m));

        Assert.Equal(new LoadedState<AccountState>(new AccountState("ada", 0m, false), 0), await handler.LoadAsOfVersionAsync(Account, 0));
        Assert.Equal(new LoadedState<AccountState>(new AccountState("ada", 10m, false), 1), await handler.LoadAsOfVersionAsync(Account, 1));
        Assert.Equal(new LoadedState<AccountState>(new AccountState("ada", 7m, false), 2), await handler.LoadAsOfVersionAsync(Account, 2));
        Assert.Equal(ExpectedVersion.Exactly(1), (await handler.LoadAsOfVersionAsync(Account, 1)).ExpectedVersion);
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => handler.LoadAsOfVersionAsync(Account, -1));
    }

    [Fact]
    public async Task the_state_as_of_a_time_folds_the_events_committed_by_then()
    {
        var clock = new ManualTimeProvider();
        var store = new InMemoryEventStore(new EventStoreOptions { TimeProvider = clock });
        var handler = Handler(store);
        var opened = clock.GetUtcNow();
        await handler.HandleAsync(Account, new OpenAccount("ada"));
        clock.Advance(TimeSpan.FromDays(1));
        await handler.HandleAsync(Account, new Deposit(10m));
        await handler.HandleAsync(Account, new Deposit(20m));
        clock.Advance(TimeSpan.FromDays(1));
        await handler.HandleAsync(Account, new Withdraw(5m));

        Assert.Null((await handler.LoadAsOfTimeAsync(Account, opened.AddTicks(-1))).Version);
        Assert.Equal(new LoadedState<AccountState>(new AccountState("ada", 0m, false), 0), await handler.LoadAsOfTimeAsync(Account, opened.AddHours(23)));
        Assert.Equal(new LoadedState<AccountState>(new AccountState("ada", 30m, false), 2), await handler.LoadAsOfTimeAsync(Account, opened.AddDays(1)));
        Assert.Equal(new LoadedState<AccountState>(new AccountState("ada", 25m, false), 3), await handler.LoadAsOfTimeAsync(Account, opened.AddYears(1)));
    }

    [Fact]
    public async Task a_stream_whose_events_are_all_hidden_still_loads_its_real_last_version()
    {
        var clock = new ManualTimeProvider();
        var store = await OpenedWithAsync(10m, new EventStoreOptions { TimeProvider = clock });
        await store.SetStreamMetadataAsync(Account, new StreamMetadata { MaxAge = TimeSpan.FromMinutes(1) }, default);
        clock.Advance(TimeSpan.FromMinutes(2));

        var loaded = await Handler(store).LoadAsync(Account);

        Assert.Equal(AccountState.Initial, loaded.State);
        Assert.Equal(1, loaded.Version);
    }

    [Fact]
    public async Task a_soft_deleted_stream_is_started_again_by_the_next_command()
    {
        var store = await OpenedWithAsync(10m);
        await store.DeleteStreamAsync(Account, ExpectedVersion.Any, default);
        var handler = Handler(store);

        var result = await handler.HandleAsync(Account, new OpenAccount("grace"));

        Assert.Equal(new AccountState("grace", 0m, false), result.State);
        Assert.Equal(2, result.Append!.Streams[0].FirstVersion);
        Assert.Equal(new LoadedState<AccountState>(new AccountState("grace", 0m, false), 2), await handler.LoadAsync(Account));
    }
}
