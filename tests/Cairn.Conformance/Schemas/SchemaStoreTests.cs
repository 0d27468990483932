using System.Text.Json.Nodes;
using Cairn.EventStore;
using Cairn.Schemas;

namespace Cairn.Conformance.Schemas;

/// <summary>
/// The backend's schema store: versions contiguous and immutable once added, read back oldest first exactly as they
/// were added, one winner among concurrent registrations of a version, and bad input refused naming the field.
/// </summary>
public abstract class SchemaStoreTests<TFixture>(TFixture fixture, Func<IEventStore, ISchemaStore> schemaStore) : StoreTests<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    private const string OrderPlaced = "order.placed";

    // Cases are named rather than passed as raw strings: control characters do not belong in test names.
    private static readonly Dictionary<string, string?> EventTypeCases = new()
    {
        ["null"] = null,
        ["empty"] = "",
        ["inner-space"] = "order placed",
        ["trailing-space"] = "order.placed ",
        ["line-feed"] = "order\nplaced",
        ["nul"] = "order\u0000placed",
        ["over-long"] = new string('t', EventTypeNames.MaxLength + 1),
    };

    public static TheoryData<string> InvalidEventTypes => new(EventTypeCases.Keys);

    private async Task<(StoreUnderTest Sut, ISchemaStore Schemas)> CreateSchemasAsync()
    {
        var sut = await CreateAsync();
        return (sut, schemaStore(sut.Store));
    }

    private static JsonObject Document(string title, params string[] required)
    {
        var properties = new JsonObject();
        foreach (var name in required)
        {
            properties[name] = new JsonObject { ["type"] = "string" };
        }

        return new JsonObject
        {
            ["$schema"] = "https://json-schema.org/draft/2020-12/schema",
            ["title"] = title,
            ["type"] = "object",
            ["properties"] = properties,
            ["required"] = new JsonArray([.. required.Select(r => (JsonNode?)r)]),
        };
    }

    private static RegisteredSchema Version(string type, int version, JsonObject? document = null) =>
        new(type, version, document ?? Document($"{type} v{version}", "id"));

    private static void AssertSameDocument(JsonNode expected, JsonNode actual) =>
        Assert.True(JsonNode.DeepEquals(expected, actual), $"Expected {expected.ToJsonString()} but read {actual.ToJsonString()}.");

    // ---- numbering ----

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(int.MaxValue)]
    public async Task the_first_version_of_a_type_may_be_any_number_from_1(int first)
    {
        var (sut, schemas) = await CreateSchemasAsync();
        await using var _ = sut;

        await schemas.AddVersionAsync(Version(OrderPlaced, first));

        var stored = Assert.Single(await schemas.GetVersionsAsync(OrderPlaced));
        Assert.Equal((OrderPlaced, first), (stored.EventType, stored.Version));
        Assert.Equal($"urn:cairn:schema:order.placed:{first}", stored.DataSchema);
    }

    [Fact]
    public async Task a_version_added_as_the_first_of_its_type_is_refused_once_the_type_has_one()
    {
        var (sut, schemas) = await CreateSchemasAsync();
        await using var _ = sut;
        await schemas.AddVersionAsync(Version(OrderPlaced, 1));

        // Another process checked version 2 against no earlier one: it is the next number, but was never compared.
        var ex = await Assert.ThrowsAsync<SchemaVersionConflictException>(() => schemas.AddVersionAsync(Version(OrderPlaced, 2) with { FirstOfType = true }));

        Assert.Equal((2, (int?)1), (ex.Version, ex.Latest));
        Assert.Contains("was to be its first version", ex.Message, StringComparison.Ordinal);
        Assert.Equal([1], (await schemas.GetVersionsAsync(OrderPlaced)).Select(s => s.Version));

        // The first version of a type that has none is added as before.
        await schemas.AddVersionAsync(Version("customer.added", 1) with { FirstOfType = true });
        Assert.Single(await schemas.GetVersionsAsync("customer.added"));
    }

    [Fact]
    public async Task a_version_that_skips_is_refused_naming_the_latest_and_nothing_is_added()
    {
        var (sut, schemas) = await CreateSchemasAsync();
        await using var _ = sut;
        await schemas.AddVersionAsync(Version(OrderPlaced, 3));
        await schemas.AddVersionAsync(Version(OrderPlaced, 4));

        var ex = await Assert.ThrowsAsync<SchemaVersionConflictException>(() => schemas.AddVersionAsync(Version(OrderPlaced, 6)));

        Assert.Equal((OrderPlaced, 6, (int?)4), (ex.EventType, ex.Version, ex.Latest));
        Assert.Contains("the latest registered is 4", ex.Message, StringComparison.Ordinal);
        Assert.Equal([3, 4], (await schemas.GetVersionsAsync(OrderPlaced)).Select(s => s.Version));
    }

    [Fact]
    public async Task a_version_added_again_is_refused_and_the_stored_one_is_not_overwritten()
    {
        var (sut, schemas) = await CreateSchemasAsync();
        await using var _ = sut;
        var first = Document("first", "id");
        var second = Document("second", "id", "total");
        await schemas.AddVersionAsync(Version(OrderPlaced, 1, first));
        await schemas.AddVersionAsync(Version(OrderPlaced, 2, second));

        var repeat = await Assert.ThrowsAsync<SchemaVersionConflictException>(() => schemas.AddVersionAsync(Version(OrderPlaced, 2, Document("other"))));
        var earlier = await Assert.ThrowsAsync<SchemaVersionConflictException>(() => schemas.AddVersionAsync(Version(OrderPlaced, 1, Document("other"))));

        Assert.Equal((2, (int?)2), (repeat.Version, repeat.Latest));
        Assert.Equal((1, (int?)2), (earlier.Version, earlier.Latest));
        Assert.Contains("the next must be 3", repeat.Message, StringComparison.Ordinal);
        var stored = await schemas.GetVersionsAsync(OrderPlaced);
        Assert.Equal([1, 2], stored.Select(s => s.Version));
        AssertSameDocument(first, stored[0].Schema);
        AssertSameDocument(second, stored[1].Schema);
    }

    [Fact]
    public async Task the_types_are_numbered_apart()
    {
        var (sut, schemas) = await CreateSchemasAsync();
        await using var _ = sut;
        await schemas.AddVersionAsync(Version(OrderPlaced, 1));
        await schemas.AddVersionAsync(Version(OrderPlaced, 2));

        // Another type starts where it likes, and a type whose name only differs in case is another type.
        await schemas.AddVersionAsync(Version("order.shipped", 1));
        await schemas.AddVersionAsync(Version("Order.Placed", 7));

        Assert.Equal([1, 2], (await schemas.GetVersionsAsync(OrderPlaced)).Select(s => s.Version));
        Assert.Equal([1], (await schemas.GetVersionsAsync("order.shipped")).Select(s => s.Version));
        Assert.Equal([7], (await schemas.GetVersionsAsync("Order.Placed")).Select(s => s.Version));
    }

    // ---- reading back ----

    [Fact]
    public async Task versions_are_read_back_oldest_first_as_they_were_added()
    {
        var (sut, schemas) = await CreateSchemasAsync();
        await using var _ = sut;
        var documents = new List<JsonObject>
        {
            Document("v1", "id"),
            Document("v2", "id", "total"),
            new()
            {
                ["title"] = "v3: \"quoted\", \\ escaped, ünïcödé, 日本語, 😀 and <html>",
                ["type"] = "object",
                ["properties"] = new JsonObject
                {
                    ["amount"] = new JsonObject { ["type"] = "number", ["minimum"] = 0.01m, ["maximum"] = 1e15 },
                    ["count"] = new JsonObject { ["type"] = "integer", ["minimum"] = -9007199254740993L },
                    ["tags"] = new JsonObject { ["type"] = "array", ["items"] = new JsonObject { ["enum"] = new JsonArray("a", null, true, false, 1.5) } },
                },
                ["additionalProperties"] = false,
                ["examples"] = new JsonArray(new JsonObject(), new JsonArray()),
            },
        };
        for (var i = 0; i < documents.Count; i++)
        {
            await schemas.AddVersionAsync(new RegisteredSchema(OrderPlaced, 5 + i, documents[i]));
        }

        var stored = await schemas.GetVersionsAsync(OrderPlaced);

        Assert.Equal([5, 6, 7], stored.Select(s => s.Version));
        Assert.All(stored, s => Assert.Equal(OrderPlaced, s.EventType));
        for (var i = 0; i < documents.Count; i++)
        {
            AssertSameDocument(documents[i], stored[i].Schema);
        }

        // Property order is kept too: the document reads as it was written.
        Assert.Equal(documents[2].ToJsonString(), stored[2].Schema.ToJsonString());
    }

    [Fact]
    public async Task a_type_without_versions_reads_as_empty()
    {
        var (sut, schemas) = await CreateSchemasAsync();
        await using var _ = sut;
        await schemas.AddVersionAsync(Version(OrderPlaced, 1));

        Assert.Empty(await schemas.GetVersionsAsync("order.unknown"));
    }

    [Fact]
    public async Task the_types_are_listed_in_ordinal_order_and_only_those_with_a_version()
    {
        var (sut, schemas) = await CreateSchemasAsync();
        await using var _ = sut;
        Assert.Empty(await schemas.GetEventTypesAsync());

        // Upper case before lower, shorter before longer; and a name beyond the basic plane (a surrogate pair in UTF-16)
        // before one at U+FF21, which byte-wise UTF-8 order would put the other way round.
        string[] names = ["order.placed", "account.opened", "Order.placed", "order", "order.placed.v2", "\uFF21.event", "\U0001F600.event", "$system.event"];
        foreach (var name in names)
        {
            await schemas.AddVersionAsync(Version(name, 1));
        }

        await schemas.AddVersionAsync(Version("order.placed", 2));
        await schemas.SetCompatibilityAsync("only.a.mode", CompatibilityMode.Full);

        var expected = names.Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(expected, await schemas.GetEventTypesAsync());
        Assert.Equal("\U0001F600.event", expected[^2]);
    }

    // ---- compatibility ----

    [Fact]
    public async Task a_compatibility_mode_is_null_until_set_and_a_later_one_replaces_it()
    {
        var (sut, schemas) = await CreateSchemasAsync();
        await using var _ = sut;
        await schemas.AddVersionAsync(Version(OrderPlaced, 1));
        Assert.Null(await schemas.GetCompatibilityAsync(OrderPlaced));

        await schemas.SetCompatibilityAsync(OrderPlaced, CompatibilityMode.Backward);
        Assert.Equal(CompatibilityMode.Backward, await schemas.GetCompatibilityAsync(OrderPlaced));

        await schemas.SetCompatibilityAsync(OrderPlaced, CompatibilityMode.FullTransitive);
        Assert.Equal(CompatibilityMode.FullTransitive, await schemas.GetCompatibilityAsync(OrderPlaced));

        // Recorded per type, and for a type with no version yet.
        Assert.Null(await schemas.GetCompatibilityAsync("order.shipped"));
        await schemas.SetCompatibilityAsync("order.shipped", CompatibilityMode.None);
        Assert.Equal(CompatibilityMode.None, await schemas.GetCompatibilityAsync("order.shipped"));
        Assert.Equal(CompatibilityMode.FullTransitive, await schemas.GetCompatibilityAsync(OrderPlaced));
        Assert.Empty(await schemas.GetVersionsAsync("order.shipped"));
    }

    [Fact]
    public async Task every_compatibility_mode_reads_back_as_it_was_set()
    {
        var (sut, schemas) = await CreateSchemasAsync();
        await using var _ = sut;
        foreach (var mode in Enum.GetValues<CompatibilityMode>())
        {
            await schemas.SetCompatibilityAsync(OrderPlaced, mode);
            Assert.Equal(mode, await schemas.GetCompatibilityAsync(OrderPlaced));
        }
    }

    // ---- immutability ----

    [Fact]
    public async Task a_document_changed_by_a_caller_does_not_change_the_stored_one()
    {
        var (sut, schemas) = await CreateSchemasAsync();
        await using var _ = sut;
        var added = Document("placed", "id");
        var original = added.DeepClone();
        await schemas.AddVersionAsync(new RegisteredSchema(OrderPlaced, 1, added));

        // The node that was added, changed afterwards.
        added["title"] = "changed after adding";
        ((JsonObject)added["properties"]!)["id"]!["type"] = "integer";

        // A node that was read, changed.
        var read = (await schemas.GetVersionsAsync(OrderPlaced)).Single().Schema;
        AssertSameDocument(original, read);
        read["title"] = "changed after reading";
        read.Remove("required");
        ((JsonObject)read["properties"]!).Add("extra", new JsonObject());

        var again = (await schemas.GetVersionsAsync(OrderPlaced)).Single().Schema;
        AssertSameDocument(original, again);
        Assert.NotSame(read, again);
    }

    // ---- concurrency ----

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task of_16_concurrent_registrations_of_the_next_version_exactly_one_is_added(int next)
    {
        const int Contenders = 16;
        var (sut, schemas) = await CreateSchemasAsync();
        await using var _ = sut;
        for (var v = 1; v < next; v++)
        {
            await schemas.AddVersionAsync(Version(OrderPlaced, v));
        }

        using var start = new ManualResetEventSlim();
        var attempts = Enumerable.Range(0, Contenders)
            .Select(i => Task.Run(async () =>
            {
                start.Wait();
                await schemas.AddVersionAsync(Version(OrderPlaced, next, Document($"contender {i}", "id")));
                return i;
            }))
            .ToArray();
        start.Set();
        try
        {
            await Task.WhenAll(attempts);
        }
        catch (SchemaVersionConflictException)
        {
            // Every outcome is read below.
        }

        var winners = attempts.Where(t => t.IsCompletedSuccessfully).Select(t => t.Result).ToArray();
        var winner = Assert.Single(winners);
        var losers = attempts.Where(t => !t.IsCompletedSuccessfully).ToArray();
        Assert.Equal(Contenders - 1, losers.Length);
        Assert.All(losers, t =>
        {
            var conflict = Assert.IsType<SchemaVersionConflictException>(t.Exception!.InnerException);
            Assert.Equal((OrderPlaced, next, (int?)next), (conflict.EventType, conflict.Version, conflict.Latest));
        });

        var stored = await schemas.GetVersionsAsync(OrderPlaced);
        Assert.Equal(Enumerable.Range(1, next), stored.Select(s => s.Version));
        AssertSameDocument(Document($"contender {winner}", "id"), stored[^1].Schema);
    }

    // ---- bad input ----

    [Theory]
    [MemberData(nameof(InvalidEventTypes))]
    public async Task an_invalid_event_type_is_refused_naming_the_field_and_nothing_is_written(string @case)
    {
        var (sut, schemas) = await CreateSchemasAsync();
        await using var _ = sut;
        var type = EventTypeCases[@case];

        var add = await Assert.ThrowsAnyAsync<ArgumentException>(() => schemas.AddVersionAsync(new RegisteredSchema(type!, 1, Document("bad"))));
        var get = await Assert.ThrowsAnyAsync<ArgumentException>(() => schemas.GetVersionsAsync(type!));
        var getMode = await Assert.ThrowsAnyAsync<ArgumentException>(() => schemas.GetCompatibilityAsync(type!));
        var setMode = await Assert.ThrowsAnyAsync<ArgumentException>(() => schemas.SetCompatibilityAsync(type!, CompatibilityMode.Backward));

        Assert.Equal(nameof(RegisteredSchema.EventType), add.ParamName);
        Assert.All([get, getMode, setMode], e => Assert.Equal("eventType", e.ParamName));
        Assert.Equal(type is null, add is ArgumentNullException);
        Assert.Empty(await schemas.GetEventTypesAsync());
    }

    [Fact]
    public async Task an_event_type_of_the_maximum_length_is_accepted()
    {
        var (sut, schemas) = await CreateSchemasAsync();
        await using var _ = sut;
        var type = new string('t', EventTypeNames.MaxLength);

        await schemas.AddVersionAsync(Version(type, 1));

        Assert.Equal([type], await schemas.GetEventTypesAsync());
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(int.MinValue)]
    public async Task a_version_below_1_is_refused_naming_the_field_and_nothing_is_written(int version)
    {
        var (sut, schemas) = await CreateSchemasAsync();
        await using var _ = sut;

        var ex = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => schemas.AddVersionAsync(Version(OrderPlaced, version)));

        Assert.Equal(nameof(RegisteredSchema.Version), ex.ParamName);
        Assert.Empty(await schemas.GetEventTypesAsync());
        Assert.Empty(await schemas.GetVersionsAsync(OrderPlaced));
    }

    [Fact]
    public async Task a_missing_schema_or_document_and_an_unknown_mode_are_refused_naming_the_field()
    {
        var (sut, schemas) = await CreateSchemasAsync();
        await using var _ = sut;

        var schema = await Assert.ThrowsAsync<ArgumentNullException>(() => schemas.AddVersionAsync(null!));
        var document = await Assert.ThrowsAsync<ArgumentNullException>(() => schemas.AddVersionAsync(new RegisteredSchema(OrderPlaced, 1, null!)));
        var mode = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => schemas.SetCompatibilityAsync(OrderPlaced, (CompatibilityMode)99));

        Assert.Equal("schema", schema.ParamName);
        Assert.Equal(nameof(RegisteredSchema.Schema), document.ParamName);
        Assert.Equal("mode", mode.ParamName);
        Assert.Empty(await schemas.GetEventTypesAsync());
        Assert.Null(await schemas.GetCompatibilityAsync(OrderPlaced));
    }

    // ---- size ----

    [Fact]
    public async Task a_200_kb_document_round_trips()
    {
        var (sut, schemas) = await CreateSchemasAsync();
        await using var _ = sut;
        var properties = new JsonObject();
        // Measured every 100 fields: serializing after each one would make the loop quadratic.
        for (var i = 0; i % 100 != 0 || properties.ToJsonString().Length < 200 * 1024; i++)
        {
            properties[$"field_{i:D5}"] = new JsonObject
            {
                ["type"] = "string",
                ["description"] = $"Field {i} of a large event, described at some length so the document grows quickly.",
                ["maxLength"] = i,
            };
        }

        var large = new JsonObject { ["type"] = "object", ["properties"] = properties };
        await schemas.AddVersionAsync(new RegisteredSchema(OrderPlaced, 1, large));

        var stored = Assert.Single(await schemas.GetVersionsAsync(OrderPlaced)).Schema;
        Assert.True(stored.ToJsonString().Length >= 200 * 1024);
        AssertSameDocument(large, stored);
    }

    [Fact]
    public async Task a_deeply_nested_document_that_was_added_can_be_read_back()
    {
        var (sut, schemas) = await CreateSchemasAsync();
        await using var _ = sut;

        // Deeper than the 64 levels System.Text.Json reads by default, though it writes them without complaint.
        var deep = new JsonObject { ["type"] = "object" };
        var level = deep;
        for (var i = 0; i < 100; i++)
        {
            var inner = new JsonObject { ["type"] = "object" };
            level["properties"] = new JsonObject { ["nested"] = inner };
            level = inner;
        }

        await schemas.AddVersionAsync(new RegisteredSchema(OrderPlaced, 1, deep));

        AssertSameDocument(deep, Assert.Single(await schemas.GetVersionsAsync(OrderPlaced)).Schema);
    }
}
