using System.Text;
using System.Text.Json;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Projections;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using NpgsqlTypes;

namespace Cairn.Postgres;

/// <summary>
/// Read models in the same PostgreSQL schema as the log, shared by every process on it. A batch, its build's new
/// position and its dead letters commit in one transaction of the store's write context, after a check of the position
/// under a row lock; inline projections run in each append's own transaction. Each projection is run by one process at
/// a time, the one holding its lease (<see cref="IProjectionLeases"/>): a session-level advisory lock on a connection
/// of its own, released by the server when that connection ends. Queries read the serving build on pooled connections.
/// </summary>
public sealed partial class PostgresProjectionStore : IProjectionStore, IInlineScope, IDisposable, IAsyncDisposable
{
    private readonly PostgresEventStore _store;
    private readonly ILogger _logger;
    private readonly string _s;

    /// <summary>Uses the store's schema and connections.</summary>
    public PostgresProjectionStore(PostgresEventStore store, ILogger<PostgresProjectionStore>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(store);
        _store = store;
        _logger = logger ?? NullLogger<PostgresProjectionStore>.Instance;
        _s = PostgresSchema.Quote(store.Schema);
        _leases = new LeaseSession(this);
        _applyInline = ApplyInlineAsync;
    }

    /// <summary>
    /// How long a rebuild's switch waits for the views and the old build's tables, which it must have alone, while
    /// others read them; past it the switch is refused (<see cref="ProjectionSwitchRefusedException"/>) and tried again
    /// later, so a long report delays the switch rather than holding up every reader and every append (the switch
    /// holds the append lock). 2 seconds by default; from 10 ms to a minute.
    /// </summary>
    public TimeSpan SwitchLockTimeout
    {
        get => _switchLockTimeout;
        init
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, TimeSpan.FromMilliseconds(10), nameof(SwitchLockTimeout));
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, TimeSpan.FromMinutes(1), nameof(SwitchLockTimeout));
            _switchLockTimeout = value;
        }
    }

    private readonly TimeSpan _switchLockTimeout = TimeSpan.FromSeconds(2);

    /// <inheritdoc />
    public Task<ProjectionBuilds> OpenAsync(Projection projection, CancellationToken cancellationToken)
    {
        if (projection is null)
        {
            return Refusal.Of<ProjectionBuilds>(new ArgumentNullException(nameof(projection)));
        }

        return _store.WriteAsync(context => OpenInContextAsync(context, projection, cancellationToken), cancellationToken);
    }

    /// <inheritdoc />
    public Task<ProjectionBuild> StartShadowAsync(Projection projection, CancellationToken cancellationToken)
    {
        if (projection is null)
        {
            return Refusal.Of<ProjectionBuild>(new ArgumentNullException(nameof(projection)));
        }

        return _store.WriteAsync(context => StartShadowInContextAsync(context, projection, cancellationToken), cancellationToken);
    }

    /// <inheritdoc />
    public async Task<ProjectionBatchResult> ApplyAsync(ProjectionBatch batch, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batch);
        try
        {
            // It locks the projection's row FOR UPDATE, which takes a transaction id: its commit waits for any synchronous
            // standby by itself.
            return await _store.WriteAsync(context => ApplyInContextAsync(context, batch, cancellationToken), cancellationToken, confirmsReplication: false).ConfigureAwait(false);
        }
        catch (ProjectionEventException failure) when (PostgresFaults.ConnectionFailureIn(failure.InnerException) is { } broken)
        {
            // The connection broke under a handler's read or SQL (a restart, a failover): the store failed, not the event,
            // so the runner starts again from the stored position rather than meeting the failure policy with a good event.
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(broken);
            throw;
        }
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<ProjectionDeadLetter>> ListDeadLettersAsync(string projection, int max, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(projection);
        ArgumentOutOfRangeException.ThrowIfNegative(max);
        await using var connection = await _store.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var select = new NpgsqlCommand(
            $"SELECT position, event_id, stream, version, event_type, failure, attempts, dead_ticks, build FROM {_s}.projection_dead_letters WHERE projection = $1 ORDER BY position, build LIMIT $2",
            connection);
        select.Parameters.Add(new NpgsqlParameter { Value = projection });
        select.Parameters.Add(new NpgsqlParameter { Value = (long)max });
        await using var reader = await select.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        var deadLetters = new List<ProjectionDeadLetter>();
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            deadLetters.Add(new ProjectionDeadLetter(
                projection,
                reader.GetInt64(8),
                new GlobalPosition(reader.GetInt64(0)),
                new MessageId(reader.GetGuid(1)),
                new StreamName(reader.GetString(2)),
                reader.GetInt64(3),
                reader.GetString(4),
                JsonSerializer.Deserialize(reader.GetString(5), CairnJsonContext.Default.FailureInfo)!,
                reader.GetInt32(6),
                new DateTimeOffset(reader.GetInt64(7), TimeSpan.Zero)));
        }

        return deadLetters;
    }

    /// <inheritdoc />
    public Task<StoredDocument?> LoadDocumentAsync(string projection, DocumentDefinition document, string id, CancellationToken cancellationToken)
    {
        try
        {
            ArgumentNullException.ThrowIfNull(projection);
            ArgumentNullException.ThrowIfNull(document);
            ArgumentNullException.ThrowIfNull(id);
            return ReadServingAsync(projection, document, null, null, cancellationToken, async (connection, table) =>
            {
                await using var select = new NpgsqlCommand($"SELECT data FROM {table} WHERE id = $1", connection);
                select.Parameters.Add(new NpgsqlParameter { Value = id });
                return await select.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is byte[] data ? new StoredDocument(id, data) : null;
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
            return ReadServingAsync(projection, document, query, (IReadOnlyList<StoredDocument>)[], cancellationToken, async (connection, table) =>
            {
                var sql = new PostgresQuery("SELECT id, data FROM " + table);
                AppendWhere(sql, query);
                sql.Sql.Append(" ORDER BY ");
                foreach (var (index, descending) in query.Order)
                {
                    // Nulls sort first, as the smallest value, on every backend.
                    sql.Sql.Append(Column(index)).Append(descending ? " DESC NULLS LAST, " : " ASC NULLS FIRST, ");
                }

                sql.Sql.Append("id LIMIT ").Append(sql.Add((long)query.Take)).Append(" OFFSET ").Append(sql.Add((long)query.Skip));
                await using var select = sql.ToCommand(connection);
                await using var reader = await select.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
                var documents = new List<StoredDocument>();
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    documents.Add(new StoredDocument(reader.GetString(0), reader.GetFieldValue<byte[]>(1)));
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
            return ReadServingAsync(projection, document, query, 0L, cancellationToken, async (connection, table) =>
            {
                var sql = new PostgresQuery("SELECT count(*) FROM " + table);
                AppendWhere(sql, query);
                await using var select = sql.ToCommand(connection);
                return (long)(await select.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
            });
        }
        catch (Exception ex)
        {
            return Refusal.Of<long>(ex);
        }
    }

    /// <summary>Releases this store's leases for other processes, and gives their connection back.</summary>
    public ValueTask DisposeAsync() => _leases.DisposeAsync();

    /// <summary>Releases this store's leases for other processes (a container disposed synchronously calls this).</summary>
    public void Dispose() => _leases.DisposeAsync().AsTask().GetAwaiter().GetResult();

    /// <summary>The column of an indexed field.</summary>
    private static string Column(DocumentIndex index) => "\"ix_" + index.Name + "\"";

    private static void AppendWhere(PostgresQuery sql, DocumentQuerySpec query)
    {
        for (var i = 0; i < query.Conditions.Count; i++)
        {
            var condition = query.Conditions[i];
            var column = Column(condition.Index);
            sql.Sql.Append(i == 0 ? " WHERE " : " AND ");
            switch (condition.Operator)
            {
                case QueryOperator.Equal when condition.Value is null:
                    sql.Sql.Append(column).Append(" IS NULL");
                    continue;
                case QueryOperator.NotEqual when condition.Value is null:
                    sql.Sql.Append(column).Append(" IS NOT NULL");
                    continue;
                case QueryOperator.In:
                    // Null values match nothing, as in SQL's IN.
                    var values = ((object?[])condition.Value!).Where(v => v is not null).ToArray();
                    sql.Sql.Append(column).Append(" = ANY(").Append(sql.Add(TypedArray(condition.Index.Kind, values))).Append(')');
                    continue;
            }

            sql.Sql.Append(column).Append(condition.Operator switch
            {
                QueryOperator.Equal => " = ",
                QueryOperator.NotEqual => " <> ",
                QueryOperator.LessThan => " < ",
                QueryOperator.LessThanOrEqual => " <= ",
                QueryOperator.GreaterThan => " > ",
                _ => " >= ",
            }).Append(sql.Add(condition.Value!));
        }
    }

    /// <summary>An array of stored-form values of one index kind, typed for its column.</summary>
    private static Array TypedArray(IndexKind kind, object?[] values) => kind switch
    {
        IndexKind.Text => values.Select(v => (string)v!).ToArray(),
        IndexKind.Real => values.Select(v => Convert.ToDouble(v, System.Globalization.CultureInfo.InvariantCulture)).ToArray(),
        _ => values.Select(v => Convert.ToInt64(v, System.Globalization.CultureInfo.InvariantCulture)).ToArray(),
    };

    /// <summary>
    /// Runs a read against the serving build's document table, or answers <paramref name="absent"/> when the serving
    /// build has no such collection (code that adds one, while its rebuild runs). A switch may drop the table between
    /// finding the build and reading it; the read then starts again on the build that serves now.
    /// </summary>
    private async Task<T> ReadServingAsync<T>(string projection, DocumentDefinition document, DocumentQuerySpec? query, T absent, CancellationToken cancellationToken, Func<NpgsqlConnection, string, Task<T>> read)
    {
        ArgumentNullException.ThrowIfNull(projection);
        ArgumentNullException.ThrowIfNull(document);
        await using var connection = await _store.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        for (var attempt = 1; ; attempt++)
        {
            long build;
            await using (var find = new NpgsqlCommand($"SELECT id, shape FROM {_s}.projection_builds WHERE projection = $1 AND serving", connection))
            {
                find.Parameters.Add(new NpgsqlParameter { Value = projection });
                await using var reader = await find.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
                if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    throw new ProjectionNotFoundException($"Projection '{projection}' has no read model yet: it has not been started.");
                }

                build = reader.GetInt64(0);
                if (Projection.IndexesOf(reader.GetString(1), document.Collection) is not { } served)
                {
                    return absent;
                }

                query?.RefuseIndexesNotIn(served, document.Collection);
            }

            try
            {
                return await read(connection, DocumentTable(build, document.Collection)).ConfigureAwait(false);
            }
            catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.UndefinedTable && attempt < 3)
            {
                // Switched meanwhile: look for the serving build again.
            }
        }
    }

    /// <summary>The schema-qualified table of a build's collection.</summary>
    private string DocumentTable(long build, string collection) => _s + ".\"doc_" + build + "_" + collection + "\"";

    /// <summary>A build's SQL table's physical name, unqualified: lower case, as PostgreSQL folds unquoted names.</summary>
    private static string SqlTableName(long build, string table) => table.ToLowerInvariant() + "__b" + build;

    /// <summary>A parameter of an index value in stored form, typed for its column.</summary>
    private static NpgsqlParameter IndexParameter(IndexKind kind, object? value) => new()
    {
        Value = value ?? DBNull.Value,
        NpgsqlDbType = kind switch
        {
            IndexKind.Text => NpgsqlDbType.Text,
            IndexKind.Real => NpgsqlDbType.Double,
            _ => NpgsqlDbType.Bigint,
        },
    };

    private static string ColumnType(IndexKind kind) => kind switch
    {
        IndexKind.Text => "text COLLATE \"C\"",
        IndexKind.Real => "double precision",
        _ => "bigint",
    };

    private static StringBuilder AppendColumns(StringBuilder sql, DocumentDefinition document)
    {
        foreach (var index in document.Indexes)
        {
            sql.Append(", ").Append(Column(index));
        }

        return sql;
    }
}
