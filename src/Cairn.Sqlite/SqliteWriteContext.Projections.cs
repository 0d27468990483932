using System.Data.Common;
using System.Text;
using System.Text.Json;
using Cairn.EventStore;
using Cairn.Projections;

namespace Cairn.Sqlite;

/// <summary>
/// An inline projection attached to the writer: once live, every append applies it to <see cref="Build"/> in the
/// append's own savepoint.
/// </summary>
internal sealed class InlineProjection(Projection projection, ReadModelApply apply)
{
    public Projection Projection { get; } = projection;

    public ReadModelApply Apply { get; } = apply;

    private volatile bool _live;

    /// <summary>Whether appends apply it; set by the batch that goes live, on the writer thread only (read by its runner).</summary>
    public bool Live
    {
        get => _live;
        set => _live = value;
    }

    /// <summary>Set when appends stopped applying it because another process's switch left no build of its shape serving.</summary>
    public bool Detached { get; set; }

    /// <summary>The build appends write to.</summary>
    public long Build { get; set; }
}

internal sealed partial class SqliteWriteContext
{
    /// <summary>The inline projections; replaced whole (copy on write) by other threads, read by the writer.</summary>
    private volatile InlineProjection[] _inline = [];

    /// <summary>Whether appends may run inline projections' handlers: then every operation runs in its own savepoint.</summary>
    public bool AppliesInlineProjections => _inline.Length > 0;

    /// <summary>Inline projections switched live in the transaction in hand, with what they were before, to undo on rollback.</summary>
    private readonly List<(InlineProjection Projection, bool Live, long Build)> _inlineChanges = [];
    private int _inlineChangesAtOperation;

    /// <summary>The prepared statements of each build's document tables, dropped with the build.</summary>
    private readonly Dictionary<(long Build, string Collection), DocumentStatements> _documentStatements = [];

    public void AttachInline(InlineProjection projection)
    {
        lock (_inlineChanges)
        {
            _inline = [.. _inline.Where(p => p.Projection.Name != projection.Projection.Name), projection];
        }
    }

    /// <summary>Whether appends stopped applying an attached inline projection for another process's switch.</summary>
    public bool IsInlineDetached(string projection) => Array.Find(_inline, p => p.Projection.Name == projection) is { Detached: true, Live: false };

    public void DetachInline(string projection)
    {
        lock (_inlineChanges)
        {
            _inline = [.. _inline.Where(p => p.Projection.Name != projection)];
        }
    }

    /// <summary>Creates a projection's first build when it has none, and returns its builds.</summary>
    public ProjectionBuilds OpenProjection(Projection projection)
    {
        var builds = ReadBuilds(projection.Name);
        var serving = builds.Find(b => b.Serving);
        if (serving is null)
        {
            serving = CreateBuild(projection, serving: true);
            builds.Add(serving);
        }

        return new ProjectionBuilds(serving, builds.Find(b => !b.Serving));
    }

    /// <summary>Creates a shadow build, dropping an earlier one that never went live.</summary>
    public ProjectionBuild StartShadow(Projection projection)
    {
        foreach (var shadow in ReadBuilds(projection.Name).Where(b => !b.Serving))
        {
            DropBuild(projection.Name, shadow.Id);
        }

        return CreateBuild(projection, serving: false);
    }

