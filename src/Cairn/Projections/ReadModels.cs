using Cairn.Serialization;

namespace Cairn.Projections;

/// <summary>
/// The query side: documents of the registered projections' serving read models, loaded by id or queried on their
/// indexed fields. A document type belongs to one projection; name the projection when several write the same type.
/// </summary>
public sealed class ReadModels
{
    private readonly IProjectionStore _store;
    private readonly EventSerializer _serializer;
    private readonly IReadOnlyList<Projection> _projections;

    /// <summary>Queries the read models of <paramref name="projections"/> in <paramref name="store"/>.</summary>
    public ReadModels(IProjectionStore store, EventSerializer serializer, IEnumerable<Projection> projections)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(serializer);
        ArgumentNullException.ThrowIfNull(projections);
        _store = store;
        _serializer = serializer;
        _projections = [.. projections];
    }

    /// <summary>The document with this id, or null.</summary>
    public Task<T?> LoadAsync<T>(string id, CancellationToken cancellationToken = default)
        where T : class
    {
        DocumentQuery<T> query;
        try
        {
            query = Query<T>();
        }
        catch (ProjectionNotFoundException missing)
        {
            // A call that returns a task refuses through it.
            return Refusal.Of<T?>(missing);
        }

        return query.LoadAsync(id, cancellationToken);
    }

    /// <summary>A query over the documents of type <typeparamref name="T"/>.</summary>
    public DocumentQuery<T> Query<T>()
        where T : class
    {
        var owners = _projections.Where(p => p.FindDocument(typeof(T)) is not null).ToList();
        return owners.Count switch
        {
            1 => new DocumentQuery<T>(_store, _serializer.Options, owners[0].Name, owners[0].FindDocument(typeof(T))!),
            0 => throw new ProjectionNotFoundException($"No registered projection writes documents of type {typeof(T).Name}."),
            _ => throw new ProjectionNotFoundException($"Several projections write documents of type {typeof(T).Name} ({string.Join(", ", owners.Select(p => p.Name))}): name one with Query<{typeof(T).Name}>(projection)."),
        };
    }

    /// <summary>A query over the documents of type <typeparamref name="T"/> written by the named projection.</summary>
    public DocumentQuery<T> Query<T>(string projection)
        where T : class
    {
        var owner = _projections.FirstOrDefault(p => p.Name == projection)
            ?? throw new ProjectionNotFoundException($"No projection named '{projection}' is registered.");
        var document = owner.FindDocument(typeof(T))
            ?? throw new ProjectionNotFoundException($"Projection '{projection}' writes no documents of type {typeof(T).Name}.");
        return new DocumentQuery<T>(_store, _serializer.Options, owner.Name, document);
    }
}

