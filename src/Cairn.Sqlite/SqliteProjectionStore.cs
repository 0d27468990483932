using System.Text;
using System.Text.Json;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Projections;
using Microsoft.Data.Sqlite;
using SQLitePCL;

namespace Cairn.Sqlite;

/// <summary>
/// Read models in the same SQLite file as the log. A projection's batches, its position and its dead letters commit
/// through the store's single writer in one transaction, without an fsync of their own; inline projections run in the
/// savepoint of each append, and are as durable as it. Queries read the serving build on pooled connections, each in one read transaction,
/// so a switch to a rebuilt read model is seen whole or not at all.
/// </summary>
public sealed class SqliteProjectionStore : IProjectionStore, IInlineScope
{
    private readonly SqliteEventStore _store;

    /// <summary>Uses the store's file and writer.</summary>
    public SqliteProjectionStore(SqliteEventStore store)
    {
        ArgumentNullException.ThrowIfNull(store);
        _store = store;
    }

    /// <inheritdoc />
    public Task<ProjectionBuilds> OpenAsync(Projection projection, CancellationToken cancellationToken)
    {
        if (projection is null)
        {
            return Refusal.Of<ProjectionBuilds>(new ArgumentNullException(nameof(projection)));
        }

        return _store.Writer.ExecuteAsync(context => context.OpenProjection(projection), cancellationToken);
    }

    /// <inheritdoc />
    public Task<ProjectionBuild> StartShadowAsync(Projection projection, CancellationToken cancellationToken)
    {
        if (projection is null)
        {
            return Refusal.Of<ProjectionBuild>(new ArgumentNullException(nameof(projection)));
        }

        return _store.Writer.ExecuteAsync(context => context.StartShadow(projection), cancellationToken);
    }

