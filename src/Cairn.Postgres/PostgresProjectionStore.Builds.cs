using System.Text;
using System.Text.Json;
using Cairn.EventStore;
using Cairn.Projections;
using Npgsql;
using NpgsqlTypes;

namespace Cairn.Postgres;

public sealed partial class PostgresProjectionStore
{
    private const string BuildColumns = "id, version, shape, position, serving";

    private async Task<ProjectionBuilds> OpenInContextAsync(PostgresWriteContext context, Projection projection, CancellationToken cancellationToken)
    {
        var builds = await ReadBuildsAsync(context, projection.Name, cancellationToken).ConfigureAwait(false);
        var serving = builds.Find(b => b.Serving);
        if (serving is null)
        {
            // Under the projection's lock, so two processes opening it at once create one build.
            await LockProjectionAsync(context, projection.Name, cancellationToken).ConfigureAwait(false);
            builds = await ReadBuildsAsync(context, projection.Name, cancellationToken).ConfigureAwait(false);
            serving = builds.Find(b => b.Serving);
            if (serving is null)
            {
                serving = await CreateBuildAsync(context, projection, serving: true, cancellationToken).ConfigureAwait(false);
            }
        }

        return new ProjectionBuilds(serving, builds.Find(b => !b.Serving));
    }

    private async Task<ProjectionBuild> StartShadowInContextAsync(PostgresWriteContext context, Projection projection, CancellationToken cancellationToken)
    {
        await LockProjectionAsync(context, projection.Name, cancellationToken).ConfigureAwait(false);
        foreach (var shadow in (await ReadBuildsAsync(context, projection.Name, cancellationToken).ConfigureAwait(false)).Where(b => !b.Serving))
        {
            await DropBuildAsync(context, shadow, cancellationToken).ConfigureAwait(false);
        }

        return await CreateBuildAsync(context, projection, serving: false, cancellationToken).ConfigureAwait(false);
    }

    private async Task<ProjectionBatchResult> ApplyInContextAsync(PostgresWriteContext context, ProjectionBatch batch, CancellationToken cancellationToken)
    {
        if (batch.GoLive && batch.CatchUpToHead is not null)
        {
            await RefuseSwitchEarlyAsync(context, batch, cancellationToken).ConfigureAwait(false);
        }

        // Locks in one order everywhere (the append lock, the projection's lock, a build's row), so none waits in a cycle.
        if (batch.CatchUpToHead is not null)
        {
            // The head stays still until the switch commits.
            await context.LockAppendsAsync(cancellationToken).ConfigureAwait(false);
        }

        if (batch.GoLive)
        {
            await LockProjectionAsync(context, batch.Projection, cancellationToken).ConfigureAwait(false);
        }

        // The row lock makes a second runner's batch wait for this one and then find the position moved.
        long stored;
        bool serving;
        await using (var select = context.Command($"SELECT position, serving FROM {_s}.projection_builds WHERE id = $1 AND projection = $2 FOR UPDATE"))
        {
            select.Parameters.Add(new NpgsqlParameter { Value = batch.Build });
            select.Parameters.Add(new NpgsqlParameter { Value = batch.Projection });
            await using var reader = await select.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                throw new ProjectionConflictException(batch.Projection, batch.Build, batch.ExpectedPosition);
            }

            stored = reader.GetInt64(0);
            serving = reader.GetBoolean(1);
        }

        if (stored != batch.ExpectedPosition.Value)
        {
            throw new ProjectionConflictException(batch.Projection, batch.Build, batch.ExpectedPosition, new GlobalPosition(stored));
        }

        var transaction = new PostgresReadModelTransaction(this, context, batch.Build);
        if (batch.Events.Count > 0)
        {
            batch.Apply(transaction, batch.Events);
        }

        var position = batch.Position.Value;
        var caughtUp = 0;
        if (batch.CatchUpToHead is { } filter && context.Head > position)
        {
            var missed = await ReadEventsAsync(context, position, context.Head, filter, cancellationToken).ConfigureAwait(false);
            if (missed.Count > 0)
            {
                batch.Apply(transaction, missed);
                caughtUp = missed.Count;
            }

            position = context.Head;
        }

