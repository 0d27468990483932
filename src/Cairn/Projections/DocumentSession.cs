using System.Data.Common;
using System.Text.Json;
using Cairn.EventStore;

namespace Cairn.Projections;

/// <summary>
/// The documents of one batch: an identity map over the backend's transaction. A document loaded or stored twice in a
/// batch is read once and written once, at <see cref="Flush"/>; until then the batch sees its own writes.
/// </summary>
internal sealed class DocumentSession(Projection projection, IReadModelTransaction transaction, JsonSerializerOptions json, DocumentCache? cache = null)
    : IDocumentSession, IProjectionContext, IProjectionSql
{
    private readonly Dictionary<(DocumentDefinition Document, string Id), Entry> _entries = [];

    /// <summary>The first statement of <see cref="Execute"/> that failed in the current event's handler.</summary>
    private DbException? _failedStatement;

    /// <summary>The current event's handler took <see cref="Connection"/> to run statements of its own.</summary>
    private bool _connectionTaken;

    /// <summary>The documents the current event's handler stored, checked when it returns.</summary>
    private readonly List<(DocumentDefinition Document, string Id)> _storedByEvent = [];

    public RecordedEvent Event { get; private set; } = null!;

    /// <summary>Starts the handling of the next event of the batch.</summary>
    public void Begin(RecordedEvent recorded)
    {
        Event = recorded;
        _failedStatement = null;
        _connectionTaken = false;
        _storedByEvent.Clear();
    }

    /// <summary>
    /// Ends the handling of the current event, whose handler returned. Throws when it caught a statement's failure that
    /// left the transaction aborted: the batch could write nothing more, so the event fails (and meets the failure
    /// policy) rather than the batch failing later, at a statement or a commit, with no event to blame.
    /// </summary>
    public void End()
    {
        // A document whose index values no index keeps fails the event that stored it, as its handler left it: checked
        // only at the flush, it would pass when a later event of the same batch stored it again, and fail when the
        // batches fell otherwise.
        foreach (var key in _storedByEvent)
        {
            if (_entries.TryGetValue(key, out var entry) && entry.Document is { } document)
            {
                _ = key.Document.IndexValues(document, key.Id);
            }
        }

        _storedByEvent.Clear();
        if (!transaction.FailedStatementAbortsTransaction)
        {
            return;
        }

        if (_failedStatement is { } failed)
        {
            throw new InvalidOperationException(
                $"The handler caught the failure of a statement it ran ({failed.Message}) and returned; this backend aborts the "
                + "transaction on a failed statement, so nothing more of the batch could be written. Let the exception escape "
                + "(the failure policy decides what follows), or write the statement so that it does not fail (ON CONFLICT, a check first).",
                failed);
        }

        if (_connectionTaken && transaction.IsAborted())
        {
            throw new InvalidOperationException(
                "The handler left the batch's transaction aborted: a statement it ran on ctx.Sql.Connection failed, and the failure "
                + "was caught; this backend aborts the transaction on a failed statement, so nothing more of the batch could be "
                + "written. Let the exception escape (the failure policy decides what follows), or write the statement so that "
                + "it does not fail (ON CONFLICT, a check first).");
        }
    }

    public IDocumentSession Documents => this;

    public IProjectionSql Sql => transaction.Connection is null
        ? throw new NotSupportedException($"Projection '{projection.Name}' uses SQL, which this backend does not have; use the SQLite or PostgreSQL backend.")
        : this;

    public DbConnection Connection
    {
        get
        {
            _connectionTaken = true;
            return transaction.Connection!;
        }
    }

    public T? Load<T>(string id)
        where T : class
    {
        var document = Definition<T>();
        DocumentIds.Validate(document.Collection, id);
        if (_entries.TryGetValue((document, id), out var entry))
        {
            return (T?)entry.Document;
        }

        if (cache is not null && cache.TryGet((document, id), out var cached))
        {
            _entries[(document, id)] = new Entry(cached, Dirty: false, Event);
            return (T?)cached;
        }

        var stored = transaction.ReadDocument(document, id);
        var loaded = stored is { } bytes ? document.Deserialize(id, bytes.Span, json) : null;
        _entries[(document, id)] = new Entry(loaded, Dirty: false, Event);
        return (T?)loaded;
    }

    public void Store<T>(T document)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(document);
        var definition = Definition<T>();
        var id = definition.IdOf(document);
        _entries[(definition, id)] = new Entry(document, Dirty: true, Event);
        _storedByEvent.Add((definition, id));
    }

    public void Store<T>(string id, T document)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(document);
        var definition = Definition<T>();
        id = DocumentIds.Validate(definition.Collection, id);
        _entries[(definition, id)] = new Entry(document, Dirty: true, Event);
        _storedByEvent.Add((definition, id));
    }

    public void Delete<T>(string id)
        where T : class
    {
        var definition = Definition<T>();
        _entries[(definition, DocumentIds.Validate(definition.Collection, id))] = new Entry(null, Dirty: true, Event);
    }

    public string Table(string name) =>
        projection.SqlTables.Any(t => t.Name == name)
            ? transaction.TableName(name)
            : throw new ArgumentException($"Projection '{projection.Name}' declares no table '{name}'.", nameof(name));

    public int Execute(string sql, params (string Name, object? Value)[] parameters)
    {
        ArgumentNullException.ThrowIfNull(sql);
        ArgumentNullException.ThrowIfNull(parameters);
        try
        {
            return transaction.ExecuteSql(sql, parameters);
        }
        catch (DbException ex)
        {
            _failedStatement ??= ex;
            throw;
        }
    }

    /// <summary>
    /// Writes every changed document. A document that cannot be serialized or indexed fails the event that last
    /// stored it.
    /// </summary>
    public void Flush()
    {
        foreach (var ((definition, id), entry) in _entries)
        {
            if (!entry.Dirty)
            {
                continue;
            }

            try
            {
                if (entry.Document is null)
                {
                    transaction.DeleteDocument(definition, id);
                }
                else
                {
                    transaction.WriteDocument(definition, id, definition.Serialize(entry.Document, json), definition.IndexValues(entry.Document, id));
                }

                if (cache is not null && definition.ComesBackWhole(json))
                {
                    cache.Stage((definition, id), entry.Document);
                }
            }
            catch (Exception ex) when (ex is not ProjectionEventException)
            {
                throw new ProjectionEventException(projection.Name, entry.LastEvent, ex);
            }
        }

        _entries.Clear();
    }

    private DocumentDefinition Definition<T>() =>
        projection.FindDocument(typeof(T))
        ?? throw new InvalidOperationException($"Projection '{projection.Name}' declares no documents of type {typeof(T).Name}: add Document<{typeof(T).Name}>(...) to it.");

    private readonly record struct Entry(object? Document, bool Dirty, RecordedEvent LastEvent);
}

