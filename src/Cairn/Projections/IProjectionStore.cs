using System.Data.Common;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;

namespace Cairn.Projections;

/// <summary>What a projection's handler is given for one event.</summary>
public interface IProjectionContext
{
    /// <summary>The event being applied, with its whole envelope.</summary>
    RecordedEvent Event { get; }

    /// <summary>The projection's documents, read and written in the read model's transaction.</summary>
    IDocumentSession Documents { get; }

    /// <summary>
    /// The read model's SQL connection, inside its transaction, for tables declared with
    /// <c>SqlTable</c>. Throws <see cref="NotSupportedException"/> on a backend without SQL (in memory).
    /// </summary>
    IProjectionSql Sql { get; }
}

/// <summary>The documents of a projection, inside the transaction that applies its events.</summary>
public interface IDocumentSession
{
    /// <summary>The document with this id, as this transaction sees it (its own writes included), or null.</summary>
    T? Load<T>(string id)
        where T : class;

    /// <summary>Stores (inserts or replaces) a document whose collection declares an id selector.</summary>
    void Store<T>(T document)
        where T : class;

    /// <summary>Stores (inserts or replaces) a document under <paramref name="id"/>.</summary>
    void Store<T>(string id, T document)
        where T : class;

    /// <summary>Deletes the document with this id, if there is one.</summary>
    void Delete<T>(string id)
        where T : class;
}

/// <summary>A projection's own SQL tables, inside the transaction that applies its events.</summary>
public interface IProjectionSql
{
    /// <summary>The connection; commands on it run in the read model's transaction. Do not commit or close it.</summary>
    DbConnection Connection { get; }

    /// <summary>The physical name of a declared table in the build being written: use it in SQL, not the view's name.</summary>
    string Table(string name);

    /// <summary>Runs a statement with named parameters (<c>$day</c>, ...) and returns the rows it changed.</summary>
    int Execute(string sql, params (string Name, object? Value)[] parameters);
}

/// <summary>
/// What a backend does for projections: keeps each projection's builds (the serving one and a shadow during a rebuild)
/// with their positions, applies batches of events to a build together with its position in one transaction, applies
/// inline projections in the transaction of each append, and answers document queries against the serving build.
/// Backends implement it; applications use <see cref="ReadModels"/> and the hosted projections instead.
/// </summary>
public interface IProjectionStore
{
    /// <summary>The projection's builds, creating its first (serving, at position 0) when it has none.</summary>
    Task<ProjectionBuilds> OpenAsync(Projection projection, CancellationToken cancellationToken);

    /// <summary>Starts a new shadow build of the projection at position 0 (dropping an unfinished earlier shadow).</summary>
    Task<ProjectionBuild> StartShadowAsync(Projection projection, CancellationToken cancellationToken);

    /// <summary>
    /// Applies a batch to a build and stores its new position, its dead letters and, with
    /// <see cref="ProjectionBatch.GoLive"/>, the switch, in one transaction. Throws
    /// <see cref="ProjectionConflictException"/>, writing nothing, when the build's stored position is not the batch's
    /// <see cref="ProjectionBatch.ExpectedPosition"/> (another runner moved it).
    /// </summary>
    Task<ProjectionBatchResult> ApplyAsync(ProjectionBatch batch, CancellationToken cancellationToken);

    /// <summary>
    /// Registers an inline projection: once a batch for it goes live, every append applies its events to the serving
    /// build in the append's own transaction; a failure there fails the append.
    /// </summary>
    void AttachInline(Projection projection, ReadModelApply apply);

    /// <summary>Stops applying an inline projection to appends.</summary>
    void DetachInline(string projection);

    /// <summary>
    /// True once this process's appends stopped applying an attached inline projection that had gone live: another
    /// process switched to a build of another version or shape (on SQLite, where each process runs its own runner; on
    /// PostgreSQL only the lease holder switches). Its runner then starts again on what serves.
    /// </summary>
    bool IsInlineDetached(string projection) => false;

    /// <summary>
    /// The dead letters of the projection's builds (the serving one and a shadow being rebuilt), by position, then build.
    /// </summary>
    Task<IReadOnlyList<ProjectionDeadLetter>> ListDeadLettersAsync(string projection, int max, CancellationToken cancellationToken);

    /// <summary>A document of the serving build, or null.</summary>
    Task<StoredDocument?> LoadDocumentAsync(string projection, DocumentDefinition document, string id, CancellationToken cancellationToken);

    /// <summary>The documents of the serving build that match a query, in its order.</summary>
    Task<IReadOnlyList<StoredDocument>> QueryDocumentsAsync(string projection, DocumentDefinition document, DocumentQuerySpec query, CancellationToken cancellationToken);