    /// <summary>Applies a projection batch and stores the build's position, dead letters and switch with it.</summary>
    public ProjectionBatchResult ApplyProjectionBatch(ProjectionBatch batch)
    {
        var select = Sql("SELECT position, serving FROM cairn_projection_builds WHERE id = ?1 AND projection = ?2");
        select.Bind(1, batch.Build);
        select.Bind(2, batch.Projection);
        long stored;
        bool serving;
        try
        {
            if (!select.Step())
            {
                throw new ProjectionConflictException(batch.Projection, batch.Build, batch.ExpectedPosition);
            }

            stored = select.Int64(0);
            serving = select.Int64(1) == 1;
        }
        finally
        {
            select.Reset();
        }

        if (stored != batch.ExpectedPosition.Value)
        {
            throw new ProjectionConflictException(batch.Projection, batch.Build, batch.ExpectedPosition, new GlobalPosition(stored));
        }

        // Marked written before the handlers run: their own SQL writes through the connection, unseen by this
        // context, and a handler that throws after one must still have the savepoint rolled back.
        Wrote();
        var transaction = new SqliteReadModelTransaction(this, batch.Build);
        if (batch.Events.Count > 0)
        {
            batch.Apply(transaction, batch.Events);
        }

        var position = batch.Position.Value;
        var caughtUp = 0;
        if (batch.CatchUpToHead is { } filter && Head > position)
        {
            var missed = ReadEventsAfter(position, filter);
            if (missed.Count > 0)
            {
                batch.Apply(transaction, missed);
                caughtUp = missed.Count;
            }

            position = Head;
        }

        SetBuildPosition(batch.Build, position);
        foreach (var deadLetter in batch.DeadLetters)
        {
            InsertDeadLetter(batch.Build, deadLetter);
        }

        if (batch.GoLive)
        {
            if (!serving)
            {
                foreach (var old in ReadBuilds(batch.Projection).Where(b => b.Id != batch.Build))
                {
                    DropBuild(batch.Projection, old.Id);
                }

                var promote = Sql("UPDATE cairn_projection_builds SET serving = 1 WHERE id = ?1");
                promote.Bind(1, batch.Build);
                promote.Execute();
                CreateViews(batch.Build);
            }

            foreach (var inline in _inline)
            {
                if (inline.Projection.Name == batch.Projection)
                {
                    _inlineChanges.Add((inline, inline.Live, inline.Build));
                    inline.Live = true;
                    inline.Detached = false;
                    inline.Build = batch.Build;
                }
            }
        }

        return new ProjectionBatchResult(new GlobalPosition(position), caughtUp);
    }

    /// <summary>Applies the live inline projections to the events an append has just written.</summary>
    private void ApplyInline(List<RecordedEvent> written)
    {
        foreach (var inline in _inline)
        {
            if (!inline.Live)
            {
                continue;
            }

            if (BuildPositionOrNull(inline.Build) is not { } stored)
            {
                // Another process switched builds (a rebuild) and dropped this one. The build serving now is followed
                // when it has this projection's shape; otherwise appends here stop applying it, and its runner, whose
                // next batch finds its build gone, starts again on what serves.
                if (ServingBuildOf(inline.Projection) is { } serving)
                {
                    inline.Build = serving.Id;
                    stored = serving.Position;
                }
                else
                {
                    inline.Live = false;
                    inline.Detached = true;
                    continue;
                }
            }

            if (stored >= written[^1].Position.Value)
            {
                continue;
            }

            // Events after the build's position but before this append were written by a process that does not run
            // this projection: apply them first, so the read model never misses one.
            var events = stored < written[0].Position.Value - 1
                ? ReadEventsAfter(stored, inline.Projection.Filter)
                : written.FindAll(inline.Projection.Filter.Matches);
            if (events.Count > 0)
            {
                inline.Apply(new SqliteReadModelTransaction(this, inline.Build), events);
            }

            SetBuildPosition(inline.Build, Head);
        }
    }

    /// <summary>Whether an append must hand its events to inline projections.</summary>
    private bool HasLiveInline()
    {
        foreach (var inline in _inline)
        {
            if (inline.Live)
            {
                return true;
            }
        }

        return false;
    }

    private void MarkInlineChanges() => _inlineChangesAtOperation = _inlineChanges.Count;

    /// <summary>Undoes the live switches made since <paramref name="mark"/> (an undone operation, or a rolled back transaction).</summary>
    private void UndoInlineChanges(int mark)
    {
        for (var i = _inlineChanges.Count - 1; i >= mark; i--)
        {
            var (inline, live, build) = _inlineChanges[i];
            inline.Live = live;
            inline.Build = build;
        }

        _inlineChanges.RemoveRange(mark, _inlineChanges.Count - mark);
    }

