using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Projections;
using Cairn.Projections.InMemory;

namespace Cairn.Tests.Projections;

/// <summary>
/// Document declarations: default collection names, which field types can be indexed, and how each kind of index
/// value is normalized for storage and queries.
/// </summary>
public sealed class DocumentDefinitionTests
{
    [Theory]
    [InlineData(typeof(OrderSummary), "order_summary")]
    [InlineData(typeof(Invoice), "invoice")]
    [InlineData(typeof(HTTPRequestLog), "http_request_log")]
    [InlineData(typeof(IOStream), "io_stream")]
    [InlineData(typeof(Order2Line), "order2_line")]
    [InlineData(typeof(ABC), "abc")]
    [InlineData(typeof(Page<int>), "page")]
    [InlineData(typeof(Café), "caf_")]
    public void a_document_without_a_collection_name_is_named_after_its_type_in_snake_case(Type type, string collection)
    {
        var declare = typeof(Probe).GetMethod(nameof(Probe.Declare))!.MakeGenericMethod(type);
        var definition = (DocumentDefinition)declare.Invoke(new Probe(), [null])!;
        Assert.Equal(collection, definition.Collection);
        Assert.Equal(type, definition.DocumentType);
    }

    // A text index's entry holds the document's id beside the text (an ordered page's tie-break): a long id and long
    // text, each within its own limit, made PostgreSQL refuse the entry with a raw error and stop the projection. They
    // are refused together by name, on every backend alike; the same text under a short id is stored.
    [Fact]
    public void an_indexed_text_and_an_id_too_long_together_for_an_index_entry_are_refused_by_name()
    {
        var definition = new OrderSummaries().Documents[0];
        var customer = new string('名', DocumentIndex.MaxTextBytes / 3);
        var longId = new string('号', DocumentIds.MaxLength);
        var summary = new OrderSummary(longId, customer, 1m, "placed", 0);

        var refused = Assert.Throws<InvalidDocumentQueryException>(() => definition.IndexValues(summary, longId));
        Assert.Contains("customer", refused.Message, StringComparison.Ordinal);
        Assert.Contains("id", refused.Message, StringComparison.Ordinal);

        Assert.Equal(customer, definition.IndexValues(summary with { Id = "o-1" }, "o-1")[0]);
    }

    [Fact]
    public void a_type_name_that_makes_no_valid_collection_name_is_refused_and_can_be_named()
    {
        var derived = Assert.Throws<ArgumentException>(() => new Probe().Declare<Über>()).Message;
        Assert.Contains("'_ber' is not a valid collection name", derived);
        Assert.Contains("derived from the type Über", derived);
        Assert.Contains("Document<Über>(collection:", derived);
        Assert.Contains("not a valid collection name", Assert.Throws<ArgumentException>(() => new Probe().Declare<AVeryLongDocumentTypeNameThatGoesOnAndOnPastTheLimit>()).Message);
        Assert.Equal("uber", new Probe().Declare<Über>("uber").Collection);
        Assert.Equal("long_one", new Probe().Declare<AVeryLongDocumentTypeNameThatGoesOnAndOnPastTheLimit>("long_one").Collection);
    }

    [Fact]
    public void a_collection_or_document_type_declared_twice_is_refused()
    {
        var probe = new Probe();
        probe.Declare<Invoice>();
        Assert.Contains("twice", Assert.Throws<ArgumentException>(() => probe.Declare<Invoice>("other")).Message);
        Assert.Contains("twice", Assert.Throws<ArgumentException>(() => probe.Declare<ABC>("invoice")).Message);

        // SQLite's table names ignore case: "Invoice" would be the same table as "invoice".
        Assert.Contains("twice", Assert.Throws<ArgumentException>(() => probe.Declare<ABC>("Invoice")).Message);
    }

    [Fact]
    public void a_field_of_a_type_that_cannot_be_indexed_is_refused_by_name()
    {
        var definition = new Probe().Declare<Indexable>();
        var list = Assert.Throws<ArgumentException>(() => definition.Index("lines", d => d.Lines));
        Assert.Contains("Index 'lines' of collection 'indexable': a List`1 cannot be indexed", list.Message);
        Assert.Throws<ArgumentException>(() => definition.Index("data", d => d.Data));
        Assert.Throws<ArgumentException>(() => definition.Index("duration", d => d.Duration));
        Assert.Throws<ArgumentException>(() => definition.Index("anything", d => (object)d.Count));
        Assert.Empty(definition.Indexes);
    }