    /// <summary>How many documents of the serving build match a query's filters.</summary>
    Task<long> CountDocumentsAsync(string projection, DocumentDefinition document, DocumentQuerySpec query, CancellationToken cancellationToken);
}

/// <summary>
/// Applies events to a read model inside a backend's transaction; it throws <see cref="ProjectionEventException"/>
/// naming the event that failed. A backend may call it again for the same events in a new transaction, having rolled
/// back the first (a group commit that another piece broke): what it keeps outside the transaction must follow.
/// </summary>
/// <param name="transaction">The read model's transaction.</param>
/// <param name="events">The events, in log order.</param>
public delegate void ReadModelApply(IReadModelTransaction transaction, IReadOnlyList<RecordedEvent> events);

/// <summary>The storage operations a backend offers inside the transaction of one build of a projection.</summary>
public interface IReadModelTransaction
{
    /// <summary>The stored JSON of a document, or null.</summary>
    ReadOnlyMemory<byte>? ReadDocument(DocumentDefinition document, string id);

    /// <summary>Inserts or replaces a document with the stored values of its indexed fields.</summary>
    void WriteDocument(DocumentDefinition document, string id, ReadOnlyMemory<byte> json, IReadOnlyList<object?> indexValues);

    /// <summary>Deletes a document; false when there was none.</summary>
    bool DeleteDocument(DocumentDefinition document, string id);

    /// <summary>The SQL connection inside the transaction, or null on a backend without SQL.</summary>
    DbConnection? Connection { get; }

    /// <summary>
    /// Whether a failed statement aborts the whole transaction, so that nothing more of the batch can be written after a
    /// handler caught one (PostgreSQL); false where a failed statement undoes only itself (SQLite).
    /// </summary>
    bool FailedStatementAbortsTransaction => false;

    /// <summary>
    /// Whether the transaction can no longer run statements because one failed in it; asked, where
    /// <see cref="FailedStatementAbortsTransaction"/>, after a handler that ran statements of its own on
    /// <see cref="Connection"/> returned.
    /// </summary>
    bool IsAborted() => false;

    /// <summary>The physical name of a declared SQL table in this build.</summary>
    string TableName(string table);

    /// <summary>
    /// Runs a statement of the projection's own SQL (<see cref="IProjectionSql.Execute"/>) on <see cref="Connection"/>
    /// and returns the rows it changed. Parameters are named as the handler wrote them (<c>$day</c>); a backend whose
    /// driver spells named parameters otherwise translates them here.
    /// </summary>
    int ExecuteSql(string sql, IReadOnlyList<(string Name, object? Value)> parameters)
    {
        var connection = Connection ?? throw new NotSupportedException("This backend has no SQL.");
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        foreach (var (name, value) in parameters)
        {
            var parameter = command.CreateParameter();
            parameter.ParameterName = name;
            parameter.Value = value ?? DBNull.Value;
            command.Parameters.Add(parameter);
        }

        return command.ExecuteNonQuery();
    }
}

/// <summary>One build of a projection's read model.</summary>
/// <param name="Projection">The projection.</param>
/// <param name="Id">The build's id, unique in the backend.</param>
/// <param name="Version">The projection's <see cref="Projection.Version"/> that built it.</param>
/// <param name="Shape">The projection's <see cref="Projection.Shape"/> when it was created.</param>
/// <param name="Position">The position of the last event it has applied (or passed over).</param>
/// <param name="Serving">Whether queries read it (false for a shadow being rebuilt).</param>
public sealed record ProjectionBuild(string Projection, long Id, int Version, string Shape, GlobalPosition Position, bool Serving);

/// <summary>A projection's serving build and, during a rebuild, its shadow.</summary>
/// <param name="Serving">The build queries read.</param>
/// <param name="Shadow">The build being rebuilt, or null.</param>
public sealed record ProjectionBuilds(ProjectionBuild Serving, ProjectionBuild? Shadow);

/// <summary>Events to apply to one build of a projection, with the position to store.</summary>
/// <param name="Projection">The projection.</param>
/// <param name="Build">The build written.</param>
/// <param name="ExpectedPosition">The build's stored position this batch follows; anything else is a conflict.</param>
/// <param name="Position">The build's position after the batch (at least the last event's; more when the filter skipped events).</param>
/// <param name="Events">The events to apply, in log order; may be empty.</param>
/// <param name="Apply">Applies events to the read model.</param>
public sealed record ProjectionBatch(string Projection, long Build, GlobalPosition ExpectedPosition, GlobalPosition Position, IReadOnlyList<RecordedEvent> Events, ReadModelApply Apply)
{
    /// <summary>Events skipped by the failure policy, recorded in the same transaction.</summary>
    public IReadOnlyList<ProjectionDeadLetter> DeadLetters { get; init; } = [];