    private List<RecordedEvent> ReadEventsAfter(long position, EventFilter filter)
    {
        var sql = new StringBuilder($"SELECT {SqliteRows.EventColumns} FROM cairn_events e WHERE e.position > $from");
        var parameters = new SqlParameters { { "$from", position } };
        SqliteQueries.AppendFilter(sql, parameters, filter);
        sql.Append(" ORDER BY e.position");
        using var statement = new RawStatement(_connection, sql.ToString());
        parameters.BindTo(statement);

        // A reader of its own: names written by this transaction must not outlive a rollback in a shared cache.
        var reader = new EventReader();
        var events = new List<RecordedEvent>();
        while (statement.Step())
        {
            events.Add(reader.Read(statement, _connection.Handle!));
        }

        return events;
    }

    private List<ProjectionBuild> ReadBuilds(string projection)
    {
        var select = Sql("SELECT id, version, shape, position, serving FROM cairn_projection_builds WHERE projection = ?1 ORDER BY id");
        select.Bind(1, projection);
        var builds = new List<ProjectionBuild>();
        try
        {
            while (select.Step())
            {
                builds.Add(new ProjectionBuild(projection, select.Int64(0), (int)select.Int64(1), select.Text(2), new GlobalPosition(select.Int64(3)), select.Int64(4) == 1));
            }
        }
        finally
        {
            select.Reset();
        }

        return builds;
    }

    private ProjectionBuild CreateBuild(Projection projection, bool serving)
    {
        RefuseTakenTableNames(projection);
        Wrote();
        var insert = Sql("INSERT INTO cairn_projection_builds (projection, version, shape, position, serving, created_ticks) VALUES (?1, ?2, ?3, 0, ?4, ?5) RETURNING id");
        insert.Bind(1, projection.Name);
        insert.Bind(2, projection.Version);
        insert.Bind(3, projection.Shape);
        insert.Bind(4, serving ? 1 : 0);
        insert.Bind(5, TimeTicks);
        var id = insert.ExecuteInt64()!.Value;
        var ddl = new StringBuilder();
        foreach (var document in projection.Documents)
        {
            var table = SqliteReadModelTransaction.DocumentTable(id, document.Collection);
            ddl.Append("CREATE TABLE ").Append(table).Append(" (id TEXT PRIMARY KEY, data BLOB NOT NULL");
            foreach (var index in document.Indexes)
            {
                ddl.Append(", \"ix_").Append(index.Name).Append("\" ").Append(index.Kind switch
                {
                    IndexKind.Text => "TEXT",
                    IndexKind.Real => "REAL",
                    _ => "INTEGER",
                });
            }

            ddl.Append(");\n");
            foreach (var index in document.Indexes)
            {
                // Named with a colon, which no collection name holds: "<table>_by_<index>" could be another collection's table.
                ddl.Append("CREATE INDEX \"").Append(table).Append(':').Append(index.Name).Append("\" ON ").Append(table).Append(" (\"ix_").Append(index.Name).Append("\");\n");
            }
        }

        Exec(ddl.ToString());

        // The projection's own DDL apart: SQLite refusing it (a syntax error, an unknown type) is the projection's
        // fault, which no retry mends, not a failure of the store.
        var own = new StringBuilder();
        foreach (var table in projection.SqlTables)
        {
            own.Append(table.CreateSql.Replace("{table}", SqliteReadModelTransaction.SqlTable(id, table.Name), StringComparison.Ordinal)).Append(";\n");
        }

        if (own.Length > 0)
        {
            Wrote();
            if (SQLitePCL.raw.sqlite3_exec(_connection.Handle, own.ToString()) is var rc && rc == SQLitePCL.raw.SQLITE_ERROR)
            {
                throw new InvalidProjectionException(projection.Name, $"SQLite refused the DDL of its tables: {SQLitePCL.raw.sqlite3_errmsg(_connection.Handle).utf8_to_string()}");
            }
            else if (rc != SQLitePCL.raw.SQLITE_OK)
            {
                throw new Microsoft.Data.Sqlite.SqliteException($"SQLite refused the read model's DDL: {SQLitePCL.raw.sqlite3_errmsg(_connection.Handle).utf8_to_string()}", rc);
            }
        }
        if (serving)
        {
            CreateViews(id);
        }

        return new ProjectionBuild(projection.Name, id, projection.Version, projection.Shape, GlobalPosition.Start, serving);
    }

