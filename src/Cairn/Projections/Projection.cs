using Cairn.EventStore;

namespace Cairn.Projections;

/// <summary>When a projection's read model is updated.</summary>
public enum ProjectionLifecycle
{
    /// <summary>In the background, from its checkpoint, in its own transactions: appends never wait for it.</summary>
    Async,

    /// <summary>In the transaction of the append itself: a committed append is already in the read model.</summary>
    Inline,
}

/// <summary>What a projection does with an event it still fails on after its retries.</summary>
public enum ProjectionFailurePolicy
{
    /// <summary>Stop at the event and report it (status, log, metric) until someone fixes the cause: nothing is skipped.</summary>
    Stop,

    /// <summary>Record the event as a dead letter of the projection and go on with the next one.</summary>
    SkipAndDeadLetter,
}

/// <summary>
/// A projection: the event types it handles and how each changes its read model. Derive from it, declare documents with
/// <see cref="Document{T}(Func{T, string}?, string?)"/> (or tables with <see cref="SqlTable"/>), and handle events with
/// <see cref="On{TEvent}"/>. Handlers run inside the read model's transaction and must be synchronous and deterministic:
/// a rebuild replays them over the whole log.
/// <code>
/// public sealed class OrderTotals : Projection
/// {
///     public OrderTotals() : base("order-totals")
///     {
///         Document&lt;OrderTotal&gt;(t => t.OrderId).Index("customer", t => t.Customer);
///         On&lt;OrderPlaced&gt;((ctx, e) => ctx.Documents.Store(new OrderTotal(e.OrderId, e.Customer, 0m)));
///     }
/// }
/// </code>
/// </summary>
public abstract class Projection
{
    private readonly Dictionary<Type, Action<IProjectionContext, object>> _handlers = [];
    private readonly List<DocumentDefinition> _documents = [];
    private readonly List<SqlTableDefinition> _tables = [];

    /// <summary>Creates a projection with a stable name; its read model and checkpoint are stored under it.</summary>
    protected Projection(string name)
    {
        Name = ProjectionNames.Validate(name);
    }

    /// <summary>The projection's name: letters, digits, <c>.</c>, <c>_</c>, <c>-</c> or <c>:</c>, at most 128 characters.</summary>
    public string Name { get; }

    /// <summary>
    /// The version of the projection's code. Raise it when a change should rebuild the read model; with
    /// <see cref="RebuildOnVersionChange"/> the rebuild then starts by itself, into a shadow, without downtime.
    /// </summary>
    public int Version { get; init; } = 1;

    /// <summary>Whether the read model is updated in the append's transaction or in the background.</summary>
    public ProjectionLifecycle Lifecycle { get; init; } = ProjectionLifecycle.Async;

    /// <summary>Which events it reads: <c>$all</c> (default) or a category; narrowed further to the types it handles.</summary>
    public EventFilter Filter { get; init; } = EventFilter.All;

    /// <summary>What happens after an event fails every retry.</summary>
    public ProjectionFailurePolicy OnFailure { get; init; } = ProjectionFailurePolicy.Stop;

    /// <summary>How many times a failing batch is tried again before the failing event meets <see cref="OnFailure"/>.</summary>
    public int MaxRetries { get; init; } = 3;

    /// <summary>The first delay between retries (at most 30 days); it doubles with each, up to 30 days.</summary>
    public TimeSpan RetryDelay { get; init; } = TimeSpan.FromMilliseconds(100);

    /// <summary>The most events applied in one transaction.</summary>
    public int BatchSize { get; init; } = 1000;

    /// <summary>
    /// The most events applied in one transaction while catching up or rebuilding: batches grow from
    /// <see cref="BatchSize"/> to this while each read finds a full batch, so a backlog is applied in fewer, larger
    /// commits (each holding the backend's writer longer), and shrink back once caught up. A value below
    /// <see cref="BatchSize"/> means no growth.
    /// </summary>
    public int CatchUpBatchSize { get; init; } = 10_000;

