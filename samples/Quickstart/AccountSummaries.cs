using Cairn.EventStore;
using Cairn.Projections;

namespace Quickstart;

/// <summary>The read model of one account: a document per stream, kept up to date from the log.</summary>
public sealed record AccountSummary(string Id, string Owner, decimal Balance, int Deposits);

/// <summary>
/// An async projection of the account events into <see cref="AccountSummary"/> documents, indexed by owner and
/// balance so they can be queried. It runs in the background, in its own transactions, each storing its position with
/// the documents it wrote.
/// </summary>
public sealed class AccountSummaries : Projection
{
    public const string ProjectionName = "account-summaries";

    public AccountSummaries()
        : base(ProjectionName)
    {
        Filter = EventFilter.ForCategory("account");
        Document<AccountSummary>(a => a.Id)
            .Index("owner", a => a.Owner)
            .Index("balance", a => a.Balance);

        // The stream names the account: the events themselves do not carry its id.
        On<AccountOpened>((ctx, e) => ctx.Documents.Store(new AccountSummary(ctx.Event.Stream.Value, e.Owner, 0m, 0)));
        On<Deposited>((ctx, e) => Update(ctx, a => a with { Balance = a.Balance + e.Amount, Deposits = a.Deposits + 1 }));
        On<Withdrawn>((ctx, e) => Update(ctx, a => a with { Balance = a.Balance - e.Amount }));
    }

    private static void Update(IProjectionContext ctx, Func<AccountSummary, AccountSummary> change)
    {
        var id = ctx.Event.Stream.Value;
        var account = ctx.Documents.Load<AccountSummary>(id)
            ?? throw new InvalidOperationException($"{ctx.Event} changes the account {id}, which was never opened.");
        ctx.Documents.Store(change(account));
    }
}
