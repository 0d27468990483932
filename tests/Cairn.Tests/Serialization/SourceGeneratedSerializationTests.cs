using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Serialization;

namespace Cairn.Tests.Serialization;

[EventType("parcel.shipped")]
public sealed record ParcelShipped(string Carrier, int Weight);

[EventType("parcel.lost")]
public sealed record ParcelLost(string Reason);

[JsonSerializable(typeof(ParcelShipped))]
public sealed partial class ParcelJsonContext : JsonSerializerContext;

public sealed class SourceGeneratedSerializationTests
{
    private static EventSerializer Serializer() =>
        new(new EventTypeRegistry().Register<ParcelShipped>().Register<ParcelLost>(), new JsonSerializerOptions(JsonSerializerDefaults.Web) { TypeInfoResolver = ParcelJsonContext.Default });

    [Fact]
    public void events_serialize_through_a_source_generated_context()
    {
        var serializer = Serializer();
        var data = serializer.ToEventData(new ParcelShipped("Posten", 1200));
        Assert.Equal("""{"carrier":"Posten","weight":1200}""", Encoding.UTF8.GetString(data.Data.Span));

        var recorded = new RecordedEvent(data.Id, "parcel-1", 0, new GlobalPosition(1), data.Type, "urn:test", DateTimeOffset.UnixEpoch, data.ContentType, data.Data);
        Assert.Equal(new ParcelShipped("Posten", 1200), serializer.Deserialize<ParcelShipped>(recorded));
    }

    [Fact]
    public void a_type_missing_from_the_source_generated_context_is_refused_with_its_name()
    {
        var serializer = Serializer();
        var error = Assert.Throws<EventSerializationException>(() => serializer.ToEventData(new ParcelLost("rain")));
        Assert.Contains(nameof(ParcelLost), error.Message);

        var recorded = new RecordedEvent(MessageId.New(), "parcel-1", 0, new GlobalPosition(1), "parcel.lost", "urn:test", DateTimeOffset.UnixEpoch, EventData.JsonContentType, """{"reason":"rain"}"""u8.ToArray());
        Assert.Throws<EventSerializationException>(() => serializer.Deserialize(recorded));
    }
}