    /// <summary>When the stored read model was built by another <see cref="Version"/>, rebuild it on start.</summary>
    public bool RebuildOnVersionChange { get; init; }

    /// <summary>The documents it writes.</summary>
    public IReadOnlyList<DocumentDefinition> Documents => _documents;

    /// <summary>The tables it writes with its own SQL.</summary>
    public IReadOnlyList<SqlTableDefinition> SqlTables => _tables;

    /// <summary>The event classes it handles.</summary>
    public IReadOnlyCollection<Type> HandledEventTypes => _handlers.Keys;

    /// <summary>
    /// A text that changes whenever the stored shape changes (collections, indexes, tables). A change without a new
    /// <see cref="Version"/> is refused on start, since the stored read model would not fit the code.
    /// </summary>
    public string Shape =>
        string.Join(";", _documents.Select(d => d.Shape)) + "|" + string.Join(";", _tables.Select(t => t.Name + ":" + t.CreateSql));

    /// <summary>
    /// The document collections a stored <see cref="Shape"/> names, so a backend can tell a build's own tables from
    /// others' without matching names by pattern. The part before the first <c>|</c> holds only collection and index
    /// names, which cannot contain <c>|</c>, <c>;</c> or <c>(</c>.
    /// </summary>
    internal static IReadOnlyList<string> CollectionsOf(string shape)
    {
        return [.. DocumentsOf(shape).Split(';', StringSplitOptions.RemoveEmptyEntries)
            .Select(document => document.IndexOf('(', StringComparison.Ordinal) is var open and > 0 ? document[..open] : null)
            .OfType<string>()];
    }

    /// <summary>
    /// The indexes a stored <see cref="Shape"/> gives <paramref name="collection"/>, by name in their order, each with
    /// its kind; null when the shape has no such collection.
    /// </summary>
    internal static IReadOnlyList<(string Name, string Kind)>? IndexesOf(string shape, string collection)
    {
        foreach (var document in DocumentsOf(shape).Split(';', StringSplitOptions.RemoveEmptyEntries))
        {
            var open = document.IndexOf('(', StringComparison.Ordinal);
            if (open > 0 && document[..open] == collection)
            {
                return [.. document[(open + 1)..^1].Split(',', StringSplitOptions.RemoveEmptyEntries)
                    .Select(index => index.IndexOf(':', StringComparison.Ordinal) is var colon ? (index[..colon], index[(colon + 1)..]) : (index, ""))];
            }
        }

        return null;
    }

    /// <summary>
    /// The SQL tables a stored <see cref="Shape"/> declares, by their declared names, so a backend drops and points views at
    /// a build's own tables rather than at every table whose name ends like a build (an application's <c>ledger__b1</c>).
    /// The part after the first <c>|</c> holds <c>name:DDL</c> entries joined by <c>;</c>; a DDL of several statements
    /// holds <c>;</c> too, but no statement starts with a name and a colon.
    /// </summary>
    internal static IReadOnlyList<string> SqlTablesOf(string shape)
    {
        var bar = shape.IndexOf('|', StringComparison.Ordinal);
        if (bar < 0)
        {
            return [];
        }

        return [.. shape[(bar + 1)..].Split(';')
            .Select(entry => entry.IndexOf(':', StringComparison.Ordinal) is var colon and > 0 && IsIdentifier(entry[..colon]) ? entry[..colon] : null)
            .OfType<string>()
            .Distinct(StringComparer.Ordinal)];
    }

    private static bool IsIdentifier(string name) =>
        name.Length <= 48 && char.IsAsciiLetter(name[0]) && name.All(c => char.IsAsciiLetterOrDigit(c) || c == '_');

    /// <summary>The document collections and their indexes in a stored <see cref="Shape"/>: the part before its tables.</summary>
    internal static string DocumentsOf(string shape) =>
        shape.IndexOf('|', StringComparison.Ordinal) is var bar and >= 0 ? shape[..bar] : "";

