using System.Data.Common;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;

namespace Cairn.Projections.InMemory;

/// <summary>
/// Read models held in memory: for tests, small caches, and the temporary stores of point-in-time views. Beside an
/// <see cref="InMemoryEventStore"/> it shares the store's lock, so inline projections commit with the append and a
/// batch's documents and position commit together. Documents are kept as JSON, as a database would keep them.
/// </summary>
public sealed class InMemoryProjectionStore : IProjectionStore, IInlineScope
{
    private readonly object _gate;
    private readonly InMemoryEventStore? _events;
    private readonly Dictionary<string, Entry> _projections = new(StringComparer.Ordinal);
    private readonly List<ProjectionDeadLetter> _deadLetters = [];
    private readonly Dictionary<string, (Projection Projection, ReadModelApply Apply)> _inline = new(StringComparer.Ordinal);
    private readonly HashSet<string> _inlineLive = new(StringComparer.Ordinal);

    /// <summary>This store's hook in the event store's appends; one object, so that it can be taken out again.</summary>
    private readonly Func<IReadOnlyList<RecordedEvent>, Action> _stageInline;

    private long _nextBuild = 1;

    /// <summary>
    /// Creates an empty store. Given the in-memory event store, inline projections are applied by its appends and
    /// catch-ups read from it; without one, the store serves views built by hand.
    /// </summary>
    public InMemoryProjectionStore(InMemoryEventStore? events = null)
    {
        _events = events;
        _gate = events?.Gate ?? new object();
        _stageInline = StageInline;
    }

    /// <inheritdoc />
    public Task<ProjectionBuilds> OpenAsync(Projection projection, CancellationToken cancellationToken)
    {
        try
        {
            return Task.FromResult(Open(projection, cancellationToken));
        }
        catch (Exception ex)
        {
            return Refusal.Of<ProjectionBuilds>(ex);
        }
    }

    private ProjectionBuilds Open(Projection projection, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(projection);
        cancellationToken.ThrowIfCancellationRequested();
        RefuseSql(projection);
        lock (_gate)
        {
            if (!_projections.TryGetValue(projection.Name, out var entry))
            {
                entry = new Entry(NewBuild(projection));
                _projections.Add(projection.Name, entry);
            }

            return new ProjectionBuilds(entry.Serving.Describe(projection.Name, serving: true), entry.Shadow?.Describe(projection.Name, serving: false));
        }
    }

    /// <inheritdoc />
    public Task<ProjectionBuild> StartShadowAsync(Projection projection, CancellationToken cancellationToken)
    {
        try
        {
            return Task.FromResult(StartShadow(projection, cancellationToken));
        }
        catch (Exception ex)
        {
            return Refusal.Of<ProjectionBuild>(ex);
        }
    }

    private ProjectionBuild StartShadow(Projection projection, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(projection);
        cancellationToken.ThrowIfCancellationRequested();
        RefuseSql(projection);
        lock (_gate)
        {
            var entry = _projections.GetValueOrDefault(projection.Name)
                ?? throw new ProjectionNotFoundException($"Projection '{projection.Name}' is not open.");
            if (entry.Shadow is { } dropped)
            {
                DropDeadLetters(projection.Name, dropped.Id);
            }

            entry.Shadow = NewBuild(projection);
            return entry.Shadow.Describe(projection.Name, serving: false);
        }
    }

    /// <inheritdoc />
    public Task<ProjectionBatchResult> ApplyAsync(ProjectionBatch batch, CancellationToken cancellationToken)
    {
        // A stale batch, a projection not open, a handler's failure: through the task, as every backend reports them.
        try
        {
            return Task.FromResult(Apply(batch, cancellationToken));
        }
        catch (Exception ex)
        {
            return Refusal.Of<ProjectionBatchResult>(ex);
        }
    }