    [Fact]
    public void index_names_follow_the_identifier_rules_and_are_declared_once()
    {
        var definition = new Probe().Declare<Indexable>();
        Assert.Throws<ArgumentException>(() => definition.Index("bad name", d => d.Count));
        Assert.Throws<ArgumentException>(() => definition.Index("1st", d => d.Count));
        Assert.Throws<ArgumentException>(() => definition.Index("", d => d.Count));
        definition.Index("count", d => d.Count);
        Assert.Contains("twice", Assert.Throws<ArgumentException>(() => definition.Index("count", d => d.Amount)).Message);
        Assert.Contains("twice", Assert.Throws<ArgumentException>(() => definition.Index("Count", d => d.Amount)).Message);
    }

    [Fact]
    public void each_indexable_type_has_its_kind_and_the_shape_names_them()
    {
        var definition = new Probe().Declare<Indexable>()
            .Index("name", d => d.Name)
            .Index("id", d => d.Id)
            .Index("color", d => d.Color)
            .Index("letter", d => d.Letter)
            .Index("count", d => d.Count)
            .Index("big", d => d.Big)
            .Index("small", d => d.Small)
            .Index("maybe", d => d.Maybe)
            .Index("amount", d => d.Amount)
            .Index("ratio", d => d.Ratio)
            .Index("active", d => d.Active)
            .Index("at", d => d.At)
            .Index("on", d => d.On);

        Assert.Equal(
            [IndexKind.Text, IndexKind.Text, IndexKind.Text, IndexKind.Text, IndexKind.Integer, IndexKind.Integer, IndexKind.Integer, IndexKind.Integer, IndexKind.Real, IndexKind.Real, IndexKind.Boolean, IndexKind.Time, IndexKind.Time],
            definition.Indexes.Select(i => i.Kind));
        Assert.Equal("indexable(name:Text,id:Text,color:Text,letter:Text,count:Integer,big:Integer,small:Integer,maybe:Integer,amount:Real,ratio:Real,active:Boolean,at:Time,on:Time)", definition.Shape);
        Assert.Null(DocumentIndex.KindOf(typeof(List<int>)));
        Assert.Null(DocumentIndex.KindOf(typeof(TimeSpan)));
        Assert.Equal(IndexKind.Integer, DocumentIndex.KindOf(typeof(int?)));
    }

    // A char is text: one no backend can index alike (a NUL, half a surrogate pair) is refused as the same string is.
    [Theory]
    [InlineData('\0')]
    [InlineData('\uD800')]
    [InlineData('\uDC00')]
    public void a_char_a_text_index_cannot_hold_is_refused_as_the_same_string_is(char value)
    {
        var index = new DocumentIndex("initial", IndexKind.Text);

        Assert.Throws<InvalidDocumentQueryException>(() => index.Normalize(value.ToString(), "people"));
        Assert.Throws<InvalidDocumentQueryException>(() => index.Normalize(value, "people"));
        Assert.Equal("é", index.Normalize('é', "people"));
    }

    [Fact]
    public void whole_numbers_of_any_width_are_stored_as_64_bit_integers()
    {
        var index = new DocumentIndex("n", IndexKind.Integer);
        Assert.Equal(5L, index.Normalize(5, "c"));
        Assert.Equal(5L, index.Normalize(5L, "c"));
        Assert.Equal(5L, index.Normalize((short)5, "c"));
        Assert.Equal(5L, index.Normalize((byte)5, "c"));
        Assert.Equal(5L, index.Normalize(5u, "c"));
        Assert.Equal(long.MaxValue, index.Normalize((ulong)long.MaxValue, "c"));
        Assert.IsType<long>(index.Normalize(-3, "c"));
        Assert.Throws<InvalidDocumentQueryException>(() => index.Normalize(ulong.MaxValue, "c"));
        Assert.Throws<InvalidDocumentQueryException>(() => index.Normalize(5.0, "c"));
        Assert.Throws<InvalidDocumentQueryException>(() => index.Normalize(5m, "c"));
        Assert.Contains("a String is not a Integer value", Assert.Throws<InvalidDocumentQueryException>(() => index.Normalize("5", "orders")).Message);
    }

    [Fact]
    public void real_numbers_and_decimals_are_stored_as_doubles_and_whole_numbers_compare_with_them()
    {
        var index = new DocumentIndex("total", IndexKind.Real);
        Assert.Equal(12.5, index.Normalize(12.5m, "c"));
        Assert.Equal(12.5, index.Normalize(12.5, "c"));
        Assert.Equal(12.5, index.Normalize(12.5f, "c"));
        Assert.Equal(12.0, index.Normalize(12, "c"));
        Assert.Equal(12.0, index.Normalize(12L, "c"));
        Assert.Throws<InvalidDocumentQueryException>(() => index.Normalize("12", "c"));
    }

