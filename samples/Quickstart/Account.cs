using Cairn.Domain;
using Cairn.Serialization;

namespace Quickstart;

// Commands: what a caller asks for.
public abstract record AccountCommand;

public sealed record OpenAccount(string Owner) : AccountCommand;

public sealed record Deposit(decimal Amount) : AccountCommand;

public sealed record Withdraw(decimal Amount) : AccountCommand;

// Events: what happened, stored under stable names so the classes can be renamed freely.
public abstract record AccountEvent;

[EventType("account.opened")]
public sealed record AccountOpened(string Owner) : AccountEvent;

[EventType("account.deposited")]
public sealed record Deposited(decimal Amount) : AccountEvent;

[EventType("account.withdrawn")]
public sealed record Withdrawn(decimal Amount) : AccountEvent;

// State: folded from the events.
public sealed record Account(bool IsOpen, string Owner, decimal Balance)
{
    public static Account Initial { get; } = new(false, "", 0m);
}

/// <summary>Why a command was refused.</summary>
public sealed class AccountRuleException(string message) : Exception(message);

public static class AccountDecider
{
    public static Decider<AccountCommand, Account, AccountEvent> Decider { get; } = new(Decide, Evolve, Account.Initial);

    private static IEnumerable<AccountEvent> Decide(AccountCommand command, Account state) => command switch
    {
        OpenAccount open when state.IsOpen => throw new AccountRuleException($"The account of {state.Owner} is already open."),
        OpenAccount open => [new AccountOpened(open.Owner)],
        _ when !state.IsOpen => throw new AccountRuleException("The account is not open."),
        Deposit { Amount: <= 0 } => throw new AccountRuleException("A deposit must be positive."),
        Deposit deposit => [new Deposited(deposit.Amount)],
        Withdraw withdraw when withdraw.Amount > state.Balance => throw new AccountRuleException($"Cannot withdraw {withdraw.Amount}: the balance is {state.Balance}."),
        Withdraw withdraw => [new Withdrawn(withdraw.Amount)],
        _ => throw new ArgumentOutOfRangeException(nameof(command)),
    };

    private static Account Evolve(Account state, AccountEvent e) => e switch
    {
        AccountOpened opened => state with { IsOpen = true, Owner = opened.Owner },
        Deposited deposited => state with { Balance = state.Balance + deposited.Amount },
        Withdrawn withdrawn => state with { Balance = state.Balance - withdrawn.Amount },
        _ => state,
    };
}
