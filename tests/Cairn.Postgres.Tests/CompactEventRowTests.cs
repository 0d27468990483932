using System.Text;
using Cairn.EventStore;
using Npgsql;

namespace Cairn.Postgres.Tests;

/// <summary>
/// An untagged event stores no tag list and a JSON event no content type (migration 7), so a read of the log sends and
/// decodes neither; both read back as they were appended, and so do rows written before, which spell them out.
/// </summary>
public sealed class CompactEventRowTests : OwnSchemaStoreTests
{
    private static EventData Json(string type) => new(type, Encoding.UTF8.GetBytes("{\"n\":1}"));

    /// <summary>Each event's stored tags and content type, null where the row has none, in log order.</summary>
    private async Task<List<(string[]? Tags, string? ContentType)>> StoredRowsAsync()
    {
        await using var connection = new NpgsqlConnection(PostgresServer.ConnectionString);
        await connection.OpenAsync();
        await using var select = new NpgsqlCommand($"SELECT tags, content_type FROM \"{Schema}\".events ORDER BY position", connection);
        await using var reader = await select.ExecuteReaderAsync();
        var rows = new List<(string[]?, string?)>();
        while (await reader.ReadAsync())
        {
            rows.Add((reader.IsDBNull(0) ? null : reader.GetFieldValue<string[]>(0), reader.IsDBNull(1) ? null : reader.GetString(1)));
        }

        return rows;
    }

    [Fact]
    public async Task an_untagged_json_event_stores_neither_and_every_event_reads_back_as_appended()
    {
        var plain = Json("order.placed");
        var tagged = Json("order.paid") with { Tags = ["customer:7", "region:eu"] };
        var text = new EventData("order.noted", Encoding.UTF8.GetBytes("paid in cash")) { ContentType = "text/plain" };

        // Only the exact spelling is left out: another case or a parameter is kept as written.
        var upper = Json("order.audited") with { ContentType = "Application/JSON" };
        var charset = Json("order.audited") with { ContentType = "application/json; charset=utf-8" };
        await Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [plain, tagged, text, upper, charset]);

        var stored = await StoredRowsAsync();
        Assert.Equal(5, stored.Count);
        Assert.Equal(["Application/JSON", "application/json; charset=utf-8"], stored.Skip(3).Select(r => r.ContentType));
        Assert.Null(stored[0].Tags);
        Assert.Null(stored[0].ContentType);
        Assert.Equal(["customer:7", "region:eu"], stored[1].Tags!);
        Assert.Null(stored[1].ContentType);
        Assert.Null(stored[2].Tags);
        Assert.Equal("text/plain", stored[2].ContentType);

        var all = await Store.ReadAllAsync().ToListAsync();
        var stream = await Store.ReadStreamAsync("order-1").ToListAsync();
        foreach (var read in new[] { all, stream })
        {
            Assert.Equal([EventData.JsonContentType, EventData.JsonContentType, "text/plain", "Application/JSON", "application/json; charset=utf-8"], read.Select(e => e.ContentType));
            Assert.Empty(read[0].Tags);
            Assert.Equal(["customer:7", "region:eu"], read[1].Tags);
            Assert.Empty(read[2].Tags);
        }

        var byTag = await Store.ReadByQueryAsync(new EventQuery(EventQueryItem.WithTags("customer:7")), GlobalPosition.Start, long.MaxValue, CancellationToken.None).ToListAsync();
        Assert.Equal([tagged.Id], byTag.Select(e => e.Id));
    }

    [Fact]
    public async Task a_row_written_before_migration_7_with_an_empty_tag_list_and_the_json_type_spelled_out_reads_the_same()
    {
        await Store.AppendToStreamAsync("order-2", ExpectedVersion.NoStream, [Json("order.placed"), Json("order.shipped")]);
        await using (var connection = new NpgsqlConnection(PostgresServer.ConnectionString))
        {
            await connection.OpenAsync();
            await using var update = new NpgsqlCommand($"UPDATE \"{Schema}\".events SET tags = '{{}}', content_type = 'application/json' WHERE position = 1", connection);
            Assert.Equal(1, await update.ExecuteNonQueryAsync());
        }

        var stored = await StoredRowsAsync();
        Assert.Equal((string[]?)[], stored[0].Tags);
        Assert.Equal(EventData.JsonContentType, stored[0].ContentType);
        Assert.Null(stored[1].Tags);

        var read = await Store.ReadAllAsync().ToListAsync();
        Assert.Equal(2, read.Count);
        foreach (var e in read)
        {
            Assert.Equal(EventData.JsonContentType, e.ContentType);
            Assert.Empty(e.Tags);
        }

        var byType = await Store.ReadByQueryAsync(new EventQuery(EventQueryItem.OfTypes("order.placed")), GlobalPosition.Start, long.MaxValue, CancellationToken.None).ToListAsync();
        Assert.Equal([read[0].Id], byType.Select(e => e.Id));
        Assert.Empty(byType[0].Tags);
        Assert.Equal(EventData.JsonContentType, byType[0].ContentType);
    }
}