    private ProjectionBatchResult Apply(ProjectionBatch batch, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batch);
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate)
        {
            var entry = _projections.GetValueOrDefault(batch.Projection)
                ?? throw new ProjectionNotFoundException($"Projection '{batch.Projection}' is not open.");
            var build = entry.Serving.Id == batch.Build ? entry.Serving
                : entry.Shadow?.Id == batch.Build ? entry.Shadow
                : throw new ProjectionConflictException(batch.Projection, batch.Build, batch.ExpectedPosition);
            if (build.Position != batch.ExpectedPosition)
            {
                throw new ProjectionConflictException(batch.Projection, batch.Build, batch.ExpectedPosition, build.Position);
            }

            var transaction = new Transaction(build);
            batch.Apply(transaction, batch.Events);
            var position = batch.Position;
            var caughtUp = 0;
            if (batch.CatchUpToHead is { } filter && _events is not null)
            {
                var missed = _events.EventsAfterLocked(batch.Position, filter);
                if (missed.Count > 0)
                {
                    batch.Apply(transaction, missed);
                    caughtUp = missed.Count;
                }

                position = GlobalPosition.Max(position, _events.HeadLocked);
            }

            transaction.Commit(position);
            foreach (var deadLetter in batch.DeadLetters)
            {
                // One per build and position, as a database keeps it.
                _deadLetters.RemoveAll(d => d.Projection == batch.Projection && d.Build == build.Id && d.Position == deadLetter.Position);
                _deadLetters.Add(deadLetter with { Build = build.Id });
            }

            if (batch.GoLive)
            {
                if (build == entry.Shadow)
                {
                    DropDeadLetters(batch.Projection, entry.Serving.Id);
                    entry.Serving = build;
                    entry.Shadow = null;
                }

                if (_inline.ContainsKey(batch.Projection))
                {
                    _inlineLive.Add(batch.Projection);
                }
            }

            return new ProjectionBatchResult(position, caughtUp);
        }
    }

    /// <inheritdoc />
    public void AttachInline(Projection projection, ReadModelApply apply)
    {
        ArgumentNullException.ThrowIfNull(projection);
        ArgumentNullException.ThrowIfNull(apply);
        if (_events is null)
        {
            throw new InvalidOperationException("This in-memory projection store has no event store to apply inline projections with.");
        }

        lock (_gate)
        {
            _inline[projection.Name] = (projection, apply);
            _inlineLive.Remove(projection.Name);
            _events.AttachInline(_stageInline);
        }
    }

    /// <inheritdoc />
    object IInlineScope.InlineScope => (object?)_events ?? this;

    /// <inheritdoc />
    public void DetachInline(string projection)
    {
        lock (_gate)
        {
            _inline.Remove(projection);
            _inlineLive.Remove(projection);
            if (_inline.Count == 0)
            {
                _events?.DetachInline(_stageInline);
            }
        }
    }

    /// <summary>A build's dead letters go with the build. Under the gate.</summary>
    private void DropDeadLetters(string projection, long build) =>
        _deadLetters.RemoveAll(d => d.Projection == projection && d.Build == build);

    /// <inheritdoc />
    public Task<IReadOnlyList<ProjectionDeadLetter>> ListDeadLettersAsync(string projection, int max, CancellationToken cancellationToken)
    {
        try
        {
            ArgumentNullException.ThrowIfNull(projection);
            ArgumentOutOfRangeException.ThrowIfNegative(max);
            if (cancellationToken.IsCancellationRequested)
            {
                return Task.FromCanceled<IReadOnlyList<ProjectionDeadLetter>>(cancellationToken);
            }

            lock (_gate)
            {
                return Task.FromResult<IReadOnlyList<ProjectionDeadLetter>>([.. _deadLetters.Where(d => d.Projection == projection).OrderBy(d => d.Position).ThenBy(d => d.Build).Take(max)]);
            }
        }
        catch (Exception ex)
        {
            return Refusal.Of<IReadOnlyList<ProjectionDeadLetter>>(ex);
        }
    }

    /// <inheritdoc />
    public Task<StoredDocument?> LoadDocumentAsync(string projection, DocumentDefinition document, string id, CancellationToken cancellationToken)
    {
        try
        {
            ArgumentNullException.ThrowIfNull(projection);
            ArgumentNullException.ThrowIfNull(document);
            ArgumentNullException.ThrowIfNull(id);
            cancellationToken.ThrowIfCancellationRequested();
            lock (_gate)
            {
                var documents = Serving(projection).Collection(document.Collection);
                return Task.FromResult(documents.TryGetValue(id, out var stored) ? new StoredDocument(id, stored.Json) : null);
            }
        }
        catch (Exception ex)
        {
            return Refusal.Of<StoredDocument?>(ex);
        }
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<StoredDocument>> QueryDocumentsAsync(string projection, DocumentDefinition document, DocumentQuerySpec query, CancellationToken cancellationToken)
    {
        try
        {
            DocumentQuerySpec.CheckRead(projection, document, query);
            cancellationToken.ThrowIfCancellationRequested();
            lock (_gate)
            {
                var matches = Match(projection, document, query);
                var slots = Serving(projection).Slots(document, query.Order.Select(o => o.Index), query);
                IEnumerable<KeyValuePair<string, Stored>> ordered = matches.OrderBy(m => m, new DocumentOrder(slots, query.Order));
                return Task.FromResult<IReadOnlyList<StoredDocument>>([.. ordered.Skip(query.Skip).Take(query.Take).Select(m => new StoredDocument(m.Key, m.Value.Json))]);
            }
        }
        catch (Exception ex)
        {
            return Refusal.Of<IReadOnlyList<StoredDocument>>(ex);
        }
    }

    /// <inheritdoc />
    public Task<long> CountDocumentsAsync(string projection, DocumentDefinition document, DocumentQuerySpec query, CancellationToken cancellationToken)
    {
        try
        {
            DocumentQuerySpec.CheckRead(projection, document, query, page: false);
            cancellationToken.ThrowIfCancellationRequested();
            lock (_gate)
            {
                return Task.FromResult((long)Match(projection, document, query).Count);
            }
        }
        catch (Exception ex)
        {
            return Refusal.Of<long>(ex);
        }
    }

    private List<KeyValuePair<string, Stored>> Match(string projection, DocumentDefinition document, DocumentQuerySpec query)
    {
        var serving = Serving(projection);
        var positions = serving.Slots(document, query.Conditions.Select(c => c.Index), query);
        var matches = new List<KeyValuePair<string, Stored>>();
        foreach (var pair in serving.Collection(document.Collection))
        {
            var all = true;
            for (var i = 0; i < positions.Length && all; i++)
            {
                all = StoredValues.Satisfies(pair.Value.Index[positions[i]], query.Conditions[i]);
            }

            if (all)
            {
                matches.Add(pair);
            }
        }

        return matches;
    }

    private Build Serving(string projection) =>
        _projections.TryGetValue(projection, out var entry)
            ? entry.Serving
            : throw new ProjectionNotFoundException($"Projection '{projection}' has no read model yet: it has not been started.");

    /// <summary>
    /// Applies the live inline projections to an append's events into transactions of their own and returns what lands
    /// them. Called by the event store under its lock (which is ours) while the append is not yet visible; it lands them
    /// only once every projection store over it has staged its own.
    /// </summary>
    private Action StageInline(IReadOnlyList<RecordedEvent> events)
    {
        if (_inlineLive.Count == 0)
        {
            return static () => { };
        }

        var pending = new List<(Transaction Transaction, GlobalPosition Position)>();
        foreach (var name in _inlineLive)
        {
            var (projection, apply) = _inline[name];
            var build = _projections[name].Serving;
            var transaction = new Transaction(build);
            apply(transaction, [.. events.Where(projection.Filter.Matches)]);
            pending.Add((transaction, events[^1].Position));
        }

        // Every inline projection succeeded: their writes land together, once the other stores' have staged too.
        return () =>
        {
            foreach (var (transaction, position) in pending)
            {
                transaction.Commit(position);
            }
        };
    }

    private Build NewBuild(Projection projection) => new(_nextBuild++, projection.Version, projection.Shape);

    private static void RefuseSql(Projection projection)
    {
        if (projection.SqlTables.Count > 0)
        {
            throw new NotSupportedException($"Projection '{projection.Name}' declares SQL tables ({string.Join(", ", projection.SqlTables.Select(t => t.Name))}); the in-memory backend has no SQL. Use the SQLite backend.");
        }
    }

    private sealed class Entry(Build serving)
    {
        public Build Serving { get; set; } = serving;

        public Build? Shadow { get; set; }
    }

    private sealed class Build(long id, int version, string shape)
    {
        private readonly Dictionary<string, Dictionary<string, Stored>> _collections = new(StringComparer.Ordinal);

        public long Id { get; } = id;

        public GlobalPosition Position { get; set; }

        public Dictionary<string, Stored> Collection(string name)
        {
            if (!_collections.TryGetValue(name, out var documents))
            {
                documents = new Dictionary<string, Stored>(StringComparer.Ordinal);
                _collections.Add(name, documents);
            }

            return documents;
        }

        public ProjectionBuild Describe(string projection, bool serving) => new(projection, Id, version, shape, Position, serving);

        /// <summary>
        /// Where each of the query's indexes sits in this build's stored values: the build's own declaration, which a
        /// new version of the projection may have changed. Refuses an index the build does not have.
        /// </summary>
        public int[] Slots(DocumentDefinition document, IEnumerable<DocumentIndex> indexes, DocumentQuerySpec query)
        {
            var served = Projection.IndexesOf(shape, document.Collection) ?? [.. document.Indexes.Select(i => (i.Name, i.Kind.ToString()))];
            query.RefuseIndexesNotIn(served, document.Collection);
            var names = served.Select(s => s.Name).ToList();
            return [.. indexes.Select(index => names.IndexOf(index.Name))];
        }
    }

    private sealed record Stored(byte[] Json, object?[] Index);

    /// <summary>Buffers a batch's writes and lands them at <see cref="Commit"/>, so a batch that throws leaves nothing.</summary>
    private sealed class Transaction(Build build) : IReadModelTransaction
    {
        private readonly Dictionary<(string Collection, string Id), Stored?> _writes = [];

        public DbConnection? Connection => null;

        public ReadOnlyMemory<byte>? ReadDocument(DocumentDefinition document, string id)
        {
            // The casts matter: a bare null would convert to an empty ReadOnlyMemory (a null array), not to a missing document.
            if (_writes.TryGetValue((document.Collection, id), out var written))
            {
                return written is null ? (ReadOnlyMemory<byte>?)null : written.Json;
            }

            return build.Collection(document.Collection).TryGetValue(id, out var stored) ? stored.Json : (ReadOnlyMemory<byte>?)null;
        }

        public void WriteDocument(DocumentDefinition document, string id, ReadOnlyMemory<byte> json, IReadOnlyList<object?> indexValues) =>
            _writes[(document.Collection, id)] = new Stored(json.ToArray(), [.. indexValues]);

        public bool DeleteDocument(DocumentDefinition document, string id)
        {
            var existed = ReadDocument(document, id) is not null;
            _writes[(document.Collection, id)] = null;
            return existed;
        }

        public string TableName(string table) => throw new NotSupportedException("The in-memory backend has no SQL tables.");

        public void Commit(GlobalPosition position)
        {
            foreach (var ((collection, id), stored) in _writes)
            {
                if (stored is null)
                {
                    build.Collection(collection).Remove(id);
                }
                else
                {
                    build.Collection(collection)[id] = stored;
                }
            }

            _writes.Clear();
            if (position > build.Position)
            {
                build.Position = position;
            }
        }
    }

    private sealed class DocumentOrder(int[] positions, IReadOnlyList<(DocumentIndex Index, bool Descending)> order) : IComparer<KeyValuePair<string, Stored>>
    {
        private readonly int[] _positions = positions;

        public int Compare(KeyValuePair<string, Stored> x, KeyValuePair<string, Stored> y)
        {
            for (var i = 0; i < _positions.Length; i++)
            {
                var c = StoredValues.Compare(x.Value.Index[_positions[i]], y.Value.Index[_positions[i]]);
                if (c != 0)
                {
                    return order[i].Descending ? -c : c;
                }
            }

            return StoredValues.CompareText(x.Key, y.Key);
        }
    }
}