    /// <summary>
    /// After the batch, apply in the same transaction every event after <see cref="Position"/> up to the head that this
    /// filter passes; null for none. Used with <see cref="GoLive"/> so a switch misses nothing committed meanwhile.
    /// </summary>
    public EventFilter? CatchUpToHead { get; init; }

    /// <summary>
    /// Make this build the serving one in the same transaction (dropping the other's storage) and, for an inline
    /// projection, apply it to every append from this commit on.
    /// </summary>
    public bool GoLive { get; init; }
}

/// <summary>What a committed batch did.</summary>
/// <param name="Position">The build's stored position now.</param>
/// <param name="CaughtUp">Events applied by <see cref="ProjectionBatch.CatchUpToHead"/>.</param>
public sealed record ProjectionBatchResult(GlobalPosition Position, int CaughtUp);

/// <summary>An event a projection skipped after failing on it, with why.</summary>
/// <param name="Projection">The projection.</param>
/// <param name="Build">
/// The build that skipped it: the serving one, or during a rebuild the shadow (<see cref="RebuildProgress.Build"/>).
/// A build's dead letters go with it, so a rebuild that applies the event leaves none for it.
/// </param>
/// <param name="Position">The event's position in <c>$all</c>.</param>
/// <param name="EventId">The event's id.</param>
/// <param name="Stream">The event's stream.</param>
/// <param name="Version">The event's version in its stream.</param>
/// <param name="EventType">The event's type.</param>
/// <param name="Failure">The last failure.</param>
/// <param name="Attempts">How many times it was tried.</param>
/// <param name="Time">When it was skipped.</param>
public sealed record ProjectionDeadLetter(string Projection, long Build, GlobalPosition Position, MessageId EventId, StreamName Stream, long Version, string EventType, FailureInfo Failure, int Attempts, DateTimeOffset Time);

/// <summary>
/// A projection store whose inline projections are applied by its event store, which other projection store objects
/// over it share: a runner refuses a second inline runner of one name across all of them.
/// </summary>
internal interface IInlineScope
{
    /// <summary>The event store the inline projections are applied with.</summary>
    object InlineScope { get; }
}

/// <summary>A stored document: its id and JSON.</summary>
/// <param name="Id">The id.</param>
/// <param name="Json">The UTF-8 JSON.</param>
public sealed record StoredDocument(string Id, ReadOnlyMemory<byte> Json);

/// <summary>How a query compares an indexed field with a value.</summary>
public enum QueryOperator
{
    /// <summary>Equal (a null value matches a missing one).</summary>
    Equal,

    /// <summary>Not equal (a null value matches any present one).</summary>
    NotEqual,

    /// <summary>Less than.</summary>
    LessThan,

    /// <summary>Less than or equal.</summary>
    LessThanOrEqual,

    /// <summary>Greater than.</summary>
    GreaterThan,

    /// <summary>Greater than or equal.</summary>
    GreaterThanOrEqual,

    /// <summary>One of a list of values.</summary>
    In,
}

/// <summary>One condition of a query, its value already in stored form.</summary>
/// <param name="Index">The indexed field.</param>
/// <param name="Operator">The comparison.</param>
/// <param name="Value">The stored-form value; for <see cref="QueryOperator.In"/>, an <c>object?[]</c>.</param>
public sealed record DocumentCondition(DocumentIndex Index, QueryOperator Operator, object? Value);

/// <summary>A validated query: conditions (all must hold), order (the id last, so pages are stable), and a page.</summary>
/// <param name="Conditions">The conditions.</param>
/// <param name="Order">The fields to order by, each ascending or descending.</param>
/// <param name="Skip">Documents to skip.</param>
/// <param name="Take">The most documents to return.</param>
public sealed record DocumentQuerySpec(IReadOnlyList<DocumentCondition> Conditions, IReadOnlyList<(DocumentIndex Index, bool Descending)> Order, int Skip, int Take)
{
    /// <summary>
    /// Refuses a query no backend would answer alike: a page out of range, an unknown operator, a value not in its
    /// index's stored form, a null compared other than by equality, or more conditions or values than a query takes.
    /// <see cref="DocumentQuery{T}"/> asks it as each condition is added; the stores ask it of every query they are
    /// handed, which may have been made by hand.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Skip is negative, or Take is not between 1 and <see cref="DocumentQuery{T}.MaxTake"/> (unless <paramref name="page"/> is false, for a count).</exception>
    /// <exception cref="InvalidDocumentQueryException">A condition or an order is not one a query may hold; the last condition is named for a limit.</exception>
    internal void Check(string collection, bool page = true)
    {
        ArgumentNullException.ThrowIfNull(Conditions);
        ArgumentNullException.ThrowIfNull(Order);
        if (page && Skip < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(Skip), Skip, "Skip must not be negative.");
        }

