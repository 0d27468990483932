using Cairn.EventStore;
using Cairn.EventStore.InMemory;

namespace Cairn.Tests;

public class SmokeTests
{
    [Fact]
    public async Task an_appended_event_reads_back_byte_for_byte()
    {
        var store = new InMemoryEventStore();
        var data = "{\"amount\":5}"u8.ToArray();
        await store.AppendToStreamAsync("account-1", ExpectedVersion.NoStream, [new EventData("deposited", data)]);
        var events = await store.ReadStreamAsync("account-1").ToListAsync();
        Assert.Equal(data, events.Single().Data.ToArray());
    }
}