/// <summary>Compares stored index values as SQLite does: null first, then numbers by value, then text ordinally.</summary>
internal static class StoredValues
{
    /// <summary>
    /// Text in code point order, as SQLite's and PostgreSQL's byte order of UTF-8 has it. .NET's ordinal order compares
    /// UTF-16 units, which puts U+E000 to U+FFFF after the characters beyond U+FFFF (written as surrogate pairs).
    /// </summary>
    public static int CompareText(string x, string y)
    {
        var common = x.AsSpan().CommonPrefixLength(y);
        if (common == x.Length || common == y.Length)
        {
            return x.Length.CompareTo(y.Length);
        }

        return InCodePointOrder(x[common]).CompareTo(InCodePointOrder(y[common]));
    }

    /// <summary>A UTF-16 unit moved so that surrogates sort above every other unit, as the code points they make do.</summary>
    private static int InCodePointOrder(char c) => c >= 0xE000 ? c - 0x800 : char.IsSurrogate(c) ? c + 0x2000 : c;

    public static int Compare(object? x, object? y)
    {
        var rank = Rank(x).CompareTo(Rank(y));
        if (rank != 0)
        {
            return rank;
        }

        return x switch
        {
            null => 0,
            string s => CompareText(s, (string)y!),
            long l when y is long m => l.CompareTo(m),
            _ => Convert.ToDouble(x, System.Globalization.CultureInfo.InvariantCulture).CompareTo(Convert.ToDouble(y, System.Globalization.CultureInfo.InvariantCulture)),
        };
    }

    public static bool Satisfies(object? value, DocumentCondition condition) => condition.Operator switch
    {
        QueryOperator.Equal => condition.Value is null ? value is null : value is not null && Compare(value, condition.Value) == 0,
        QueryOperator.NotEqual => condition.Value is null ? value is not null : value is not null && Compare(value, condition.Value) != 0,
        QueryOperator.LessThan => value is not null && Compare(value, condition.Value) < 0,
        QueryOperator.LessThanOrEqual => value is not null && Compare(value, condition.Value) <= 0,
        QueryOperator.GreaterThan => value is not null && Compare(value, condition.Value) > 0,
        QueryOperator.GreaterThanOrEqual => value is not null && Compare(value, condition.Value) >= 0,
        QueryOperator.In => value is not null && ((object?[])condition.Value!).Any(v => v is not null && Compare(value, v) == 0),
        _ => false,
    };

    private static int Rank(object? value) => value switch
    {
        null => 0,
        long or double => 1,
        _ => 2,
    };
}