        if (page && Take is < 1 or > DocumentQuery<object>.MaxTake)
        {
            throw new ArgumentOutOfRangeException(nameof(Take), Take, $"Take must be between 1 and {DocumentQuery<object>.MaxTake}.");
        }

        var values = 0;
        foreach (var condition in Conditions)
        {
            if (condition?.Index is not { } index)
            {
                throw new InvalidDocumentQueryException(collection, "", "a condition names no index");
            }

            if (!Enum.IsDefined(condition.Operator))
            {
                throw new InvalidDocumentQueryException(collection, index.Name, $"{(int)condition.Operator} is not an operator");
            }

            if (condition.Operator == QueryOperator.In)
            {
                if (condition.Value is not object?[] { Length: > 0 and <= DocumentQuery<object>.MaxInValues } list || !list.All(index.IsStoredForm))
                {
                    throw new InvalidDocumentQueryException(collection, index.Name, "In needs an object?[] of 1 to 1,000 values in the index's stored form (build the query with DocumentQuery, which converts them)");
                }

                values += list.Length;
                continue;
            }

            if (!index.IsStoredForm(condition.Value))
            {
                throw new InvalidDocumentQueryException(collection, index.Name, $"a {condition.Value!.GetType().Name} is not in the stored form of a {index.Kind} index (build the query with DocumentQuery, which converts it)");
            }

            if (condition.Value is null && condition.Operator is not (QueryOperator.Equal or QueryOperator.NotEqual))
            {
                throw new InvalidDocumentQueryException(collection, index.Name, $"{condition.Operator} cannot compare with null");
            }

            values++;
        }

        if (Conditions.Count > DocumentQuery<object>.MaxConditions)
        {
            throw new InvalidDocumentQueryException(collection, Conditions[^1].Index.Name, $"a query holds at most {DocumentQuery<object>.MaxConditions:N0} conditions; join values of one field with In, or index what the conditions select");
        }

        if (values > DocumentQuery<object>.MaxValues)
        {
            throw new InvalidDocumentQueryException(collection, Conditions[^1].Index.Name, $"the query would compare with {values:N0} values, more than the {DocumentQuery<object>.MaxValues:N0} a query takes (its conditions and In lists together); split it, or index what the lists select");
        }

        if (Order.Any(o => o.Index is null))
        {
            throw new InvalidDocumentQueryException(collection, "", "an order names no index");
        }
    }

    /// <summary>
    /// The arguments of a store's <see cref="IProjectionStore.QueryDocumentsAsync"/> or (<paramref name="page"/> false)
    /// <see cref="IProjectionStore.CountDocumentsAsync"/>, checked alike by every store.
    /// </summary>
    internal static void CheckRead(string projection, DocumentDefinition document, DocumentQuerySpec query, bool page = true)
    {
        ArgumentNullException.ThrowIfNull(projection);
        ArgumentNullException.ThrowIfNull(document);
        ArgumentNullException.ThrowIfNull(query);
        query.Check(document.Collection, page);
    }

    /// <summary>
    /// Refuses a query naming an index the serving build does not have (<paramref name="served"/>, from its stored
    /// shape): during the rebuild of a version that adds it, the old build serves without it, on every backend alike.
    /// </summary>
    /// <exception cref="InvalidDocumentQueryException">An index the query names is not served yet.</exception>
    internal void RefuseIndexesNotIn(IReadOnlyList<(string Name, string Kind)> served, string collection)
    {
        foreach (var index in Conditions.Select(c => c.Index).Concat(Order.Select(o => o.Index)))
        {
            var kind = served.FirstOrDefault(s => s.Name == index.Name).Kind;
            if (kind is null)
            {
                throw new InvalidDocumentQueryException(collection, index.Name, "the serving read model has no such index yet: the rebuild of the projection's new version adds it, and it can be queried once that build serves");
            }

            if (kind != index.Kind.ToString())
            {
                throw new InvalidDocumentQueryException(collection, index.Name, $"the serving read model indexes it as {kind}, not {index.Kind}: the rebuild of the projection's new version changes it, and it can be queried so once that build serves");
            }
        }
    }
}