        await SetPositionAsync(context, batch.Build, position, cancellationToken).ConfigureAwait(false);
        foreach (var deadLetter in batch.DeadLetters)
        {
            await InsertDeadLetterAsync(context, batch.Build, deadLetter, cancellationToken).ConfigureAwait(false);
        }

        if (batch.GoLive)
        {
            if (!serving)
            {
                // The views first, so that what an application built on them follows them to the new tables; dropping
                // the old tables then drops only the views of tables the new build no longer declares. Both wait for
                // whoever reads those tables and views, while the append lock is held: not for long.
                await WithSwitchLockTimeoutAsync(context, batch, async () =>
                {
                    await CreateViewsAsync(context, batch.Projection, batch.Build, cancellationToken).ConfigureAwait(false);
                    foreach (var old in (await ReadBuildsAsync(context, batch.Projection, cancellationToken).ConfigureAwait(false)).Where(b => b.Id != batch.Build))
                    {
                        await DropBuildAsync(context, old, cancellationToken).ConfigureAwait(false);
                    }
                }, cancellationToken).ConfigureAwait(false);
            }

            // An inline projection attached here is applied by appends from this commit on, in every process that
            // attaches it: the row says so, and appends read it under the append lock.
            await using (var promote = context.Command($"UPDATE {_s}.projection_builds SET serving = true, live = $2 WHERE id = $1"))
            {
                promote.Parameters.Add(new NpgsqlParameter { Value = batch.Build });
                promote.Parameters.Add(new NpgsqlParameter { Value = _inline.ContainsKey(batch.Projection) });
                await promote.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }
        }

