using Cairn.EventStore;
using Npgsql;
using NpgsqlTypes;

namespace Cairn.Postgres;

public sealed partial class PostgresEventStore
{
    /// <inheritdoc />
    public async Task<AppendResult> AppendAsync(AppendRequest request, CancellationToken cancellationToken)
    {
        ThrowIfDisposed();
        var prepared = PreparedAppend.Prepare(request, _options);
        cancellationToken.ThrowIfCancellationRequested();
        return await WriteAsync(context => context.AppendAsync(prepared, cancellationToken), plainAppend: true, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Called inside the transaction of every append that wrote events, after they are written: the projection store
    /// applies live inline projections here, so a failure fails the append.
    /// </summary>
    internal Func<PostgresWriteContext, AppendResult, CancellationToken, Task>? AfterAppend { get; set; }

    /// <summary>
    /// Runs <paramref name="work"/> in a transaction of the process's writer, which commits it together with whatever
    /// other write work is queued (group commit); completes once it has committed, or with the work's own exception,
    /// having written nothing. On commit, readers waiting for its appends are woken and its
    /// <see cref="PostgresWriteContext.OnCommitted"/> actions run. The commit is not cancelled: once the work is done,
    /// a cancellation could no longer tell the caller whether it landed. Work must write only through the context it
    /// is given: queuing more write work from inside it is refused.
    /// </summary>
    internal Task<T> WriteAsync<T>(Func<PostgresWriteContext, Task<T>> work, CancellationToken cancellationToken) =>
        WriteAsync(work, plainAppend: false, cancellationToken);

    private Task<T> WriteAsync<T>(Func<PostgresWriteContext, Task<T>> work, bool plainAppend, CancellationToken cancellationToken)
    {
        ThrowIfDisposed();
        return _writer.ExecuteAsync(work, plainAppend, cancellationToken);
    }

    /// <summary>Called by the writer once a transaction has committed.</summary>
    internal void Committed(PostgresWriteContext context)
    {
        if (context.LastAppended > 0)
        {
            _signal.Advance(context.LastAppended);
        }

        context.RunCommitted();
    }

    /// <summary>The statement taking the append lock; it is held until the transaction ends.</summary>
    private string LockSql => $"SELECT pg_advisory_xact_lock({PostgresSchema.AppendLockClass}, {_schemaKey})";

    private string HeadSql => $"SELECT position, time_ticks FROM {_s}.events ORDER BY position DESC LIMIT 1";

    /// <summary>Takes the append lock and reads the head in a snapshot taken after it.</summary>
    internal async Task<(long Head, long LastTicks)> TakeAppendLockAsync(PostgresWriteContext context, CancellationToken cancellationToken)
    {
        await using var batch = context.Batch();
        batch.BatchCommands.Add(new NpgsqlBatchCommand(LockSql));
        batch.BatchCommands.Add(new NpgsqlBatchCommand(HeadSql));
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
        return await reader.ReadAsync(cancellationToken).ConfigureAwait(false) ? (reader.GetInt64(0), reader.GetInt64(1)) : (0L, long.MinValue);
    }

    /// <summary>
    /// Appends in the transaction in hand. Unless the transaction holds it already, the first round trip takes the
    /// append lock and then reads, in snapshots taken after it (READ COMMITTED takes one per statement), the streams,
    /// any stored ids and the head: every append that committed before is visible and none can commit until this one
    /// does. Checks come next, then one statement writes the streams and the events.
    /// </summary>
    internal async Task<AppendResult> AppendInContextAsync(PostgresWriteContext context, PreparedAppend append, CancellationToken cancellationToken)
    {
        var connection = context.Connection;
        var transaction = context.Transaction;
        var names = new string[append.Streams.Count];
        var ids = new Guid[append.EventCount];
        var n = 0;
        for (var s = 0; s < append.Streams.Count; s++)
        {
            names[s] = append.Streams[s].Stream.Value;
            foreach (var e in append.Streams[s].Events)
            {
                ids[n++] = e.Id.Value;
            }
        }

        var rows = new Dictionary<string, StreamRow>(StringComparer.Ordinal);
        var stored = new Dictionary<Guid, StreamRules.StoredId>();
        var locking = !context.HoldsAppendLock;
        await using (var batch = context.Batch())
        {
            if (locking)
            {
                batch.BatchCommands.Add(new NpgsqlBatchCommand(LockSql));
            }

            batch.BatchCommands.Add(Command($"SELECT {StreamRow.Columns} FROM {_s}.streams WHERE name = ANY($1)", names));
            batch.BatchCommands.Add(Command($"SELECT id, stream, version, position FROM {_s}.events WHERE id = ANY($1)", ids));
            if (locking)
            {
                batch.BatchCommands.Add(new NpgsqlBatchCommand(HeadSql));
            }

            await using var reader = await batch.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            if (locking)
            {
                await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
            }

            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                var row = StreamRow.Read(reader);
                rows[row.Name] = row;
            }

            await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                stored[reader.GetGuid(0)] = new StreamRules.StoredId(reader.GetString(1), reader.GetInt64(2), reader.GetInt64(3));
            }

            if (locking)
            {
                await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
                context.Locked(0, long.MinValue);
                if (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    context.Locked(reader.GetInt64(0), reader.GetInt64(1));
                }
            }
        }

        StreamRules.StoredId? Lookup(Envelopes.MessageId id) => stored.TryGetValue(id.Value, out var found) ? found : null;
        if (stored.Count > 0 && StreamRules.MayBeRetry(append, Lookup))
        {
            return StreamRules.CheckRetry(append, Lookup)!;
        }

        var firstVersions = new long[append.Streams.Count];
        for (var s = 0; s < append.Streams.Count; s++)
        {
            var part = append.Streams[s];
            var row = rows.GetValueOrDefault(part.Stream.Value);
            firstVersions[s] = StreamRules.NextVersion(part.Stream, part.ExpectedVersion, row?.State ?? StreamState.NotFound, row?.LastVersion);
        }

        if (append.Condition is { } condition)
        {
            await CheckConditionAsync(connection, transaction, condition, cancellationToken).ConfigureAwait(false);
        }

        // An id reused by an append that is not a retry: refused after the expectations, as on every backend.
        foreach (var part in append.Streams)
        {
            foreach (var e in part.Events)
            {
                if (stored.ContainsKey(e.Id.Value))
                {
                    throw new DuplicateEventIdException(e.Id, "was already appended, and this append is not a retry of the one that wrote it");
                }
            }
        }

        // Commit times never go backwards along the log.
        var ticks = context.NextTicks(_options.TimeProvider.GetUtcNow().UtcTicks);
        var head = context.Head;
        var count = append.EventCount;
        var positions = new long[count];
        var streams = new string[count];
        var categories = new string[count];
        var system = new bool[count];
        var versions = new long[count];
        var types = new string[count];
        var sources = new string[count];
        var contentTypes = new string[count];
        var dataSchemas = new string?[count];
        var correlations = new string?[count];
        var causations = new string?[count];
        var traceParents = new string?[count];
        var tags = new string?[count];
        var metadata = new byte[]?[count];
        var data = new byte[count][];
        var lastVersions = new long[append.Streams.Count];
        var results = new StreamAppendResult[append.Streams.Count];
        var i = 0;
        for (var s = 0; s < append.Streams.Count; s++)
        {
            var part = append.Streams[s];
            var version = firstVersions[s];
            foreach (var e in part.Events)
            {
                positions[i] = head + 1 + i;
                streams[i] = part.Stream.Value;
                categories[i] = part.Stream.Category;
                system[i] = part.Stream.IsSystem;
                versions[i] = version++;
                types[i] = e.Type;
                sources[i] = e.Source;
                contentTypes[i] = e.ContentType;
                dataSchemas[i] = e.DataSchema;
                correlations[i] = e.CorrelationId;
                causations[i] = e.CausationId;
                traceParents[i] = e.TraceParent;
                tags[i] = e.Tags.Count == 0 ? null : System.Text.Json.JsonSerializer.Serialize(e.Tags as string[] ?? [.. e.Tags], CairnJsonContext.Default.StringArray);
                metadata[i] = e.MetadataJson;
                data[i] = e.Data.ToArray();
                i++;
            }

            lastVersions[s] = version - 1;
            results[s] = new StreamAppendResult(part.Stream, firstVersions[s], version - 1);
        }

        await using (var insert = new NpgsqlCommand(InsertSql, connection, transaction))
        {
            var p = insert.Parameters;
            p.Add(new NpgsqlParameter { Value = names, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            p.Add(new NpgsqlParameter { Value = lastVersions, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bigint });
            p.Add(new NpgsqlParameter { Value = ticks, NpgsqlDbType = NpgsqlDbType.Bigint });
            p.Add(new NpgsqlParameter { Value = positions, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bigint });
            p.Add(new NpgsqlParameter { Value = ids, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Uuid });
            p.Add(new NpgsqlParameter { Value = streams, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            p.Add(new NpgsqlParameter { Value = categories, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            p.Add(new NpgsqlParameter { Value = system, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Boolean });
            p.Add(new NpgsqlParameter { Value = versions, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bigint });
            p.Add(new NpgsqlParameter { Value = types, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            p.Add(new NpgsqlParameter { Value = sources, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            p.Add(new NpgsqlParameter { Value = contentTypes, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            p.Add(new NpgsqlParameter { Value = dataSchemas, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            p.Add(new NpgsqlParameter { Value = correlations, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            p.Add(new NpgsqlParameter { Value = causations, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            p.Add(new NpgsqlParameter { Value = traceParents, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            p.Add(new NpgsqlParameter { Value = tags, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            p.Add(new NpgsqlParameter { Value = metadata, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bytea });
            p.Add(new NpgsqlParameter { Value = data, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bytea });
            try
            {
                await insert.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.UniqueViolation && ex.ConstraintName == "events_id_key")
            {
                var duplicate = append.Streams.SelectMany(s => s.Events).First().Id;
                throw new DuplicateEventIdException(duplicate, "was already appended, and this append is not a retry of the one that wrote it");
            }
        }

        context.Appended(head + count);
        var appended = new AppendResult(results, new GlobalPosition(head + 1), new GlobalPosition(head + count), WasDuplicate: false);
        if (AfterAppend is { } after)
        {
            await after(context, appended, cancellationToken).ConfigureAwait(false);
        }

        return appended;
    }

    /// <summary>
    /// Writes the touched streams (created Active, or made Active again with their new last version) and the events,
    /// in one statement: the streams' ids come from the upsert.
    /// </summary>
    private string InsertSql => $"""
        WITH s AS (
            INSERT INTO {_s}.streams AS t (name, state, last_version)
            SELECT u.name, {(int)StreamState.Active}, u.last_version FROM unnest($1::text[], $2::bigint[]) AS u(name, last_version)
            ON CONFLICT (name) DO UPDATE SET state = excluded.state, last_version = excluded.last_version
            RETURNING t.id, t.name)
        INSERT INTO {_s}.events (position, id, stream_id, stream, category, is_system, version, type, time_ticks, source, content_type,
                                 data_schema, correlation_id, causation_id, trace_parent, tags, metadata, data)
        SELECT u.position, u.id, s.id, u.stream, u.category, u.is_system, u.version, u.type, $3, u.source, u.content_type,
               u.data_schema, u.correlation_id, u.causation_id, u.trace_parent,
               ARRAY(SELECT jsonb_array_elements_text(u.tags::jsonb)), u.metadata, u.data
        FROM unnest($4::bigint[], $5::uuid[], $6::text[], $7::text[], $8::boolean[], $9::bigint[], $10::text[], $11::text[], $12::text[],
                    $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], $18::bytea[], $19::bytea[])
             AS u(position, id, stream, category, is_system, version, type, source, content_type,
                  data_schema, correlation_id, causation_id, trace_parent, tags, metadata, data)
        JOIN s ON s.name = u.stream
        """;

    private async Task CheckConditionAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, AppendCondition condition, CancellationToken cancellationToken)
    {
        var query = new PostgresQuery($"SELECT position FROM {_s}.events e WHERE e.position > ");
        query.Sql.Append(query.Add(condition.After?.Value ?? 0L)).Append(" AND ");
        query.AppendQueryPredicate(condition.FailIfEventsMatch);
        query.Sql.Append(" ORDER BY e.position LIMIT 1");
        await using var command = query.ToCommand(connection, transaction);
        if (await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is long position)
        {
            throw new AppendConditionFailedException(condition, new GlobalPosition(position));
        }
    }

    private async Task ChangeLifecycleAsync(StreamName stream, ExpectedVersion expected, StreamRules.LifecycleChange change, StreamMetadata? metadata, CancellationToken cancellationToken)
    {
        ThrowIfDisposed();
        if (stream.IsSystem)
        {
            throw new InvalidStreamNameException(stream.Value, "the lifecycle of Cairn's own streams cannot be changed");
        }

        // Prepared here, on the caller's flow, so the record carries the caller's correlation and trace context; the
        // state it records is filled in under the lock.
        var template = PreparedAppend.Prepare(
            new AppendRequest(StreamRules.MetadataStreamOf(stream), ExpectedVersion.Any, [StreamRules.LifecycleRecord(stream, StreamState.NotFound, new StreamMetadata())]),
            _options,
            allowSystemStreams: true);
        cancellationToken.ThrowIfCancellationRequested();
        await WriteAsync(async context =>
        {
            await context.LockAppendsAsync(cancellationToken).ConfigureAwait(false);
            var connection = context.Connection;
            var transaction = context.Transaction;
            var row = await ReadStreamRowAsync(connection, transaction, stream, cancellationToken).ConfigureAwait(false);
            if (StreamRules.ApplyLifecycle(stream, expected, change, row?.State ?? StreamState.NotFound, row?.LastVersion, row?.Metadata ?? new StreamMetadata(), metadata) is not { } next)
            {
                return 0L;
            }

            var part = template.Streams[0];
            var filled = part.Events[0] with { Data = StreamRules.LifecycleRecord(stream, next.State, next.Metadata).Data };
            var result = await context.AppendAsync(template with { Streams = [part with { Events = [filled] }] }, cancellationToken).ConfigureAwait(false);
            await using var update = new NpgsqlCommand(
                $"""
                INSERT INTO {_s}.streams AS t (name, state, max_count, max_age_ticks, truncate_before) VALUES ($1, $2, $3, $4, $5)
                ON CONFLICT (name) DO UPDATE SET state = excluded.state, max_count = excluded.max_count,
                    max_age_ticks = excluded.max_age_ticks, truncate_before = excluded.truncate_before
                """,
                connection,
                transaction);
            update.Parameters.Add(new NpgsqlParameter { Value = stream.Value });
            update.Parameters.Add(new NpgsqlParameter { Value = (short)next.State });
            update.Parameters.Add(new NpgsqlParameter { Value = (object?)next.Metadata.MaxCount ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Bigint });
            update.Parameters.Add(new NpgsqlParameter { Value = (object?)next.Metadata.MaxAge?.Ticks ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Bigint });
            update.Parameters.Add(new NpgsqlParameter { Value = (object?)next.Metadata.TruncateBefore ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Bigint });
            await update.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            return result.LastPosition.Value;
        }, cancellationToken).ConfigureAwait(false);
    }

    private static NpgsqlBatchCommand Command(string sql, object value) => new(sql) { Parameters = { new NpgsqlParameter { Value = value } } };
}