    /// <summary>
    /// Refuses SQL table names whose view would replace a table, or a view that another projection's build serves:
    /// views share one name space in the file.
    /// </summary>
    private void RefuseTakenTableNames(Projection projection)
    {
        if (projection.SqlTables.Count == 0)
        {
            return;
        }

        var own = ReadBuilds(projection.Name).Select(b => "__b" + b.Id + "\"").ToList();
        // SQLite's names ignore case: "Customer_Counts" is the view "customer_counts".
        var select = Sql("SELECT type, coalesce(sql, '') FROM sqlite_schema WHERE name = ?1 COLLATE NOCASE");
        foreach (var table in projection.SqlTables)
        {
            select.Bind(1, table.Name);
            try
            {
                if (!select.Step())
                {
                    continue;
                }

                var type = select.Text(0);
                var sql = select.Text(1);
                if (type != "view" || !own.Any(suffix => sql.Contains(suffix, StringComparison.Ordinal)))
                {
                    throw new InvalidProjectionException(projection.Name, $"it declares the table '{table.Name}', but the file already has a {type} of that name{(type == "view" ? " serving another projection" : "")}; choose another name");
                }
            }
            finally
            {
                select.Reset();
            }
        }
    }

    /// <summary>Points each SQL table's view at the build's table.</summary>
    private void CreateViews(long build)
    {
        var ddl = new StringBuilder();
        foreach (var table in SqlTablesOfBuild(build))
        {
            var name = table[..table.LastIndexOf("__b", StringComparison.Ordinal)];
            ddl.Append("DROP VIEW IF EXISTS \"").Append(name).Append("\";\n");
            ddl.Append("CREATE VIEW \"").Append(name).Append("\" AS SELECT * FROM \"").Append(table).Append("\";\n");
        }

        if (ddl.Length > 0)
        {
            Exec(ddl.ToString());
        }
    }

    /// <summary>The views that select from one of <paramref name="tables"/>, as <see cref="CreateViews"/> makes them.</summary>
    private List<string> ViewsOf(List<string> tables)
    {
        var views = new List<string>();
        foreach (var table in tables)
        {
            var name = table[..table.LastIndexOf("__b", StringComparison.Ordinal)];
            var select = Sql("SELECT sql FROM sqlite_master WHERE type = 'view' AND name = ?1");
            select.Bind(1, name);
            try
            {
                if (select.Step() && select.Text(0).EndsWith("FROM \"" + table + "\"", StringComparison.Ordinal))
                {
                    views.Add(name);
                }
            }
            finally
            {
                select.Reset();
            }
        }

        return views;
    }

    private void DropBuild(string projection, long build)
    {
        // Finalized first: SQLite will not drop a table a prepared statement is still stepping.
        foreach (var key in _documentStatements.Keys.Where(k => k.Build == build).ToList())
        {
            _documentStatements[key].Dispose();
            _documentStatements.Remove(key);
        }

        var ddl = new StringBuilder();
        var sqlTables = SqlTablesOfBuild(build);
        foreach (var table in DocumentTablesOf(build).Concat(sqlTables))
        {
            ddl.Append("DROP TABLE IF EXISTS \"").Append(table).Append("\";\n");
        }

        // The views that show this build's tables go with them: a switch to a build without the table (a version that
        // no longer declares it) would otherwise leave a view of nothing, taking the name from a later version.
        foreach (var view in ViewsOf(sqlTables))
        {
            ddl.Append("DROP VIEW IF EXISTS \"").Append(view).Append("\";\n");
        }

        if (ddl.Length > 0)
        {
            Exec(ddl.ToString());
        }

        var delete = Sql("DELETE FROM cairn_projection_builds WHERE id = ?1");
        delete.Bind(1, build);
        delete.Execute();

        // Its dead letters describe what it skipped; a build that replaces it has its own.
        var deadLetters = Sql("DELETE FROM cairn_projection_dead_letters WHERE projection = ?1 AND build = ?2");
        deadLetters.Bind(1, projection);
        deadLetters.Bind(2, build);
        deadLetters.Execute();
    }

