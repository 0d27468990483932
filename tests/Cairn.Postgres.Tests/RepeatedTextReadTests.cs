using System.Text;
using Cairn.EventStore;

namespace Cairn.Postgres.Tests;

/// <summary>
/// A read keeps the stream names, event types and sources it has decoded and reuses them for rows that repeat them.
/// Whatever the cache holds, every event reads back with its own values: more distinct values than the cache has room
/// for, values that share most of their bytes, characters outside ASCII, and values too long to be kept.
/// </summary>
public sealed class RepeatedTextReadTests : OwnSchemaStoreTests
{
    private static readonly byte[] Data = Encoding.UTF8.GetBytes("{\"n\":1}");

    [Fact]
    public async Task every_event_reads_back_its_own_stream_type_and_source_when_they_outnumber_the_cache()
    {
        // 700 streams, 100 types and 20 sources, interleaved event by event, against a cache of 256, 64 and 16 entries:
        // entries are replaced all the time, and the read spans pages of 512 and more events.
        const int streams = 700;
        var expected = new List<(string Stream, string Type, string Source)>();
        for (var round = 0; round < 3; round++)
        {
            var appends = new List<StreamAppend>();
            for (var s = 0; s < streams; s++)
            {
                var n = (round * streams) + s;
                var stream = s % 7 == 0 ? $"bestellung-größe-{s}" : $"order-{s}";
                var type = $"order.event-{n % 100}";
                var source = $"service-ü{n % 20}";
                appends.Add(new StreamAppend(new StreamName(stream), round == 0 ? ExpectedVersion.NoStream : ExpectedVersion.Exactly(round - 1), [new EventData(type, Data) { Source = source }]));
                expected.Add((stream, type, source));
            }

            await Store.AppendToStreamsAsync(appends);
        }

        var all = await Store.ReadAllAsync().ToListAsync();
        Assert.Equal(expected, all.Select(e => (e.Stream.Value, e.Type, e.Source)));

        var oneStream = await Store.ReadStreamAsync("bestellung-größe-7").ToListAsync();
        Assert.Equal(["order.event-7", "order.event-7", "order.event-7"], oneStream.Select(e => e.Type));
        Assert.Equal([0L, 1L, 2L], oneStream.Select(e => e.Version));
        Assert.All(oneStream, e => Assert.Equal("bestellung-größe-7", e.Stream.Value));
    }

    [Fact]
    public async Task a_stream_name_too_long_to_be_kept_reads_back_whole_every_time()
    {
        // 200 three-byte characters: 600 bytes, over what the cache keeps, under the name's 256-character limit.
        var longName = "order-" + new string('€', 200);
        var shortName = "order-1";
        await Store.AppendToStreamAsync(longName, ExpectedVersion.NoStream, [new EventData("a", Data), new EventData("b", Data)]);
        await Store.AppendToStreamAsync(shortName, ExpectedVersion.NoStream, [new EventData("a", Data)]);
        await Store.AppendToStreamAsync(longName, ExpectedVersion.Exactly(1), [new EventData("c", Data)]);

        var all = await Store.ReadAllAsync().ToListAsync();
        Assert.Equal([longName, longName, shortName, longName], all.Select(e => e.Stream.Value));
        Assert.Equal(["a", "b", "a", "c"], all.Select(e => e.Type));
    }
}