/// <summary>
/// The documents a runner's batches stored into one build, kept as objects between batches so the next batch loads
/// them without a read and a deserialization. What a batch stores is staged, and kept only once its commit succeeds;
/// any failure or conflict clears everything, so the cache never holds what the build does not. A backend may run a
/// batch again in a new transaction after abandoning the first (PostgreSQL's writer does when another piece of a shared
/// transaction broke it): the run in the new transaction starts from an empty cache, since the abandoned run staged
/// documents and its handlers may have changed cached ones in place. Bounded: it starts afresh past its capacity. Only
/// documents that come back whole from their JSON are kept (<see cref="DocumentDefinition.ComesBackWhole"/>).
/// </summary>
internal sealed class DocumentCache(int capacity = 100_000)
{
    private readonly Dictionary<(DocumentDefinition Document, string Id), object?> _committed = [];
    private readonly Dictionary<(DocumentDefinition Document, string Id), object?> _staged = [];

    /// <summary>The transaction the current batch applies in, from its first apply until its commit or failure.</summary>
    private IReadModelTransaction? _transaction;

    /// <summary>
    /// Called as a batch applies events in <paramref name="transaction"/>; a batch may apply several times in one
    /// transaction (its events, then those it catches up on). Another transaction than the one the batch applied in
    /// before means that one was abandoned: everything is forgotten.
    /// </summary>
    public void Begin(IReadModelTransaction transaction)
    {
        if (_transaction is not null && !ReferenceEquals(_transaction, transaction))
        {
            Clear();
        }

        _transaction = transaction;
    }

    public bool TryGet((DocumentDefinition Document, string Id) key, out object? document) =>
        _staged.TryGetValue(key, out document) || _committed.TryGetValue(key, out document);

    public void Stage((DocumentDefinition Document, string Id) key, object? document) => _staged[key] = document;

    /// <summary>The batch committed: what it stored is what the build holds.</summary>
    public void Commit()
    {
        if (_committed.Count + _staged.Count > capacity)
        {
            _committed.Clear();
        }

        foreach (var (key, document) in _staged)
        {
            _committed[key] = document;
        }

        _staged.Clear();
        _transaction = null;
    }

    /// <summary>A batch failed or another runner wrote: forget everything.</summary>
    public void Clear()
    {
        _committed.Clear();
        _staged.Clear();
        _transaction = null;
    }
}