    private void DisposeProjectionStatements()
    {
        foreach (var statements in _documentStatements.Values)
        {
            statements.Dispose();
        }

        _documentStatements.Clear();
    }

    private DocumentStatements StatementsFor(long build, DocumentDefinition document)
    {
        if (!_documentStatements.TryGetValue((build, document.Collection), out var statements))
        {
            var table = SqliteReadModelTransaction.DocumentTable(build, document.Collection);
            statements = new DocumentStatements(
                new RawStatement(_connection, "SELECT data FROM " + table + " WHERE id = ?1"),
                new RawStatement(_connection, SqliteReadModelTransaction.UpsertSql(table, document)),
                new RawStatement(_connection, "DELETE FROM " + table + " WHERE id = ?1"));
            _documentStatements[(build, document.Collection)] = statements;
        }

        return statements;
    }

    private sealed record DocumentStatements(RawStatement Read, RawStatement Upsert, RawStatement Delete) : IDisposable
    {
        public void Dispose()
        {
            Read.Dispose();
            Upsert.Dispose();
            Delete.Dispose();
        }
    }

    /// <summary>A build's document tables, by the collections its stored shape names.</summary>
    private List<string> DocumentTablesOf(long build)
    {
        var select = Sql("SELECT shape FROM cairn_projection_builds WHERE id = ?1");
        select.Bind(1, build);
        try
        {
            return select.Step() ? [.. Projection.CollectionsOf(select.Text(0)).Select(collection => "cairn_doc_" + build + "_" + collection)] : [];
        }
        finally
        {
            select.Reset();
        }
    }

    /// <summary>
    /// A build's own SQL tables (<c>&lt;table&gt;__b&lt;build&gt;</c>): those its shape declares that exist. Matched by
    /// pattern, any table ending so was taken for the build's: another projection's document table
    /// (<c>archive__b1</c>), or an application's <c>ledger__b1</c>, dropped with the build.
    /// </summary>
    private List<string> SqlTablesOfBuild(long build)
    {
        var read = Sql("SELECT shape FROM cairn_projection_builds WHERE id = ?1");
        read.Bind(1, build);
        string? shape;
        try
        {
            shape = read.Step() ? read.Text(0) : null;
        }
        finally
        {
            read.Reset();
        }

        var tables = new List<string>();
        if (shape is null)
        {
            return tables;
        }

        var exists = Sql("SELECT name FROM sqlite_schema WHERE type = 'table' AND name = ?1");
        foreach (var declared in Projection.SqlTablesOf(shape))
        {
            exists.Bind(1, SqliteReadModelTransaction.SqlTable(build, declared));
            try
            {
                if (exists.Step())
                {
                    tables.Add(exists.Text(0));
                }
            }
            finally
            {
                exists.Reset();
            }
        }

        return tables;
    }

    private long BuildPosition(long build) => BuildPositionOrNull(build) ?? 0;

    /// <summary>A build's position; null when the build is gone.</summary>
    private long? BuildPositionOrNull(long build)
    {
        var select = Sql("SELECT position FROM cairn_projection_builds WHERE id = ?1");
        select.Bind(1, build);
        return select.ExecuteInt64();
    }

    /// <summary>The build serving <paramref name="projection"/> now, when it has the projection's version and shape.</summary>
    private (long Id, long Position)? ServingBuildOf(Projection projection)
    {
        var select = Sql("SELECT id, position FROM cairn_projection_builds WHERE projection = ?1 AND serving = 1 AND version = ?2 AND shape = ?3");
        select.Bind(1, projection.Name);
        select.Bind(2, (long)projection.Version);
        select.Bind(3, projection.Shape);
        try
        {
            return select.Step() ? (select.Int64(0), select.Int64(1)) : null;
        }
        finally
        {
            select.Reset();
        }
    }

    private void SetBuildPosition(long build, long position)
    {
        Wrote();
        var update = Sql("UPDATE cairn_projection_builds SET position = ?1 WHERE id = ?2");
        update.Bind(1, position);
        update.Bind(2, build);
        update.Execute();
    }