    /// <inheritdoc />
    public async Task<ProjectionBatchResult> ApplyAsync(ProjectionBatch batch, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batch);
        try
        {
            // Not flushed to disk on its own: the read model is derived data, and its position commits with it, so a
            // power cut can only take both back to an earlier batch, which is then applied again. The next durable commit
            // (any append) flushes it.
            return await _store.Writer.ExecuteAsync(context => context.ApplyProjectionBatch(batch), cancellationToken, durable: false, guarded: true).ConfigureAwait(false);
        }
        catch (ProjectionEventException failure) when (FileFailureIn(failure.InnerException) is { } file)
        {
            // The file or the engine failed under a handler's write or SQL (the disk full, an I/O error, a lock): the
            // store failed, not the event, so the runner starts again from the stored position rather than meeting the
            // failure policy with a good event.
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(file);
            throw;
        }
    }

    /// <summary>
    /// The failure of the file or the engine <paramref name="error"/> is or wraps (busy, locked, out of memory, read-only,
    /// an I/O error, corrupt, full, cannot open, not a database), or null: any other SQLite error is a statement's own.
    /// </summary>
    private static SqliteException? FileFailureIn(Exception? error)
    {
        for (var e = error; e is not null; e = e.InnerException)
        {
            if (e is SqliteException { SqliteErrorCode: 5 or 6 or 7 or 8 or 10 or 11 or 13 or 14 or 26 } failure)
            {
                return failure;
            }
        }

        return null;
    }

    /// <inheritdoc />
    public void AttachInline(Projection projection, ReadModelApply apply)
    {
        ArgumentNullException.ThrowIfNull(projection);
        ArgumentNullException.ThrowIfNull(apply);
        _store.Writer.AttachInline(new InlineProjection(projection, apply));
    }

    /// <inheritdoc />
    public void DetachInline(string projection) => _store.Writer.DetachInline(projection);

    /// <inheritdoc />
    public bool IsInlineDetached(string projection) => _store.Writer.IsInlineDetached(projection);

    /// <inheritdoc />
    object IInlineScope.InlineScope => _store;

    /// <inheritdoc />
    public Task<IReadOnlyList<ProjectionDeadLetter>> ListDeadLettersAsync(string projection, int max, CancellationToken cancellationToken)
    {
        try
        {
            ArgumentNullException.ThrowIfNull(projection);
            ArgumentOutOfRangeException.ThrowIfNegative(max);
            cancellationToken.ThrowIfCancellationRequested();
            using var lease = _store.RentReadConnection();
            using var select = new RawStatement(lease.Db, "SELECT position, event_id, stream, version, event_type, failure, attempts, dead_ticks, build FROM cairn_projection_dead_letters WHERE projection = ?1 ORDER BY position, build LIMIT ?2");
            select.Bind(1, projection);
            select.Bind(2, max);
            var deadLetters = new List<ProjectionDeadLetter>();
            while (select.Step())
            {
                deadLetters.Add(new ProjectionDeadLetter(
                    projection,
                    select.Int64(8),
                    new GlobalPosition(select.Int64(0)),
                    new MessageId(new Guid(select.Blob(1), bigEndian: true)),
                    new StreamName(select.Text(2)),
                    select.Int64(3),
                    select.Text(4),
                    JsonSerializer.Deserialize(select.Blob(5), CairnJsonContext.Default.FailureInfo)!,
                    (int)select.Int64(6),
                    new DateTimeOffset(select.Int64(7), TimeSpan.Zero)));
            }

            return Task.FromResult<IReadOnlyList<ProjectionDeadLetter>>(deadLetters);
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
            return ReadServing(projection, document, null, null, cancellationToken, (db, table) =>
            {
                using var select = new RawStatement(db, "SELECT data FROM " + table + " WHERE id = ?1");
                select.Bind(1, id);
                return select.Step() ? new StoredDocument(id, select.Blob(0).ToArray()) : null;
            });
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
            return ReadServing(projection, document, query, (IReadOnlyList<StoredDocument>)[], cancellationToken, (db, table) =>
            {
                var parameters = new SqlParameters();
                var sql = new StringBuilder("SELECT id, data FROM ").Append(table);
                AppendWhere(sql, parameters, query);
                sql.Append(" ORDER BY ");
                foreach (var (index, descending) in query.Order)
                {
                    sql.Append("\"ix_").Append(index.Name).Append(descending ? "\" DESC, " : "\", ");
                }

                sql.Append("id LIMIT $take OFFSET $skip");
                parameters.Add("$take", (long)query.Take);
                parameters.Add("$skip", (long)query.Skip);
                using var select = new RawStatement(db, sql.ToString());
                parameters.BindTo(select);
                var documents = new List<StoredDocument>();
                while (select.Step())
                {
                    documents.Add(new StoredDocument(select.Text(0), select.Blob(1).ToArray()));
                }

                return (IReadOnlyList<StoredDocument>)documents;
            });
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
            return ReadServing(projection, document, query, 0L, cancellationToken, (db, table) =>
            {
                var parameters = new SqlParameters();
                var sql = new StringBuilder("SELECT count(*) FROM ").Append(table);
                AppendWhere(sql, parameters, query);
                using var select = new RawStatement(db, sql.ToString());
                parameters.BindTo(select);
                return select.ExecuteInt64() ?? 0;
            });
        }
        catch (Exception ex)
        {
            return Refusal.Of<long>(ex);
        }
    }

    private static void AppendWhere(StringBuilder sql, SqlParameters parameters, DocumentQuerySpec query)
    {
        for (var i = 0; i < query.Conditions.Count; i++)
        {
            var condition = query.Conditions[i];
            var column = "\"ix_" + condition.Index.Name + "\"";
            var name = "$p" + i;
            sql.Append(i == 0 ? " WHERE " : " AND ");
            switch (condition.Operator)
            {
                case QueryOperator.Equal when condition.Value is null:
                    sql.Append(column).Append(" IS NULL");
                    continue;
                case QueryOperator.NotEqual when condition.Value is null:
                    sql.Append(column).Append(" IS NOT NULL");
                    continue;
                case QueryOperator.In:
                    var values = (object?[])condition.Value!;
                    sql.Append(column).Append(" IN (");
                    var first = true;
                    for (var v = 0; v < values.Length; v++)
                    {
                        if (values[v] is { } value)
                        {
                            sql.Append(first ? "" : ", ").Append(name).Append('_').Append(v);
                            parameters.Add(name + "_" + v, value);
                            first = false;
                        }
                    }

                    sql.Append(first ? "NULL)" : ")");
                    continue;
            }

            sql.Append(column).Append(condition.Operator switch
            {
                QueryOperator.Equal => " = ",
                QueryOperator.NotEqual => " <> ",
                QueryOperator.LessThan => " < ",
                QueryOperator.LessThanOrEqual => " <= ",
                QueryOperator.GreaterThan => " > ",
                _ => " >= ",
            }).Append(name);
            parameters.Add(name, condition.Value!);
        }
    }

    /// <summary>
    /// Runs a read against the serving build's table in one read transaction, or answers <paramref name="absent"/> when
    /// the serving build has no such collection (code that adds one, while its rebuild runs).
    /// </summary>
    private Task<T> ReadServing<T>(string projection, DocumentDefinition document, DocumentQuerySpec? query, T absent, CancellationToken cancellationToken, Func<sqlite3, string, T> read)
    {
        ArgumentNullException.ThrowIfNull(document);
        cancellationToken.ThrowIfCancellationRequested();
        using var lease = _store.RentReadConnection();
        var db = lease.Db;
        Exec(db, "BEGIN");
        try
        {
            using var find = new RawStatement(db, "SELECT id, shape FROM cairn_projection_builds WHERE projection = ?1 AND serving = 1");
            find.Bind(1, projection);
            if (!find.Step())
            {
                throw new ProjectionNotFoundException($"Projection '{projection}' has no read model yet: it has not been started.");
            }

            var build = find.Int64(0);
            if (Projection.IndexesOf(find.Text(1), document.Collection) is not { } served)
            {
                return Task.FromResult(absent);
            }

            query?.RefuseIndexesNotIn(served, document.Collection);
            return Task.FromResult(read(db, "cairn_doc_" + build + "_" + document.Collection));
        }
        finally
        {
            Exec(db, "COMMIT");
        }
    }

    private static void Exec(sqlite3 db, string sql)
    {
        var rc = raw.sqlite3_exec(db, sql);
        if (rc != raw.SQLITE_OK)
        {
            throw new Microsoft.Data.Sqlite.SqliteException($"SQLite refused '{sql}': {raw.sqlite3_errmsg(db).utf8_to_string()}", rc);
        }
    }
}