/// <summary>
/// A query over one kind of document: conditions on indexed fields (all must hold), an order (the id breaks ties,
/// so pages are stable) and a page. Each call returns a new query; the original is unchanged.
/// </summary>
/// <typeparam name="T">The document type.</typeparam>
public sealed class DocumentQuery<T>
    where T : class
{
    /// <summary>The most documents one query returns.</summary>
    public const int MaxTake = 10_000;

    /// <summary>
    /// The most values one query compares with, its conditions' and its <see cref="QueryOperator.In"/> lists' together:
    /// within what every backend binds to one statement (SQLite takes 32,766 values).
    /// </summary>
    public const int MaxValues = 10_000;

    /// <summary>
    /// The most conditions one query holds: within how deep every backend nests the conditions of one statement
    /// (SQLite takes expressions 1,000 deep).
    /// </summary>
    public const int MaxConditions = 500;

    /// <summary>The most values one <see cref="QueryOperator.In"/> list holds.</summary>
    internal const int MaxInValues = 1000;

    private readonly IProjectionStore _store;
    private readonly System.Text.Json.JsonSerializerOptions _json;
    private readonly string _projection;
    private readonly DocumentDefinition _document;
    private readonly DocumentQuerySpec _spec;

    internal DocumentQuery(IProjectionStore store, System.Text.Json.JsonSerializerOptions json, string projection, DocumentDefinition document, DocumentQuerySpec? spec = null)
    {
        _store = store;
        _json = json;
        _projection = projection;
        _document = document;
        _spec = spec ?? new DocumentQuerySpec([], [], 0, 100);
    }

    /// <summary>The validated query as the backend receives it.</summary>
    public DocumentQuerySpec Spec => _spec;

    /// <summary>Keeps documents whose field equals <paramref name="value"/> (null: whose field is null).</summary>
    public DocumentQuery<T> Where(string field, object? value) => Where(field, QueryOperator.Equal, value);

    /// <summary>Keeps documents whose indexed field compares with <paramref name="value"/> as <paramref name="op"/> says.</summary>
    public DocumentQuery<T> Where(string field, QueryOperator op, object? value)
    {
        var index = _document.GetIndex(field);
        object? stored;
        if (op == QueryOperator.In)
        {
            if (value is not System.Collections.IEnumerable values || value is string)
            {
                throw new InvalidDocumentQueryException(_document.Collection, field, "In needs a list of values");
            }

            var list = values.Cast<object?>().Select(v => index.Normalize(v, _document.Collection)).ToArray();
            if (list.Length is 0 or > MaxInValues)
            {
                throw new InvalidDocumentQueryException(_document.Collection, field, "In needs 1 to 1,000 values");
            }

            stored = list;
        }
        else
        {
            stored = index.Normalize(value, _document.Collection);
        }

        // The rules every store applies to a query (operator, nulls, how many conditions and values) refuse it here, as
        // it is made, naming this condition's field.
        var next = _spec with { Conditions = [.. _spec.Conditions, new DocumentCondition(index, op, stored)] };
        next.Check(_document.Collection, page: false);
        return With(next);
    }

    /// <summary>Orders by an indexed field, ascending, after any earlier order.</summary>
    public DocumentQuery<T> OrderBy(string field) => With(_spec with { Order = [.. _spec.Order, (_document.GetIndex(field), false)] });

    /// <summary>Orders by an indexed field, descending, after any earlier order.</summary>
    public DocumentQuery<T> OrderByDescending(string field) => With(_spec with { Order = [.. _spec.Order, (_document.GetIndex(field), true)] });

    /// <summary>Skips the first <paramref name="count"/> documents.</summary>
    public DocumentQuery<T> Skip(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        return With(_spec with { Skip = count });
    }

    /// <summary>Returns at most <paramref name="count"/> documents (1 to 10,000; 100 unless set).</summary>
    public DocumentQuery<T> Take(int count)
    {
        if (count is < 1 or > MaxTake)
        {
            throw new ArgumentOutOfRangeException(nameof(count), count, $"Take must be between 1 and {MaxTake}.");
        }

        return With(_spec with { Take = count });
    }

    /// <summary>The page of documents.</summary>
    public async Task<IReadOnlyList<T>> ToListAsync(CancellationToken cancellationToken = default)
    {
        var stored = await _store.QueryDocumentsAsync(_projection, _document, _spec, cancellationToken).ConfigureAwait(false);
        var documents = new List<T>(stored.Count);
        foreach (var document in stored)
        {
            documents.Add((T)_document.Deserialize(document.Id, document.Json.Span, _json));
        }

        return documents;
    }

    /// <summary>The first document of the query's order, or null.</summary>
    public async Task<T?> FirstOrDefaultAsync(CancellationToken cancellationToken = default) =>
        (await Take(1).ToListAsync(cancellationToken).ConfigureAwait(false)).FirstOrDefault();

    /// <summary>How many documents match the conditions (paging ignored).</summary>
    public async Task<long> CountAsync(CancellationToken cancellationToken = default) =>
        await _store.CountDocumentsAsync(_projection, _document, _spec, cancellationToken).ConfigureAwait(false);

    /// <summary>The document with this id, or null.</summary>
    public async Task<T?> LoadAsync(string id, CancellationToken cancellationToken = default)
    {
        DocumentIds.Validate(_document.Collection, id);
        var stored = await _store.LoadDocumentAsync(_projection, _document, id, cancellationToken).ConfigureAwait(false);
        return stored is null ? null : (T)_document.Deserialize(id, stored.Json.Span, _json);
    }

    private DocumentQuery<T> With(DocumentQuerySpec spec) => new(_store, _json, _projection, _document, spec);
}