    private void InsertDeadLetter(long build, ProjectionDeadLetter deadLetter)
    {
        Wrote();
        Span<byte> id = stackalloc byte[16];
        SqliteRows.WriteId(deadLetter.EventId, id);
        var insert = Sql("""
            INSERT INTO cairn_projection_dead_letters (projection, position, event_id, stream, version, event_type, failure, attempts, dead_ticks, build)
            VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
            ON CONFLICT (projection, build, position) DO UPDATE SET failure = excluded.failure, attempts = excluded.attempts, dead_ticks = excluded.dead_ticks
            """);
        insert.Bind(1, deadLetter.Projection);
        insert.Bind(2, deadLetter.Position.Value);
        insert.Bind(3, id);
        insert.Bind(4, deadLetter.Stream.Value);
        insert.Bind(5, deadLetter.Version);
        insert.Bind(6, deadLetter.EventType);
        insert.Bind(7, JsonSerializer.Serialize(deadLetter.Failure, CairnJsonContext.Default.FailureInfo));
        insert.Bind(8, deadLetter.Attempts);
        insert.Bind(9, deadLetter.Time.UtcTicks);
        insert.Bind(10, build);
        insert.Execute();
    }

    private void Exec(string sql)
    {
        Wrote();
        var rc = SQLitePCL.raw.sqlite3_exec(_connection.Handle, sql);
        if (rc != SQLitePCL.raw.SQLITE_OK)
        {
            throw new Microsoft.Data.Sqlite.SqliteException($"SQLite refused the read model's DDL: {SQLitePCL.raw.sqlite3_errmsg(_connection.Handle).utf8_to_string()}", rc);
        }
    }

    /// <summary>A build's documents and tables inside the writer's transaction.</summary>
    private sealed class SqliteReadModelTransaction(SqliteWriteContext context, long build) : IReadModelTransaction
    {
        public DbConnection? Connection => context._connection;

        public static string DocumentTable(long build, string collection) => "cairn_doc_" + build + "_" + collection;

        public static string SqlTable(long build, string table) => table + "__b" + build;

        public ReadOnlyMemory<byte>? ReadDocument(DocumentDefinition document, string id)
        {
            var select = context.StatementsFor(build, document).Read;
            select.Bind(1, id);
            try
            {
                return select.Step() ? select.Blob(0).ToArray() : (ReadOnlyMemory<byte>?)null;
            }
            finally
            {
                select.Reset();
            }
        }

        public void WriteDocument(DocumentDefinition document, string id, ReadOnlyMemory<byte> json, IReadOnlyList<object?> indexValues)
        {
            context.Wrote();
            var upsert = context.StatementsFor(build, document).Upsert;
            upsert.Bind(1, id);
            upsert.Bind(2, json.Span);
            for (var i = 0; i < indexValues.Count; i++)
            {
                if (indexValues[i] is { } value)
                {
                    upsert.BindValue(i + 3, value);
                }
                else
                {
                    upsert.BindNull(i + 3);
                }
            }

            upsert.Execute();
        }

        public bool DeleteDocument(DocumentDefinition document, string id)
        {
            context.Wrote();
            var delete = context.StatementsFor(build, document).Delete;
            delete.Bind(1, id);
            delete.Execute();
            return context.Changes() > 0;
        }

        public string TableName(string table) => SqlTable(build, table);

        public static string UpsertSql(string table, DocumentDefinition document)
        {
            var sql = new StringBuilder("INSERT INTO ").Append(table).Append(" (id, data");
            foreach (var index in document.Indexes)
            {
                sql.Append(", \"ix_").Append(index.Name).Append('"');
            }

            sql.Append(") VALUES (?1, ?2");
            for (var i = 0; i < document.Indexes.Count; i++)
            {
                sql.Append(", ?").Append(i + 3);
            }

            sql.Append(") ON CONFLICT (id) DO UPDATE SET data = excluded.data");
            foreach (var index in document.Indexes)
            {
                sql.Append(", \"ix_").Append(index.Name).Append("\" = excluded.\"ix_").Append(index.Name).Append('"');
            }

            return sql.ToString();
        }
    }
}
