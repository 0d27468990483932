using System.Text;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Schemas;
using Cairn.Serialization;

namespace Cairn.Tests.Schemas;

[EventType("edge.tally", Version = 2)]
public sealed record Tally(Dictionary<string, int> Counts);

/// <summary>Upcast data keeps a dictionary's keys as written: they are data, matched with case, not member names.</summary>
public sealed class UpcastDictionaryKeyCaseTests
{
    // The serializer reads a dictionary's keys with case whatever its options say of member names; the nodes given to
    // an upcaster keep them so, and "a" and "A" stay two keys.
    [Fact]
    public void Dictionary_keys_differing_only_in_case_survive_an_upcaster()
    {
        var types = new EventTypeRegistry().Register<Tally>();
        var options = new SchemaOptions().Upcast("edge.tally", 1, 2, json => json);
        var serializer = new EventSerializer(types, null, UpcasterChains.Build(types, options.Upcasters));
        var stored = new RecordedEvent(MessageId.New(), "tally-1", 0, new GlobalPosition(1), "edge.tally", "urn:test", DateTimeOffset.UnixEpoch, EventData.JsonContentType, Encoding.UTF8.GetBytes("""{"counts":{"a":1,"A":2}}"""))
        {
            DataSchema = "urn:cairn:schema:edge.tally:1",
        };
        var current = new RecordedEvent(MessageId.New(), "tally-1", 1, new GlobalPosition(2), "edge.tally", "urn:test", DateTimeOffset.UnixEpoch, EventData.JsonContentType, Encoding.UTF8.GetBytes("""{"counts":{"a":1,"A":2}}"""))
        {
            DataSchema = "urn:cairn:schema:edge.tally:2",
        };

        Assert.Equal(2, ((Tally)serializer.Deserialize(current)).Counts.Count);
        Assert.Equal(2, ((Tally)serializer.Deserialize(stored)).Counts.Count);
    }
}