        return new ProjectionBatchResult(new GlobalPosition(position), caughtUp);
    }

    /// <summary>
    /// Tries a switch's views before the switch takes the append lock, and undoes them: a switch the views refuse (an
    /// application's view needing the old columns, a name another projection took) is refused here, without holding up
    /// appends for the catch-up it would run under the lock first. A runner tries a refused switch again every 30 s,
    /// so this is what keeps a refusal that lasts from stalling appends that often. The views are made for real after
    /// the catch-up, where a refusal that arose meanwhile is still caught.
    /// </summary>
    private async Task RefuseSwitchEarlyAsync(PostgresWriteContext context, ProjectionBatch batch, CancellationToken cancellationToken)
    {
        await using (var select = context.Command($"SELECT serving FROM {_s}.projection_builds WHERE id = $1 AND projection = $2"))
        {
            select.Parameters.Add(new NpgsqlParameter { Value = batch.Build });
            select.Parameters.Add(new NpgsqlParameter { Value = batch.Projection });
            if (await select.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is not false)
            {
                // Serving already, or gone: the batch itself says which, under its locks.
                return;
            }
        }

        // A subtransaction: rolling it back undoes the views and releases the locks they took.
        await using (var savepoint = context.Command("SAVEPOINT cairn_switch_trial"))
        {
            await savepoint.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        try
        {
            await WithSwitchLockTimeoutAsync(context, batch, async () =>
            {
                await CreateViewsAsync(context, batch.Projection, batch.Build, cancellationToken).ConfigureAwait(false);

                // The old builds' tables too, which document queries read directly: a reader holding them would make
                // the switch wait under the append lock.
                var old = new List<string>();
                foreach (var build in (await ReadBuildsAsync(context, batch.Projection, cancellationToken).ConfigureAwait(false)).Where(b => b.Id != batch.Build))
                {
                    old.AddRange(await AllTablesOfBuildAsync(context, build, cancellationToken).ConfigureAwait(false));
                }

                if (old.Count > 0)
                {
                    await using var lockTables = context.Command($"LOCK TABLE {string.Join(", ", old.Select(t => $"{_s}.\"{t}\""))} IN ACCESS EXCLUSIVE MODE");
                    await lockTables.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                }
            }, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            await using var rollback = context.Command("ROLLBACK TO SAVEPOINT cairn_switch_trial; RELEASE SAVEPOINT cairn_switch_trial");
            await rollback.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Runs a switch's DDL with <c>lock_timeout</c> at <see cref="SwitchLockTimeout"/>: the views and the old tables are
    /// had alone, so the DDL waits for every session reading them (a long report, an open transaction) and, meanwhile,
    /// readers queue behind it, and under the append lock appends too. A wait longer than that refuses the switch with
    /// <see cref="ProjectionSwitchRefusedException"/>; the runner tries it again later.
    /// </summary>
    private async Task WithSwitchLockTimeoutAsync(PostgresWriteContext context, ProjectionBatch batch, Func<Task> ddl, CancellationToken cancellationToken)
    {
        await using (var set = context.Command($"SET LOCAL lock_timeout = {(long)Math.Ceiling(SwitchLockTimeout.TotalMilliseconds)}"))
        {
            await set.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        try
        {
            await ddl().ConfigureAwait(false);
        }
        catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.LockNotAvailable)
        {
            throw new ProjectionSwitchRefusedException(batch.Projection, batch.Build,
                $"another session held its views or the old build's tables for longer than {SwitchLockTimeout.TotalSeconds:0.###} s "
                + "(a long read, or a transaction left open); the switch would have held up readers and appends while it waited ("
                + ex.MessageText + ")");
        }

        await using var reset = context.Command("SET LOCAL lock_timeout TO DEFAULT");
        await reset.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Takes the transaction lock that orders the creation and dropping of a projection's builds.</summary>
    private async Task LockProjectionAsync(PostgresWriteContext context, string projection, CancellationToken cancellationToken)
    {
        await using var command = context.Command($"SELECT pg_advisory_xact_lock({PostgresSchema.ProjectionLockClass}, {PostgresSchema.SchemaKey(_store.Schema + "/" + projection)})");
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task<List<ProjectionBuild>> ReadBuildsAsync(PostgresWriteContext context, string projection, CancellationToken cancellationToken)
    {
        await using var select = context.Command($"SELECT {BuildColumns} FROM {_s}.projection_builds WHERE projection = $1 ORDER BY id");
        select.Parameters.Add(new NpgsqlParameter { Value = projection });
        await using var reader = await select.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        var builds = new List<ProjectionBuild>();
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            builds.Add(new ProjectionBuild(projection, reader.GetInt64(0), reader.GetInt32(1), reader.GetString(2), new GlobalPosition(reader.GetInt64(3)), reader.GetBoolean(4)));
        }

        return builds;
    }

    private async Task<ProjectionBuild> CreateBuildAsync(PostgresWriteContext context, Projection projection, bool serving, CancellationToken cancellationToken)
    {
        await RefuseTakenTableNamesAsync(context, projection, cancellationToken).ConfigureAwait(false);
        long id;
        await using (var insert = context.Command($"INSERT INTO {_s}.projection_builds (projection, version, shape, position, serving) VALUES ($1, $2, $3, 0, $4) RETURNING id"))
        {
            insert.Parameters.Add(new NpgsqlParameter { Value = projection.Name });
            insert.Parameters.Add(new NpgsqlParameter { Value = projection.Version });
            insert.Parameters.Add(new NpgsqlParameter { Value = projection.Shape });
            insert.Parameters.Add(new NpgsqlParameter { Value = serving });
            id = (long)(await insert.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
        }

        await using (var batch = context.Batch())
        {
            foreach (var document in projection.Documents)
            {
                var table = DocumentTable(id, document.Collection);
                var create = new StringBuilder("CREATE TABLE ").Append(table).Append(" (id text COLLATE \"C\" PRIMARY KEY, data bytea NOT NULL");
                foreach (var index in document.Indexes)
                {
                    create.Append(", ").Append(Column(index)).Append(' ').Append(ColumnType(index.Kind));
                }

                batch.BatchCommands.Add(new NpgsqlBatchCommand(create.Append(')').ToString()));
                foreach (var index in document.Indexes)
                {
                    // Named by PostgreSQL, which keeps index names unique in the schema. In the order queries ask for
                    // (nulls first ascending, so last descending, then the id), so a page reads the index, not a sort
                    // of the whole collection.
                    batch.BatchCommands.Add(new NpgsqlBatchCommand($"CREATE INDEX ON {table} ({Column(index)} NULLS FIRST, id)"));
                }
            }

            if (batch.BatchCommands.Count > 0)
            {
                await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }
        }

        if (projection.SqlTables.Count > 0)
        {
            // The DDL names its table unqualified ({table}, and indexes such as {table}_by_day): it runs with the
            // store's schema as the only one searched, and the search path is put back after it, as other work may
            // share the transaction. A command, not a batch: Npgsql splits its statements.
            var ddl = new StringBuilder("SET LOCAL search_path TO ").Append(_s).Append(";\n");
            foreach (var table in projection.SqlTables)
            {
                ddl.Append(table.CreateSql.Replace("{table}", SqlTableName(id, table.Name), StringComparison.Ordinal)).Append(";\n");
            }

            ddl.Append("SET LOCAL search_path TO DEFAULT");

            await using var create = context.Command(ddl.ToString());
            try
            {
                await create.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (PostgresException ex) when (!PostgresFaults.MayPassAgain(ex.SqlState))
            {
                throw new InvalidProjectionException(projection.Name, $"PostgreSQL refused the DDL of its tables: {ex.MessageText}");
            }
        }

        if (serving)
        {
            await CreateViewsAsync(context, projection.Name, id, cancellationToken).ConfigureAwait(false);
        }

        return new ProjectionBuild(projection.Name, id, projection.Version, projection.Shape, GlobalPosition.Start, serving);
    }

    /// <summary>
    /// Refuses SQL table names whose view would replace a table (Cairn's own among them), or a view that another
    /// projection's build serves: tables and views share one name space in the schema.
    /// </summary>
    private async Task RefuseTakenTableNamesAsync(PostgresWriteContext context, Projection projection, CancellationToken cancellationToken)
    {
        if (projection.SqlTables.Count == 0)
        {
            return;
        }

        var names = projection.SqlTables.Select(t => t.Name.ToLowerInvariant()).ToArray();
        if (names.Distinct(StringComparer.Ordinal).Count() != names.Length)
        {
            throw new InvalidProjectionException(projection.Name, "it declares tables whose names differ only in case, which PostgreSQL folds to one; choose other names");
        }

        await LockTableNamesAsync(context, names, cancellationToken).ConfigureAwait(false);

        var builds = await BuildIdsAsync(context, projection.Name, cancellationToken).ConfigureAwait(false);
        foreach (var name in names)
        {
            if (await ExistingRelationAsync(context, name, cancellationToken).ConfigureAwait(false) is { } existing && !existing.Serves(name, builds))
            {
                var kind = existing.IsView ? "view serving another projection" : "table or other relation";
                throw new InvalidProjectionException(projection.Name, $"it declares the table '{name}', but the schema '{_store.Schema}' already has a {kind} of that name; choose another name");
            }
        }
    }

    /// <summary>
    /// Takes the transaction locks of SQL table names, in one order: two projections declaring one name (two processes
    /// opening them at once) each check it and make its view in turn, so the second is refused by name, not by
    /// PostgreSQL's catalog as its view collides with the first's.
    /// </summary>
    private async Task LockTableNamesAsync(PostgresWriteContext context, IEnumerable<string> names, CancellationToken cancellationToken)
    {
        foreach (var key in names.Select(n => PostgresSchema.SchemaKey(_store.Schema + "/" + n.ToLowerInvariant())).Distinct().Order())
        {
            await using var command = context.Command($"SELECT pg_advisory_xact_lock({PostgresSchema.TableNameLockClass}, {key})");
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task<List<long>> BuildIdsAsync(PostgresWriteContext context, string projection, CancellationToken cancellationToken) =>
        (await ReadBuildsAsync(context, projection, cancellationToken).ConfigureAwait(false)).ConvertAll(b => b.Id);

    /// <summary>
    /// Points each SQL table's view at the build's table. A view nothing else uses is made anew, so the new table may
    /// have any columns. A view that other objects depend on (an application's views, materialized views or functions
    /// over it) is replaced in place, which keeps them: PostgreSQL then asks the new table for the old columns, in
    /// order, with new ones only after them. A view of the name that does not read one of this projection's builds, or
    /// a table of the name, is not touched. Either refusal fails the switch with
    /// <see cref="ProjectionSwitchRefusedException"/>, and the serving build goes on.
    /// </summary>
    private async Task CreateViewsAsync(PostgresWriteContext context, string projection, long build, CancellationToken cancellationToken)
    {
        var tables = await TablesOfBuildAsync(context, build, cancellationToken).ConfigureAwait(false);
        if (tables.Count == 0)
        {
            return;
        }

        await LockTableNamesAsync(context, tables.Select(t => t[..t.LastIndexOf("__b", StringComparison.Ordinal)]), cancellationToken).ConfigureAwait(false);
        var builds = await BuildIdsAsync(context, projection, cancellationToken).ConfigureAwait(false);
        foreach (var table in tables)
        {
            var name = table[..table.LastIndexOf("__b", StringComparison.Ordinal)];
            var existing = await ExistingRelationAsync(context, name, cancellationToken).ConfigureAwait(false);
            if (existing is { } view && !view.Serves(name, builds))
            {
                throw new ProjectionSwitchRefusedException(projection, build,
                    view.IsView
                        ? $"the view '{name}' reads {string.Join(", ", view.Reads)}, not a table of this projection; another projection serves it"
                        : $"the schema '{_store.Schema}' has a table or other relation named '{name}', where the view would go");
            }

            if (existing is not { Dependents.Length: > 0 } dependedOn)
            {
                // Made anew (its columns may have changed), the view keeps the privileges granted on the old one: a
                // reporting role reads it after the switch as before.
                var grants = existing is null ? [] : await GrantsOnAsync(context, name, cancellationToken).ConfigureAwait(false);
                await using var batch = context.Batch();
                batch.BatchCommands.Add(new NpgsqlBatchCommand($"DROP VIEW IF EXISTS {_s}.\"{name}\""));
                batch.BatchCommands.Add(new NpgsqlBatchCommand($"CREATE VIEW {_s}.\"{name}\" AS SELECT * FROM {_s}.\"{table}\""));
                foreach (var grant in grants)
                {
                    batch.BatchCommands.Add(new NpgsqlBatchCommand($"GRANT {grant.Privilege} ON {_s}.\"{name}\" TO {grant.Grantee}{(grant.Grantable ? " WITH GRANT OPTION" : "")}"));
                }

                await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                continue;
            }

            await using var replace = context.Command($"CREATE OR REPLACE VIEW {_s}.\"{name}\" AS SELECT * FROM {_s}.\"{table}\"");
            try
            {
                await replace.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (PostgresException ex) when (!PostgresFaults.MayPassAgain(ex.SqlState))
            {
                throw new ProjectionSwitchRefusedException(projection, build,
                    $"its new table '{name}' cannot take the old one's place under the view, on which {string.Join(", ", dependedOn.Dependents)} depend ({ex.MessageText}); keep the old columns in their order and add new ones after them, or drop those objects");
            }
        }
    }

    /// <summary>
    /// The privileges granted on the relation <paramref name="name"/> to others than its owner, as PostgreSQL keeps
    /// them (the grantee quoted, or PUBLIC).
    /// </summary>
    private async Task<List<(string Grantee, string Privilege, bool Grantable)>> GrantsOnAsync(PostgresWriteContext context, string name, CancellationToken cancellationToken)
    {
        await using var select = context.Command(
            """
            SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END, a.privilege_type, a.is_grantable
            FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee
            WHERE c.oid = to_regclass($1) AND a.grantee <> c.relowner
            """);
        select.Parameters.Add(new NpgsqlParameter { Value = $"{_s}.\"{name}\"" });
        var grants = new List<(string, string, bool)>();
        await using var reader = await select.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            grants.Add((reader.GetString(0), reader.GetString(1), reader.GetBoolean(2)));
        }

        return grants;
    }

    /// <summary>A relation of the schema where a view would go: whether it is a view, what it reads, and what depends on it.</summary>
    private sealed record ExistingRelation(bool IsView, string[] Reads, string[] Dependents)
    {
        /// <summary>
        /// Whether it is the view <paramref name="name"/> of one of <paramref name="builds"/>: it reads that build's
        /// table, matched by name exactly, as a view of build 10 must not pass for one of build 1.
        /// </summary>
        public bool Serves(string name, IReadOnlyList<long> builds) =>
            IsView && builds.Any(id => Reads.Contains(name + "__b" + id, StringComparer.Ordinal));
    }

    /// <summary>
    /// The relation of this schema named <paramref name="name"/>, or null. What it reads are the tables of the schema
    /// its rewrite rule depends on (a view's). Its dependents are the objects that would
    /// stop a <c>DROP VIEW</c> (normal dependencies: an application's view, materialized view or SQL function over it),
    /// as PostgreSQL describes them; a view's own rewrite rule, which PostgreSQL also records as depending on the view,
    /// is not one.
    /// </summary>
    private async Task<ExistingRelation?> ExistingRelationAsync(PostgresWriteContext context, string name, CancellationToken cancellationToken)
    {
        await using var select = context.Command(
            """
            SELECT c.relkind = 'v',
                   ARRAY(SELECT t.relname::text FROM pg_rewrite r
                         JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                         JOIN pg_class t ON t.oid = d.refobjid
                         WHERE r.ev_class = c.oid AND t.oid <> c.oid AND t.relnamespace = c.relnamespace),
                   ARRAY(SELECT DISTINCT pg_describe_object(d.classid, d.objid, d.objsubid) FROM pg_depend d
                         WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = c.oid AND d.deptype = 'n'
                           AND NOT (d.classid = 'pg_rewrite'::regclass AND d.objid IN (SELECT r.oid FROM pg_rewrite r WHERE r.ev_class = c.oid)))
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = $1 AND c.relname = $2
            """);
        select.Parameters.Add(new NpgsqlParameter { Value = _store.Schema });
        select.Parameters.Add(new NpgsqlParameter { Value = name });
        await using var reader = await select.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        return await reader.ReadAsync(cancellationToken).ConfigureAwait(false)
            ? new ExistingRelation(reader.GetBoolean(0), reader.GetFieldValue<string[]>(1), reader.GetFieldValue<string[]>(2))
            : null;
    }

    /// <summary>
    /// The SQL tables of a build, by their physical names (<c>&lt;table&gt;__b&lt;build&gt;</c>): those its shape declares
    /// that exist. Matched by pattern, any table ending so was taken for the build's: another build's document table
    /// (<c>doc_2_archive__b1</c>), or an application's <c>ledger__b1</c>, dropped with the build or given a view.
    /// </summary>
    private async Task<List<string>> TablesOfBuildAsync(PostgresWriteContext context, long build, CancellationToken cancellationToken)
    {
        string? shape;
        await using (var read = context.Command($"SELECT shape FROM {_s}.projection_builds WHERE id = $1"))
        {
            read.Parameters.Add(new NpgsqlParameter<long> { TypedValue = build });
            shape = await read.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) as string;
        }

        var declared = shape is null ? [] : Projection.SqlTablesOf(shape).Select(table => table + "__b" + build).ToArray();
        if (declared.Length == 0)
        {
            return [];
        }

        await using var select = context.Command("SELECT tablename FROM pg_tables WHERE schemaname = $1 AND tablename = ANY($2) ORDER BY tablename");
        select.Parameters.Add(new NpgsqlParameter { Value = _store.Schema });
        select.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = declared });
        await using var tablesReader = await select.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        var tables = new List<string>();
        while (await tablesReader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            tables.Add(tablesReader.GetString(0));
        }

        return tables;
    }

    /// <summary>
    /// Every table of a build: its SQL tables, and its document tables by the collections its shape names (a pattern,
    /// <c>doc_&lt;build&gt;_%</c>, also matched other projections' SQL tables of such names).
    /// </summary>
    private async Task<List<string>> AllTablesOfBuildAsync(PostgresWriteContext context, ProjectionBuild build, CancellationToken cancellationToken)
    {
        var tables = await TablesOfBuildAsync(context, build.Id, cancellationToken).ConfigureAwait(false);
        tables.AddRange(Projection.CollectionsOf(build.Shape).Select(collection => "doc_" + build.Id + "_" + collection));
        return tables;
    }

    /// <summary>
    /// Drops a build's tables and its row. A switch has pointed the views at the new build's tables first; the views of
    /// tables the new build no longer declares go with their tables.
    /// </summary>
    private async Task DropBuildAsync(PostgresWriteContext context, ProjectionBuild dropped, CancellationToken cancellationToken)
    {
        var (projection, build) = (dropped.Projection, dropped.Id);
        var tables = await AllTablesOfBuildAsync(context, dropped, cancellationToken).ConfigureAwait(false);
        await using var batch = context.Batch();
        foreach (var table in tables)
        {
            batch.BatchCommands.Add(new NpgsqlBatchCommand($"DROP TABLE IF EXISTS {_s}.\"{table}\" CASCADE"));
        }

        var delete = new NpgsqlBatchCommand($"DELETE FROM {_s}.projection_builds WHERE id = $1");
        delete.Parameters.Add(new NpgsqlParameter { Value = build });
        batch.BatchCommands.Add(delete);

        // Its dead letters describe what it skipped; a build that replaces it has its own.
        var deadLetters = new NpgsqlBatchCommand($"DELETE FROM {_s}.projection_dead_letters WHERE projection = $1 AND build = $2");
        deadLetters.Parameters.Add(new NpgsqlParameter { Value = projection });
        deadLetters.Parameters.Add(new NpgsqlParameter { Value = build });
        batch.BatchCommands.Add(deadLetters);
        await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task SetPositionAsync(PostgresWriteContext context, long build, long position, CancellationToken cancellationToken)
    {
        await using var update = context.Command($"UPDATE {_s}.projection_builds SET position = $1 WHERE id = $2");
        update.Parameters.Add(new NpgsqlParameter { Value = position });
        update.Parameters.Add(new NpgsqlParameter { Value = build });
        await update.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task InsertDeadLetterAsync(PostgresWriteContext context, long build, ProjectionDeadLetter deadLetter, CancellationToken cancellationToken)
    {
        await using var insert = context.Command(
            $"""
            INSERT INTO {_s}.projection_dead_letters (projection, position, event_id, stream, version, event_type, failure, attempts, dead_ticks, build)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
            ON CONFLICT (projection, build, position) DO UPDATE SET failure = excluded.failure, attempts = excluded.attempts, dead_ticks = excluded.dead_ticks
            """);
        var p = insert.Parameters;
        p.Add(new NpgsqlParameter { Value = deadLetter.Projection });
        p.Add(new NpgsqlParameter { Value = deadLetter.Position.Value });
        p.Add(new NpgsqlParameter { Value = deadLetter.EventId.Value });
        p.Add(new NpgsqlParameter { Value = deadLetter.Stream.Value });
        p.Add(new NpgsqlParameter { Value = deadLetter.Version });
        p.Add(new NpgsqlParameter { Value = deadLetter.EventType });
        p.Add(new NpgsqlParameter { Value = JsonSerializer.Serialize(deadLetter.Failure, CairnJsonContext.Default.FailureInfo), NpgsqlDbType = NpgsqlDbType.Text });
        p.Add(new NpgsqlParameter { Value = deadLetter.Attempts });
        p.Add(new NpgsqlParameter { Value = deadLetter.Time.UtcTicks });
        p.Add(new NpgsqlParameter { Value = build });
        await insert.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The events after <paramref name="after"/> up to <paramref name="to"/> that a filter passes, read in the transaction.</summary>
    private async Task<List<RecordedEvent>> ReadEventsAsync(PostgresWriteContext context, long after, long to, EventFilter filter, CancellationToken cancellationToken)
    {
        var query = new PostgresQuery($"SELECT {EventRows.Columns} FROM {_s}.events e WHERE e.position > ");
        query.Sql.Append(query.Add(after)).Append(" AND e.position <= ").Append(query.Add(to));
        query.AppendFilter(filter, _s);
        query.Sql.Append(" ORDER BY e.position");
        await using var select = query.ToCommand(context.Connection, context.Transaction);
        await using var reader = await select.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        var events = new List<RecordedEvent>();
        var rows = new EventRowReader();
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            events.Add(rows.Read(reader));
        }

        return events;
    }
}