    /// <summary>Handles events of type <typeparamref name="TEvent"/> (and of its registered subclasses).</summary>
    protected void On<TEvent>(Action<IProjectionContext, TEvent> apply)
        where TEvent : class
    {
        ArgumentNullException.ThrowIfNull(apply);
        if (!_handlers.TryAdd(typeof(TEvent), (context, e) => apply(context, (TEvent)e)))
        {
            throw new ArgumentException($"Projection '{Name}' handles {typeof(TEvent).Name} twice.");
        }
    }

    /// <summary>
    /// Declares a kind of document it writes. <paramref name="id"/> finds a document's id (null when every store names
    /// the id); the collection's name is the type's name in snake case unless given.
    /// </summary>
    protected DocumentDefinition<T> Document<T>(Func<T, string>? id = null, string? collection = null)
        where T : class
    {
        var name = collection ?? ProjectionNames.SnakeCase(typeof(T).Name);
        DocumentDefinition<T> definition;
        try
        {
            definition = new DocumentDefinition<T>(name, id);
        }
        catch (ArgumentException invalid) when (collection is null)
        {
            // The name was derived, not given: say from what, and how to choose one.
            throw new ArgumentException($"Projection '{Name}': the collection name '{name}' derived from the type {typeof(T).Name} is not valid ({invalid.Message}); give one: Document<{typeof(T).Name}>(collection: \"...\").", nameof(collection), invalid);
        }

        // Names compare without case: SQLite's table names ignore it.
        if (_documents.Exists(d => string.Equals(d.Collection, definition.Collection, StringComparison.OrdinalIgnoreCase) || d.DocumentType == typeof(T)))
        {
            throw new ArgumentException($"Projection '{Name}' declares the collection '{definition.Collection}' (names compare without case) or the document type {typeof(T).Name} twice.");
        }

        _documents.Add(definition);
        return definition;
    }

    /// <summary>
    /// Declares a table it writes with its own SQL (<see cref="IProjectionContext.Sql"/>). Each build of the projection
    /// gets its own physical table, so a rebuild fills a shadow while the current one serves; a view named
    /// <paramref name="name"/> always shows the serving one.
    /// </summary>
    protected void SqlTable(string name, string createSql)
    {
        ProjectionNames.ValidateIdentifier("table", name);
        // 'doc_' and a digit begins the name of a build's document table on PostgreSQL ('doc_<build>_<collection>'):
        // a view of that name would take the table's place when that build is made.
        if (name.StartsWith("cairn_", StringComparison.OrdinalIgnoreCase) || name.StartsWith("sqlite_", StringComparison.OrdinalIgnoreCase)
            || (name.StartsWith("doc_", StringComparison.OrdinalIgnoreCase) && name.Length > 4 && char.IsAsciiDigit(name[4])))
        {
            throw new ArgumentException($"Table '{name}': names starting with 'cairn_', 'sqlite_', or 'doc_' and a digit are reserved.", nameof(name));
        }

        // A build's own table is '<name>__b<build>': a name ending so would be another projection's table, or the view of
        // one, where a build of a projection named like the rest would go.
        if (name.LastIndexOf("__b", StringComparison.OrdinalIgnoreCase) is var suffix and > 0 && suffix + 3 < name.Length && name[(suffix + 3)..].All(char.IsAsciiDigit))
        {
            throw new ArgumentException($"Table '{name}': names ending in '__b' and digits are reserved for the builds' tables.", nameof(name));
        }

        if (string.IsNullOrWhiteSpace(createSql) || !createSql.Contains("{table}", StringComparison.Ordinal))
        {
            throw new ArgumentException($"The DDL of table '{name}' must create '{{table}}'.", nameof(createSql));
        }

        if (_tables.Exists(t => string.Equals(t.Name, name, StringComparison.OrdinalIgnoreCase)))
        {
            throw new ArgumentException($"Projection '{Name}' declares the table '{name}' twice (names compare without case).");
        }

        _tables.Add(new SqlTableDefinition(name, createSql));
    }

