using Cairn.Domain;
using Quickstart;

namespace Cairn.Samples.Tests;

public sealed class QuickstartTests : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "cairn-quickstart-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_directory))
        {
            Directory.Delete(_directory, recursive: true);
        }
    }

    [Fact]
    public async Task the_quickstart_runs_to_the_end_and_shows_every_step()
    {
        Directory.CreateDirectory(_directory);
        var output = new StringWriter();
        await QuickstartApp.RunAsync(Path.Combine(_directory, "quickstart.db"), output).WaitAsync(TimeSpan.FromSeconds(60));
        var text = output.ToString();
        Assert.Contains("Balance after three commands: 70", text);
        Assert.Contains("Refused: Cannot withdraw 1000", text);
        Assert.Contains("Conflict: expected 2, the stream is at 3.", text);
        Assert.Contains("v4 #5 account.deposited  {\"amount\":7}", text);
        Assert.Contains("Balance as of version 1: 100; now: 82", text);

        // The read model, queried as soon as the projection reached the position the deposit command returned.
        Assert.Contains("Read model at position 5: account-alice of Alice, balance 82, 3 deposits", text);
        Assert.Contains("Accounts of Alice with a balance of 50 or more: account-alice (82)", text);
        Assert.Contains("The audit-log subscription handled 6 events.", text);
        Assert.Equal(6, text.Split('\n').Count(line => line.Contains("[audit-log]", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task the_quickstart_routes_a_large_deposit_dead_letters_the_poison_notice_and_redrives_it()
    {
        Directory.CreateDirectory(_directory);
        var output = new StringWriter();
        await QuickstartApp.RunAsync(Path.Combine(_directory, "quickstart.db"), output).WaitAsync(TimeSpan.FromSeconds(60));
        var lines = output.ToString().Split(Environment.NewLine);

        // The routed event reached its typed handler once (the smaller deposits did not pass the rule), and what the
        // handler appended carries the correlation id of the request.
        Assert.Single(lines, l => l.Contains("[large-deposits]", StringComparison.Ordinal));
        Assert.Contains("  [large-deposits] account-alice deposited 2500: review opened, notice queued", lines);
        Assert.Contains("""  review-alice v0 review.opened {"owner":"alice","amount":2500}, correlation id 'branch-42'""", lines);

        // The poison notice was dead-lettered at once, with the reason, the attempts and the exception.
        Assert.Contains("Queue notifications: 0 visible, 1 dead-lettered.", lines);
        Assert.Contains("  dead letter customer.notify, correlation id 'branch-42': a non-retryable MissingTemplateException: There is no template for 'customer.notify'.", lines);
        Assert.Contains("    attempts 1, exception Quickstart.MissingTemplateException", lines);

        // The redrive brought it back after the fix, and it was handled: nothing is left in the dead-letter queue.
        Assert.Contains("Template installed; 1 dead letter redriven.", lines);
        Assert.Contains("  [notifications] to alice: your deposit of 2500 is under review", lines);
        Assert.Contains("Consumer notifications: 1 handled, 1 dead-lettered; 0 dead letters left.", lines);
        var order = new[] { "Queue notifications:", "Template installed;", "  [notifications] to alice", "Consumer notifications:" }
            .Select(start => Array.FindIndex(lines, l => l.StartsWith(start, StringComparison.Ordinal)))
            .ToList();
        Assert.Equal(order.Order(), order);
    }

    [Fact]
    public void the_account_decider_is_specified_in_three_lines()
    {
        DeciderSpecification.For(AccountDecider.Decider)
            .Given(new AccountOpened("Alice"), new Deposited(10m))
            .When(new Withdraw(4m))
            .Then(new Withdrawn(4m));

        DeciderSpecification.For(AccountDecider.Decider)
            .Given(new AccountOpened("Alice"))
            .When(new Withdraw(1m))
            .ThenThrows<AccountRuleException>();
    }
}