    [Fact]
    public void instants_are_stored_as_utc_ticks_and_a_date_time_without_a_kind_is_refused()
    {
        var index = new DocumentIndex("at", IndexKind.Time);
        var utc = new DateTime(2026, 10, 1, 12, 0, 0, DateTimeKind.Utc);
        Assert.Equal(utc.Ticks, index.Normalize(utc, "c"));
        Assert.Equal(utc.Ticks, index.Normalize(new DateTimeOffset(utc), "c"));
        Assert.Equal(utc.Ticks, index.Normalize(new DateTimeOffset(2026, 10, 1, 14, 0, 0, TimeSpan.FromHours(2)), "c"));
        Assert.Equal(utc.Ticks, index.Normalize(utc.ToLocalTime(), "c"));

        var unspecified = new DateTime(2026, 10, 1, 12, 0, 0, DateTimeKind.Unspecified);
        var error = Assert.Throws<InvalidDocumentQueryException>(() => index.Normalize(unspecified, "orders"));
        Assert.Contains("has no kind; use UTC or a DateTimeOffset", error.Message);
        Assert.Equal("orders", error.Collection);
        Assert.Equal("at", error.Field);
        Assert.Throws<InvalidDocumentQueryException>(() => index.Normalize(utc.Ticks, "c"));
    }

    [Fact]
    public void guids_enums_and_characters_are_stored_as_text_and_booleans_as_one_or_zero()
    {
        var text = new DocumentIndex("t", IndexKind.Text);
        var id = Guid.Parse("0f8fad5b-d9cb-469f-a165-70867728950e");
        Assert.Equal("0f8fad5b-d9cb-469f-a165-70867728950e", text.Normalize(id, "c"));
        Assert.Equal("Green", text.Normalize(Color.Green, "c"));
        Assert.Equal("x", text.Normalize('x', "c"));
        Assert.Equal("plain", text.Normalize("plain", "c"));
        Assert.Throws<InvalidDocumentQueryException>(() => text.Normalize(1, "c"));

        var flag = new DocumentIndex("b", IndexKind.Boolean);
        Assert.Equal(1L, flag.Normalize(true, "c"));
        Assert.Equal(0L, flag.Normalize(false, "c"));
        Assert.Throws<InvalidDocumentQueryException>(() => flag.Normalize(1, "c"));
    }

    [Fact]
    public void null_stays_null_in_every_kind()
    {
        foreach (var kind in Enum.GetValues<IndexKind>())
        {
            Assert.Null(new DocumentIndex("f", kind).Normalize(null, "c"));
        }
    }

    [Fact]
    public async Task queries_on_time_guid_enum_and_boolean_indexes_match_their_normalized_values()
    {
        var (store, runner, models) = await StartAsync(new Profiles());
        await using var _ = runner;
        var last = GlobalPosition.Start;
        for (var i = 0; i < 4; i++)
        {
            last = (await store.AppendToStreamAsync(Orders.Stream($"p{i}"), ExpectedVersion.Any, [Orders.Placed($"p{i}", $"c-{i}", i)])).LastPosition;
        }

        await runner.WaitForPositionAsync(last, Wait.Timeout);
        var query = models.Query<Profile>();

        // The same instant in another offset, or as a UTC DateTime, finds the same document.
        Assert.Equal(["p1"], Ids(await query.Where("since", new DateTimeOffset(2026, 1, 2, 2, 0, 0, TimeSpan.FromHours(2))).ToListAsync()));
        Assert.Equal(["p1"], Ids(await query.Where("since", new DateTime(2026, 1, 2, 0, 0, 0, DateTimeKind.Utc)).ToListAsync()));
        Assert.Equal(["p2", "p3"], Ids(await query.Where("since", QueryOperator.GreaterThan, new DateTimeOffset(2026, 1, 2, 0, 0, 0, TimeSpan.Zero)).ToListAsync()));
        Assert.Throws<InvalidDocumentQueryException>(() => query.Where("since", new DateTime(2026, 1, 2)));

        Assert.Equal(["p2"], Ids(await query.Where("key", Profiles.KeyOf(2)).ToListAsync()));
        Assert.Equal(["p0", "p2"], Ids(await query.Where("active", true).ToListAsync()));
        Assert.Equal(["p1", "p3"], Ids(await query.Where("color", Color.Red).ToListAsync()));

        // Enums are stored by name, so they order alphabetically: Green before Red.
        Assert.Equal(["p0", "p2", "p1", "p3"], Ids(await query.OrderBy("color").ToListAsync()));
        Assert.Equal(["p3", "p2", "p1", "p0"], Ids(await query.OrderByDescending("since").ToListAsync()));
    }

