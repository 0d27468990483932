using System.Text;
using Cairn.Envelopes;
using Cairn.EventStore;

namespace Cairn.Postgres.Tests;

/// <summary>
/// Appends queued at once share the writer's transactions (group commit), yet each is answered as if it ran alone
/// after the ones before it: one winner among exact-version rivals, retries recognised, a reused id refused, and the
/// log left without a gap or a stray event.
/// </summary>
public sealed class GroupCommitTests : OwnSchemaStoreTests
{
    private static EventData Event(MessageId? id = null) => new("test.appended", Encoding.UTF8.GetBytes("{}")) { Id = id ?? MessageId.New() };

    [Fact]
    public async Task appends_queued_together_are_each_answered_as_if_they_ran_alone()
    {
        var retried = Event();
        var reused = MessageId.New();
        var calls = new List<Task<AppendResult>>();
        var rivals = new List<Task<AppendResult>>();
        var reusers = new List<Task<AppendResult>>();
        for (var round = 0; round < 8; round++)
        {
            rivals.Add(Store.AppendToStreamAsync("contested", ExpectedVersion.NoStream, [Event()]));
            calls.Add(Store.AppendToStreamAsync("retried", ExpectedVersion.Any, [retried]));
            calls.Add(Store.AppendToStreamAsync($"own-{round}", ExpectedVersion.NoStream, [Event(), Event()]));
            reusers.Add(Store.AppendToStreamAsync($"reuser-{round}", ExpectedVersion.NoStream, [Event(reused)]));
        }

        await Task.WhenAll(calls);
        var rivalOutcomes = await Task.WhenAll(rivals.Select(Settle));
        var reuserOutcomes = await Task.WhenAll(reusers.Select(Settle));

        Assert.Single(rivalOutcomes, o => o is AppendResult);
        Assert.All(rivalOutcomes.Where(o => o is not AppendResult), o => Assert.IsType<WrongExpectedVersionException>(o));
        Assert.Single(reuserOutcomes, o => o is AppendResult);
        Assert.All(reuserOutcomes.Where(o => o is not AppendResult), o => Assert.IsType<DuplicateEventIdException>(o));

        // Every call for the retried event got the same position; only the first wrote it.
        var retries = calls.Select(c => c.Result).Where(r => r.Streams[0].Stream.Value == "retried").ToList();
        Assert.Single(retries, r => !r.WasDuplicate);
        Assert.Single(retries.Select(r => r.FirstPosition).Distinct());

        var log = await Store.ReadAllAsync().ToListAsync();
        Assert.Equal(Enumerable.Range(1, log.Count).Select(p => (long)p), log.Select(e => e.Position.Value));
        Assert.Equal(1 + 1 + (8 * 2) + 1, log.Count);
        Assert.Single(log, e => e.Stream.Value == "contested");
        Assert.Single(log, e => e.Id == retried.Id);
        Assert.Single(log, e => e.Id == reused);
    }

    private static async Task<object> Settle(Task<AppendResult> append)
    {
        try
        {
            return await append;
        }
        catch (CairnException ex)
        {
            return ex;
        }
    }
}
