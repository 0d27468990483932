using Cairn.Conformance.Support;
using Cairn.Projections;

namespace Cairn.Conformance.Projections;

/// <summary>A probe document: every kind of index, computed from fields the JSON keeps whole.</summary>
public sealed record QueryProbe(string Id, string? Text = null, long? Whole = null, string? Real = null, decimal? Money = null, bool? Flag = null, DateTimeOffset? At = null, QueryProbeColour? Colour = null, float? Single = null);

public enum QueryProbeColour
{
    Red,
    Green,
    Blue,
}

/// <summary>Stores, for each placed order, the probe document the test prepared under the order's id.</summary>
public sealed class QueryProbes : Projection
{
    public QueryProbes(IReadOnlyDictionary<string, QueryProbe> documents)
        : base("query-probes")
    {
        Document<QueryProbe>(p => p.Id)
            .Index("text", p => p.Text)
            .Index("whole", p => p.Whole)
            .Index("real", p => p.Real is null ? (double?)null : double.Parse(p.Real, System.Globalization.CultureInfo.InvariantCulture))
            .Index("money", p => p.Money)
            .Index("flag", p => p.Flag)
            .Index("at", p => p.At)
            .Index("colour", p => p.Colour)
            .Index("single", p => p.Single);
        On<OrderPlaced>((ctx, e) => ctx.Documents.Store(documents[e.OrderId]));
    }
}

/// <summary>
/// Queries every backend answers alike: a float compared as the number it shows, and a query made by hand (a page out
/// of range, a value not in stored form) refused alike through the task.
/// </summary>
public abstract class QueryInputParityTests<TFixture>(TFixture fixture) : ProjectionTestsBase<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    private async Task<(StoreUnderTest Sut, ProjectionRunner Runner, ReadModels Models, QueryProbes Projection)> SeedAsync(params QueryProbe[] documents)
    {
        var sut = await CreateAsync();
        foreach (var document in documents)
        {
            await AppendAsync(sut, "probe", Orders.Placed(document.Id, "c", 1m));
        }

        var projection = new QueryProbes(documents.ToDictionary(d => d.Id));
        var runner = await StartAsync(sut, projection);
        await CaughtUpAsync(sut, runner);
        return (sut, runner, ReadModels(sut, projection), projection);
    }

    private static string[] Ids(IReadOnlyList<QueryProbe> probes) => [.. probes.Select(p => p.Id)];

    // Docs (projections.md, Querying): "a Real index takes a decimal, double, float, int or long". A float is widened
    // bit for bit ((double)0.1f is 0.10000000149011612), so 0.1f matches neither a decimal 0.1m nor a double 0.1, and a
    // float field indexed as 0.1f is not found by the double 0.1 (DocumentIndex.Normalize, Documents.cs:76). Every
    // backend answers nothing alike: a wrong answer, not a difference.
    [Fact]
    public async Task A_float_compares_as_the_number_it_shows_with_a_decimal_or_double_real_index()
    {
        var (sut, runner, models, _) = await SeedAsync(
            new QueryProbe("decimal", Money: 0.1m),
            new QueryProbe("float", Single: 0.1f));
        await using var _ = sut;
        await using var __ = runner;
        var query = models.Query<QueryProbe>();
        Assert.Equal(["decimal"], Ids(await query.Where("money", 0.1).ToListAsync()));
        Assert.Equal(["decimal"], Ids(await query.Where("money", 0.1f).ToListAsync()));
        Assert.Equal(["float"], Ids(await query.Where("single", 0.1f).ToListAsync()));
        Assert.Equal(["float"], Ids(await query.Where("single", 0.1).ToListAsync()));
        Assert.Equal(["float"], Ids(await query.Where("single", 0.1m).ToListAsync()));
    }

    // A DocumentQuerySpec is public and IProjectionStore's reads take it as given; docs: the projection store's reads
    // "refuse through it, on every backend", and a negative Skip is refused with ArgumentOutOfRangeException. With a
    // negative Take, the in-memory backend answers no documents (LINQ Take), SQLite answers all of them (LIMIT -1 is no
    // limit) and PostgreSQL fails with its own PostgresException 2201W.
    [Theory]
    [InlineData(0, -1)]
    [InlineData(-1, 10)]
    public async Task A_store_read_of_a_negative_take_or_skip_is_refused_alike_through_the_task(int skip, int take)
    {
        var (sut, runner, _, projection) = await SeedAsync(new QueryProbe("a"), new QueryProbe("b"), new QueryProbe("c"));
        await using var _ = sut;
        await using var __ = runner;
        var document = projection.Documents.Single();
        var spec = new DocumentQuerySpec([], [], skip, take);
        Task<IReadOnlyList<StoredDocument>> task;
        try
        {
            task = sut.Projections.QueryDocumentsAsync("query-probes", document, spec, default);
        }
        catch (Exception e)
        {
            Assert.Fail($"The call threw {e.GetType().Name} instead of returning a faulted task.");
            return;
        }

        IReadOnlyList<StoredDocument>? answered = null;
        Exception? refused = null;
        try
        {
            answered = await task;
        }
        catch (Exception e)
        {
            refused = e;
        }

        Assert.True(
            refused is ArgumentOutOfRangeException,
            answered is not null
                ? $"Answered [{string.Join(", ", answered.Select(d => d.Id))}] instead of refusing Skip {skip}, Take {take}."
                : $"Refused with {refused!.GetType().Name} ({refused.Message}), not ArgumentOutOfRangeException.");
    }

    // The same public path: a DocumentCondition whose value is not in stored form (a decimal for a Real index, as a
    // caller building a DocumentQuerySpec by hand writes it) is compared by each backend its own way: in memory a
    // decimal ranks after every number and matches nothing, SQLite fails with ArgumentException ("Cannot bind a
    // Decimal"), PostgreSQL compares numerically and answers the document.
    [Fact]
    public async Task A_store_read_of_a_condition_value_not_in_stored_form_is_answered_or_refused_alike()
    {
        var (sut, runner, _, projection) = await SeedAsync(new QueryProbe("ten", Money: 10m), new QueryProbe("twenty", Money: 20m));
        await using var _ = sut;
        await using var __ = runner;
        var document = projection.Documents.Single();
        var money = document.Indexes.Single(i => i.Name == "money");
        var spec = new DocumentQuerySpec([new DocumentCondition(money, QueryOperator.Equal, 10m)], [], 0, 100);

        IReadOnlyList<StoredDocument>? answered = null;
        Exception? refused = null;
        try
        {
            answered = await sut.Projections.QueryDocumentsAsync("query-probes", document, spec, default);
        }
        catch (Exception e)
        {
            refused = e;
        }

        // Refused alike, as DocumentQuery would have converted it: not matched in memory, refused by SQLite's binding and
        // compared by PostgreSQL.
        Assert.True(
            refused is InvalidDocumentQueryException,
            answered is not null
                ? $"Answered [{string.Join(", ", answered.Select(d => d.Id))}]."
                : $"Refused with {refused!.GetType().Name} ({refused.Message}).");
        Assert.Contains("a Decimal is not in the stored form of a Real index", refused!.Message, StringComparison.Ordinal);
    }
}