    /// <summary>Refuses impossible settings.</summary>
    public virtual void Validate()
    {
        if (Version < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(Version), Version, $"Projection '{Name}': Version must be 1 or more.");
        }

        ArgumentNullException.ThrowIfNull(Filter);
        if (Filter.Stream is not null || Filter.EventTypes is not null)
        {
            throw new ArgumentException($"Projection '{Name}': Filter must be $all or a category; the event types come from its handlers.", nameof(Filter));
        }

        ArgumentOutOfRangeException.ThrowIfNegative(MaxRetries, nameof(MaxRetries));
        if (RetryDelay < TimeSpan.Zero || RetryDelay > Subscriptions.SubscriptionOptions.MaxWait)
        {
            // Each is waited out with a timer, which waits at most about 49 days.
            throw new ArgumentOutOfRangeException(nameof(RetryDelay), RetryDelay, $"Projection '{Name}': RetryDelay must be between 0 and {Subscriptions.SubscriptionOptions.MaxWait.TotalDays} days.");
        }
        if (BatchSize is < 1 or > 100_000)
        {
            throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, $"Projection '{Name}': BatchSize must be between 1 and 100,000.");
        }

        if (CatchUpBatchSize is < 1 or > 100_000)
        {
            throw new ArgumentOutOfRangeException(nameof(CatchUpBatchSize), CatchUpBatchSize, $"Projection '{Name}': CatchUpBatchSize must be between 1 and 100,000.");
        }

        if (_handlers.Count == 0)
        {
            throw new ArgumentException($"Projection '{Name}' handles no event type: add handlers with On<TEvent>(...).");
        }
    }

    internal IReadOnlyDictionary<Type, Action<IProjectionContext, object>> Handlers => _handlers;

    internal DocumentDefinition? FindDocument(Type type) => _documents.Find(d => d.DocumentType == type);
}

/// <summary>The rules for projection, collection, index and table names.</summary>
public static class ProjectionNames
{
    /// <summary>Returns a projection name when valid: 1 to 128 letters, digits, <c>.</c>, <c>_</c>, <c>-</c> or <c>:</c>.</summary>
    public static string Validate(string? name)
    {
        if (string.IsNullOrEmpty(name) || name.Length > 128 || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-' or ':'))
        {
            throw new ArgumentException($"'{name}' is not a valid projection name: 1 to 128 letters, digits, '.', '_', '-' or ':'.", nameof(name));
        }

        return name;
    }

    /// <summary>Returns a name usable inside SQL identifiers: 1 to 48 ASCII letters, digits or <c>_</c>, starting with a letter.</summary>
    public static string ValidateIdentifier(string kind, string? name)
    {
        if (string.IsNullOrEmpty(name) || name.Length > 48 || !char.IsAsciiLetter(name[0]) || !name.All(c => char.IsAsciiLetterOrDigit(c) || c == '_'))
        {
            throw new ArgumentException($"'{name}' is not a valid {kind} name: 1 to 48 ASCII letters, digits or '_', starting with a letter.", nameof(name));
        }

        return name;
    }

    internal static string SnakeCase(string typeName)
    {
        var name = typeName.Split('`')[0];
        var builder = new System.Text.StringBuilder(name.Length + 4);
        for (var i = 0; i < name.Length; i++)
        {
            var c = name[i];
            if (char.IsUpper(c) && i > 0 && (char.IsLower(name[i - 1]) || (i + 1 < name.Length && char.IsLower(name[i + 1]))))
            {
                builder.Append('_');
            }

            builder.Append(char.IsAsciiLetterOrDigit(c) ? char.ToLowerInvariant(c) : '_');
        }

        return builder.ToString();
    }
}
