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
        Assert.Contains("The audit-log subscription handled 5 events.", text);
        Assert.Equal(5, text.Split('\n').Count(line => line.Contains("[audit-log]", StringComparison.Ordinal)));
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