    [Fact]
    public async Task a_document_whose_indexed_date_time_has_no_kind_fails_the_event_that_stored_it()
    {
        var (store, runner, _) = await StartAsync(new Profiles(unspecifiedFor: "p1") { MaxRetries = 0, RetryDelay = TimeSpan.Zero });
        await using var __ = runner;
        await store.AppendToStreamAsync(Orders.Stream("p0"), ExpectedVersion.Any, [Orders.Placed("p0", "c", 1m)]);
        var bad = (await store.AppendToStreamAsync(Orders.Stream("p1"), ExpectedVersion.Any, [Orders.Placed("p1", "c", 1m)])).LastPosition;
        await Wait.UntilAsync(() => runner.Status.State == ProjectionState.Failed, "the projection stops");
        Assert.Equal(bad, runner.Status.FailedEvent);
        Assert.Contains("has no kind", runner.Status.LastError);
    }

    private static async Task<(InMemoryEventStore Store, ProjectionRunner Runner, ReadModels Models)> StartAsync(Projection projection)
    {
        var store = new InMemoryEventStore();
        var projections = new InMemoryProjectionStore(store);
        var runner = new ProjectionRunner(projection, store, projections, Orders.Serializer());
        await runner.StartAsync(default);
        return (store, runner, new ReadModels(projections, Orders.Serializer(), [projection]));
    }

    private static List<string> Ids(IEnumerable<Profile> profiles) => [.. profiles.Select(p => p.Id)];

    /// <summary>Exposes <see cref="Projection.Document{T}"/> to the tests.</summary>
    private sealed class Probe() : Projection("probe")
    {
        public DocumentDefinition<T> Declare<T>(string? collection = null)
            where T : class => Document<T>(null, collection);

        public void Table(string name) => SqlTable(name, "CREATE TABLE {table} (id TEXT PRIMARY KEY)");
    }

    // A build's own table is '<name>__b<build>', so a table declared as 't__b3' would be, or stand in the way of, build
    // 3's table of another projection's 't': its rebuild failed there. Such names are reserved, and so are names
    // declared twice whatever their case (SQLite's names ignore it).
    [Fact]
    public void a_table_named_like_a_builds_table_or_declared_twice_is_refused()
    {
        var probe = new Probe();
        Assert.Contains("reserved", Assert.Throws<ArgumentException>(() => probe.Table("t__b3")).Message);
        Assert.Contains("reserved", Assert.Throws<ArgumentException>(() => probe.Table("t__B12")).Message);
        probe.Table("t__b");
        probe.Table("t__bx1");
        probe.Table("orders");
        Assert.Contains("twice", Assert.Throws<ArgumentException>(() => probe.Table("Orders")).Message);
    }

    public enum Color
    {
        Red,
        Green,
    }

    public sealed record Profile(string Id, DateTimeOffset Since, Guid Key, Color Color, bool Active, DateTime Checked);

    /// <summary>Profiles with a time, a GUID, an enum, a boolean and a DateTime index; one can be given a DateTime without a kind.</summary>
    private sealed class Profiles : Projection
    {
        public Profiles(string? unspecifiedFor = null)
            : base("profiles")
        {
            Document<Profile>(p => p.Id)
                .Index("since", p => p.Since)
                .Index("key", p => p.Key)
                .Index("color", p => p.Color)
                .Index("active", p => p.Active)
                .Index("checked", p => p.Checked);
            On<OrderPlaced>((ctx, e) =>
            {
                var n = (int)e.Total;
                var day = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero).AddDays(n);
                var checkedAt = e.OrderId == unspecifiedFor ? new DateTime(2026, 1, 1) : new DateTime(2026, 1, 1, 0, 0, 0, DateTimeKind.Utc);
                ctx.Documents.Store(new Profile(e.OrderId, day, KeyOf(n), n % 2 == 0 ? Color.Green : Color.Red, n % 2 == 0, checkedAt));
            });
        }

        public static Guid KeyOf(int n) => new(n, 0, 0, new byte[8]);
    }

    public sealed record Invoice(string Id);

    public sealed record HTTPRequestLog(string Id);

    public sealed record IOStream(string Id);

    public sealed record Order2Line(string Id);

    public sealed record ABC(string Id);

    public sealed record Page<T>(string Id, T Value);

    public sealed record Café(string Id);

    public sealed record Über(string Id);

    public sealed record AVeryLongDocumentTypeNameThatGoesOnAndOnPastTheLimit(string Id);

    public sealed record Indexable(
        string Name,
        Guid Id,
        Color Color,
        char Letter,
        int Count,
        long Big,
        short Small,
        int? Maybe,
        decimal Amount,
        double Ratio,
        bool Active,
        DateTimeOffset At,
        DateTime On,
        List<int> Lines,
        byte[] Data,
        TimeSpan Duration);
}
