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
    public async Task a_read_past_its_first_rows_reuses_a_repeated_value_and_keeps_none_too_long()
    {
        // The caches start after the read's first 64 rows: 100 events of one stream and type come first.
        await Store.AppendToStreamAsync("order-0", ExpectedVersion.NoStream, Enumerable.Range(0, 100).Select(_ => new EventData("order.placed", Data)).ToList());

        // Stream names around the longest value kept (512 bytes): exactly it, one byte over, and 600 bytes of
        // three-byte characters, all within the name's 256-character limit.
        var atLimit = "order-" + new string('€', 168) + "ab";
        var overLimit = atLimit + "c";
        var longName = "order-" + new string('€', 198);
        Assert.Equal(512, Encoding.UTF8.GetByteCount(atLimit));
        Assert.Equal(513, Encoding.UTF8.GetByteCount(overLimit));
        Assert.Equal(600, Encoding.UTF8.GetByteCount(longName));
        // Between the two reads of each, only values that are never kept: a value kept in between could share a slot
        // with the one asserted, under a hash seeded afresh in each process.
        var names = new[] { atLimit, overLimit, longName, atLimit, overLimit, longName, "order-1" };
        var versions = new Dictionary<string, long>();
        foreach (var name in names)
        {
            var expectedVersion = versions.TryGetValue(name, out var last) ? ExpectedVersion.Exactly(last) : ExpectedVersion.NoStream;
            await Store.AppendToStreamAsync(name, expectedVersion, [new EventData("order.noted", Data)]);
            versions[name] = versions.GetValueOrDefault(name, -1) + 1;
        }

        var all = await Store.ReadAllAsync().ToListAsync();
        Assert.Equal(names, all.Skip(100).Select(e => e.Stream.Value));
        Assert.All(all.Skip(100), e => Assert.Equal("order.noted", e.Type));

        // Past the first rows a repeated value is the very string decoded before, not a copy.
        Assert.Same(all[70].Type, all[99].Type);
        Assert.Same(all[70].Stream.Value, all[99].Stream.Value);
        Assert.Same(all[70].Source, all[99].Source);
        Assert.Same(all[100].Stream.Value, all[103].Stream.Value);
        Assert.NotSame(all[101].Stream.Value, all[104].Stream.Value);
        Assert.NotSame(all[102].Stream.Value, all[105].Stream.Value);
    }
}
