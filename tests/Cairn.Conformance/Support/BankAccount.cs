using Cairn.Domain;
using Cairn.Serialization;

namespace Cairn.Conformance.Support;

/// <summary>A bank account's events.</summary>
public abstract record AccountEvent;

[EventType("account.opened")]
public sealed record AccountOpened(string Owner) : AccountEvent;

[EventType("account.deposited")]
public sealed record Deposited(decimal Amount) : AccountEvent;

[EventType("account.withdrawn")]
public sealed record Withdrawn(decimal Amount) : AccountEvent;

[EventType("account.closed")]
public sealed record AccountClosed : AccountEvent;

/// <summary>A bank account's commands.</summary>
public abstract record AccountCommand;

public sealed record OpenAccount(string Owner) : AccountCommand;

public sealed record Deposit(decimal Amount) : AccountCommand;

public sealed record Withdraw(decimal Amount) : AccountCommand;

public sealed record CloseAccount : AccountCommand;

/// <summary>A bank account's state.</summary>
public sealed record AccountState(string? Owner, decimal Balance, bool Closed)
{
    public static AccountState Initial { get; } = new(null, 0m, false);

    public bool IsOpen => Owner is not null && !Closed;
}

/// <summary>A command the account refuses.</summary>
public sealed class AccountRuleException(string message) : Exception(message);

/// <summary>The bank account decider used by the decider tests.</summary>
public static class BankAccount
{
    public static Decider<AccountCommand, AccountState, AccountEvent> Decider { get; } = new(Decide, Evolve, AccountState.Initial);

    /// <summary>A registry naming the account's events.</summary>
    public static EventTypeRegistry Registry() => new EventTypeRegistry()
        .Register<AccountOpened>()
        .Register<Deposited>()
        .Register<Withdrawn>()
        .Register<AccountClosed>();

    /// <summary>A serializer for the account's events.</summary>
    public static EventSerializer Serializer() => new(Registry());

    /// <summary>Handler options that snapshot every second version, as kind <c>account</c>.</summary>
    public static DeciderHandlerOptions Snapshotted { get; } = new() { Snapshots = new SnapshotPolicy { Kind = "account", SchemaVersion = 1, Every = 2 } };

    /// <summary>An account decider over another state shape: opening and deposits only, folded by the functions given.</summary>
    public static Decider<AccountCommand, TState, AccountEvent> DeciderOf<TState>(Func<TState, string, TState> opened, Func<TState, decimal, TState> deposited, TState initial) =>
        new(
            (command, _) => command switch
            {
                OpenAccount open => [new AccountOpened(open.Owner)],
                Deposit deposit => [new Deposited(deposit.Amount)],
                _ => [],
            },
            (state, e) => e switch
            {
                AccountOpened o => opened(state, o.Owner),
                Deposited d => deposited(state, d.Amount),
                _ => state,
            },
            initial);

    private static IEnumerable<AccountEvent> Decide(AccountCommand command, AccountState state) => command switch
    {
        OpenAccount open when state.Owner == open.Owner => [],
        OpenAccount when state.Owner is not null => throw new AccountRuleException("The account is already open."),
        OpenAccount open => [new AccountOpened(open.Owner)],
        _ when !state.IsOpen => throw new AccountRuleException("The account is not open."),
        Deposit { Amount: <= 0 } => throw new AccountRuleException("A deposit must be positive."),
        Deposit deposit => [new Deposited(deposit.Amount)],
        Withdraw { Amount: <= 0 } => throw new AccountRuleException("A withdrawal must be positive."),
        Withdraw withdraw when withdraw.Amount > state.Balance => throw new AccountRuleException("Insufficient funds."),
        Withdraw withdraw => [new Withdrawn(withdraw.Amount)],
        CloseAccount when state.Balance != 0 => throw new AccountRuleException("Only an empty account can be closed."),
        CloseAccount => [new AccountClosed()],
        _ => throw new ArgumentOutOfRangeException(nameof(command)),
    };

    private static AccountState Evolve(AccountState state, AccountEvent e) => e switch
    {
        AccountOpened opened => state with { Owner = opened.Owner },
        Deposited deposited => state with { Balance = state.Balance + deposited.Amount },
        Withdrawn withdrawn => state with { Balance = state.Balance - withdrawn.Amount },
        AccountClosed => state with { Closed = true },
        _ => state,
    };
}
