using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Projections;
using Npgsql;

namespace Cairn.Postgres.Tests;

/// <summary>
/// The views in front of a projection's tables: an application's own views over them survive a rebuild's switch, or
/// the switch is refused; and a view is told apart from another projection's by the exact table it reads.
/// </summary>
public sealed partial class SqlReadModelTests
{
    private const string TallyColumns = "k text PRIMARY KEY, n bigint NOT NULL";

    /// <summary>A projection declaring the table <c>tally</c> with the given columns.</summary>
    private sealed class Tallies : Projection
    {
        public Tallies(string name, int version, string columns)
            : base(name)
        {
            Version = version;
            SqlTable("tally", $"CREATE TABLE {{table}} ({columns})");
        }
    }

    /// <summary>A projection with one document collection and no tables, to use up build ids.</summary>
    private sealed class Plain(string name) : Projection(name);

    /// <summary>A projection counting orders into <c>tally</c>, rebuilt when its version changes.</summary>
    private sealed class OrderTallies : Projection
    {
        public OrderTallies(int version, string columns)
            : base("order-tallies")
        {
            Version = version;
            RebuildOnVersionChange = true;
            SqlTable("tally", $"CREATE TABLE {{table}} ({columns})");
            On<OrderPlaced>((ctx, e) => ctx.Sql.Execute($"INSERT INTO {ctx.Sql.Table("tally")} (k) VALUES ($k)", ("$k", e.OrderId)));
        }
    }

    [Fact]
    public async Task An_applications_view_over_a_projections_view_survives_a_switch_and_reads_the_new_table()
    {
        await _projections.OpenAsync(new Tallies("tallies", 1, TallyColumns), default);
        await PostgresServer.ExecuteAsync($"CREATE VIEW \"{_schema}\".report AS SELECT count(*) AS tallies FROM \"{_schema}\".tally");

        // The new version adds a column after the old ones.
        var shadow = await SwitchAsync(new Tallies("tallies", 2, TallyColumns + ", note text"));

        Assert.True(await ViewReadsAsync("tally", $"tally__b{shadow.Id}"));
        await PostgresServer.ExecuteAsync($"INSERT INTO \"{_schema}\".tally__b{shadow.Id} (k, n) VALUES ('a', 1), ('b', 2)");
        Assert.Equal(2L, await ScalarAsync($"SELECT tallies FROM \"{_schema}\".report"));
    }

    [Fact]
    public async Task A_switch_whose_new_columns_cannot_replace_the_old_under_an_applications_view_is_refused_and_changes_nothing()
    {
        var serving = (await _projections.OpenAsync(new Tallies("tallies", 1, TallyColumns), default)).Serving;
        await PostgresServer.ExecuteAsync($"CREATE VIEW \"{_schema}\".report AS SELECT count(*) AS tallies FROM \"{_schema}\".tally");

        // The new version drops the column n.
        var error = await Assert.ThrowsAsync<ProjectionSwitchRefusedException>(() => SwitchAsync(new Tallies("tallies", 2, "k text PRIMARY KEY, total numeric")));

        Assert.Contains($"{_schema}.report", error.Message);
        Assert.Contains("'tally'", error.Message);
        Assert.Equal(serving.Id, (await _projections.OpenAsync(new Tallies("tallies", 1, TallyColumns), default)).Serving.Id);
        Assert.True(await ViewReadsAsync("tally", $"tally__b{serving.Id}"));
        Assert.Equal(0L, await ScalarAsync($"SELECT tallies FROM \"{_schema}\".report"));
    }

    [Fact]
    public async Task A_switch_with_nothing_over_the_view_makes_it_anew_whatever_the_new_columns()
    {
        await _projections.OpenAsync(new Tallies("tallies", 1, TallyColumns), default);

        // The new version renames n and changes its type: only an object over the view could stop that.
        var shadow = await SwitchAsync(new Tallies("tallies", 2, "k text PRIMARY KEY, total numeric"));

        Assert.True(await ViewReadsAsync("tally", $"tally__b{shadow.Id}"));
        await PostgresServer.ExecuteAsync($"INSERT INTO \"{_schema}\".tally__b{shadow.Id} (k, total) VALUES ('a', 2.5)");
        Assert.Equal(2.5m, await ScalarAsync($"SELECT total FROM \"{_schema}\".tally"));
    }

    [Fact]
    public async Task A_refused_switch_is_refused_before_it_waits_for_the_append_lock()
    {
        await _projections.OpenAsync(new Tallies("tallies", 1, TallyColumns), default);
        await PostgresServer.ExecuteAsync($"CREATE VIEW \"{_schema}\".report AS SELECT count(*) AS tallies FROM \"{_schema}\".tally");
        var projection = new Tallies("tallies", 2, "k text PRIMARY KEY, total numeric");
        var shadow = await _projections.StartShadowAsync(projection, default);

        // Another session holds the append lock for as long as the test runs: a switch that took it before its views
        // refused it would wait here until the test timed out.
        await using var holder = new NpgsqlConnection(PostgresServer.ConnectionString);
        await holder.OpenAsync();
        await using (var take = new NpgsqlCommand($"SELECT pg_advisory_lock({PostgresSchema.AppendLockClass}, {PostgresSchema.SchemaKey(_schema)})", holder))
        {
            await take.ExecuteNonQueryAsync();
        }

        var batch = new ProjectionBatch(projection.Name, shadow.Id, GlobalPosition.Start, GlobalPosition.Start, [], (_, _) => { })
        {
            GoLive = true,
            CatchUpToHead = EventFilter.All,
        };
        var error = await Assert.ThrowsAsync<ProjectionSwitchRefusedException>(() => _projections.ApplyAsync(batch, default).WaitAsync(Wait.Timeout));

        Assert.Contains($"{_schema}.report", error.Message);
        Assert.Equal(0L, await ScalarAsync($"SELECT tallies FROM \"{_schema}\".report"));
        Assert.True(await ViewReadsAsync("tally", "tally__b" + (await _projections.OpenAsync(new Tallies("tallies", 1, TallyColumns), default)).Serving.Id));

        // With the views in its way gone, the same switch waits for the lock, and goes through once it is free.
        await PostgresServer.ExecuteAsync($"DROP VIEW \"{_schema}\".report");
        var switching = _projections.ApplyAsync(batch, default);
        await using (var release = new NpgsqlCommand("SELECT pg_advisory_unlock_all()", holder))
        {
            await release.ExecuteNonQueryAsync();
        }

        await switching.WaitAsync(Wait.Timeout);
        Assert.True(await ViewReadsAsync("tally", $"tally__b{shadow.Id}"));
    }

    /// <summary>A session that reads the serving view in a transaction it keeps open, holding the view and the old table.</summary>
    private async Task<(NpgsqlConnection Connection, NpgsqlTransaction Transaction)> ReadInOpenTransactionAsync()
    {
        var connection = new NpgsqlConnection(PostgresServer.ConnectionString);
        await connection.OpenAsync();
        var transaction = await connection.BeginTransactionAsync();
        await using var read = new NpgsqlCommand($"SELECT count(*) FROM \"{_schema}\".tally", connection, transaction);
        await read.ExecuteScalarAsync();
        return (connection, transaction);
    }

    private static ProjectionBatch SwitchOf(Projection projection, ProjectionBuild shadow) =>
        new(projection.Name, shadow.Id, GlobalPosition.Start, GlobalPosition.Start, [], (_, _) => { })
        {
            GoLive = true,
            CatchUpToHead = EventFilter.All,
        };

    /// <summary>
    /// A switch must have the views and the old build's tables alone, so it waited for every session reading them (a
    /// long report, a transaction left open): readers queued behind it, and, as it holds the append lock meanwhile,
    /// every append of every process stalled until the report ended. It waits <see cref="PostgresProjectionStore.SwitchLockTimeout"/>,
    /// then is refused, and goes through once the reader is done.
    /// </summary>
    [Fact]
    public async Task A_switch_waiting_for_a_reader_of_the_old_build_is_refused_after_its_lock_timeout_and_goes_through_once_the_reader_is_done()
    {
        await using var projections = new PostgresProjectionStore(_store) { SwitchLockTimeout = TimeSpan.FromMilliseconds(200) };
        await projections.OpenAsync(new Tallies("tallies", 1, TallyColumns), default);
        var projection = new Tallies("tallies", 2, TallyColumns);
        var shadow = await projections.StartShadowAsync(projection, default);
        var (connection, transaction) = await ReadInOpenTransactionAsync();
        await using (connection)
        {
            var error = await Assert.ThrowsAsync<ProjectionSwitchRefusedException>(() => projections.ApplyAsync(SwitchOf(projection, shadow), default).WaitAsync(Wait.Timeout));
            Assert.Contains("0.2 s", error.Message, StringComparison.Ordinal);

            // Appends go on, the old build still serves, and the report reads on.
            await _store.AppendToStreamAsync(Orders.Stream("o1"), ExpectedVersion.Any, [Orders.Placed("o1", "c", 1m)], default).WaitAsync(Wait.Timeout);
            Assert.True(await ViewReadsAsync("tally", "tally__b" + (await projections.OpenAsync(new Tallies("tallies", 1, TallyColumns), default)).Serving.Id));
            await transaction.CommitAsync();
        }

        await projections.ApplyAsync(SwitchOf(projection, shadow), default).WaitAsync(Wait.Timeout);
        Assert.True(await ViewReadsAsync("tally", $"tally__b{shadow.Id}"));
    }

    /// <summary>
    /// The same when the reader comes after the switch tried its views, while it waits for the append lock: the DDL it
    /// runs under that lock gives up too, and lets the lock go.
    /// </summary>
    [Fact]
    public async Task A_switch_whose_reader_comes_while_it_waits_for_the_append_lock_lets_the_lock_go_after_its_lock_timeout()
    {
        await using var projections = new PostgresProjectionStore(_store) { SwitchLockTimeout = TimeSpan.FromMilliseconds(200) };
        await projections.OpenAsync(new Tallies("tallies", 1, TallyColumns), default);
        var projection = new Tallies("tallies", 2, TallyColumns);
        var shadow = await projections.StartShadowAsync(projection, default);

        await using var holder = new NpgsqlConnection(PostgresServer.ConnectionString);
        await holder.OpenAsync();
        await using (var take = new NpgsqlCommand($"SELECT pg_advisory_lock({PostgresSchema.AppendLockClass}, {PostgresSchema.SchemaKey(_schema)})", holder))
        {
            await take.ExecuteNonQueryAsync();
        }

        var switching = projections.ApplyAsync(SwitchOf(projection, shadow), default);
        await Wait.UntilAsync(async () => await PostgresServer.AppendLockWaitersAsync(_schema) == 1, "the switch waits for the append lock");
        var (connection, transaction) = await ReadInOpenTransactionAsync();
        await using (connection)
        {
            await using (var release = new NpgsqlCommand("SELECT pg_advisory_unlock_all()", holder))
            {
                await release.ExecuteNonQueryAsync();
            }

            await Assert.ThrowsAsync<ProjectionSwitchRefusedException>(() => switching.WaitAsync(Wait.Timeout));
            await _store.AppendToStreamAsync(Orders.Stream("o1"), ExpectedVersion.Any, [Orders.Placed("o1", "c", 1m)], default).WaitAsync(Wait.Timeout);
            await transaction.CommitAsync();
        }

        await projections.ApplyAsync(SwitchOf(projection, shadow), default).WaitAsync(Wait.Timeout);
        Assert.True(await ViewReadsAsync("tally", $"tally__b{shadow.Id}"));
    }

    [Fact]
    public async Task A_runner_whose_switch_is_refused_keeps_serving_and_advancing_the_old_build()
    {
        await PlaceAsync("o1", "c-1");
        await using (var first = await StartAsync(new OrderTallies(1, "k text PRIMARY KEY, n bigint")))
        {
            await CaughtUpAsync(first);
        }

        await PostgresServer.ExecuteAsync($"CREATE VIEW \"{_schema}\".report AS SELECT count(*) AS tallies FROM \"{_schema}\".tally");

        // Version 2 renames the column n, which the application's view keeps: the switch is refused, not the projection.
        await using var second = await StartAsync(new OrderTallies(2, "k text PRIMARY KEY, total numeric"));
        await Wait.UntilAsync(() => second.Status.LastError?.Contains(nameof(ProjectionSwitchRefusedException), StringComparison.Ordinal) == true, "the switch is refused");
        Assert.Contains($"{_schema}.report", second.Status.LastError);

        await PlaceAsync("o2", "c-1");
        await Wait.UntilAsync(async () => 2L.Equals(await ScalarAsync($"SELECT tallies FROM \"{_schema}\".report")), "the old build serves the new order");
        Assert.NotEqual(ProjectionState.Failed, second.Status.State);
        Assert.NotEqual(ProjectionState.Faulted, second.Status.State);
    }

    [Fact]
    public async Task A_function_over_a_projections_view_is_kept_by_a_switch()
    {
        await _projections.OpenAsync(new Tallies("tallies", 1, TallyColumns), default);
        await PostgresServer.ExecuteAsync($"CREATE FUNCTION \"{_schema}\".tally_count() RETURNS bigint LANGUAGE sql RETURN (SELECT count(*) FROM \"{_schema}\".tally)");

        var shadow = await SwitchAsync(new Tallies("tallies", 2, TallyColumns));

        Assert.True(await ViewReadsAsync("tally", $"tally__b{shadow.Id}"));
        await PostgresServer.ExecuteAsync($"INSERT INTO \"{_schema}\".tally__b{shadow.Id} (k, n) VALUES ('a', 1)");
        Assert.Equal(1L, await ScalarAsync($"SELECT \"{_schema}\".tally_count()"));
    }

    [Fact]
    public async Task A_switch_never_takes_over_a_view_another_projection_made_after_the_rebuild_began()
    {
        // Version 1 of p has no table tally; version 2's rebuild declares one, and q takes the name before p switches.
        await _projections.OpenAsync(new Plain("p"), default);
        var rebuild = await _projections.StartShadowAsync(new Tallies("p", 2, TallyColumns), default);
        var q = (await _projections.OpenAsync(new Tallies("q", 1, TallyColumns), default)).Serving;

        var error = await Assert.ThrowsAsync<ProjectionSwitchRefusedException>(() =>
            _projections.ApplyAsync(new ProjectionBatch("p", rebuild.Id, GlobalPosition.Start, GlobalPosition.Start, [], (_, _) => { }) { GoLive = true }, default));

        Assert.Contains("another projection", error.Message);
        Assert.True(await ViewReadsAsync("tally", $"tally__b{q.Id}"));
        Assert.False((await _projections.OpenAsync(new Plain("p"), default)).Serving.Id == rebuild.Id);
    }

    [Fact]
    public async Task A_view_another_projection_serves_is_refused_even_when_its_build_id_starts_with_one_of_ours()
    {
        var ours = (await _projections.OpenAsync(new Plain("ours"), default)).Serving;
        var next = ours.Id;
        for (var i = 0; next + 1 < ours.Id * 10; i++)
        {
            next = (await _projections.OpenAsync(new Plain("filler-" + i), default)).Serving.Id;
        }

        // The other projection's build is ours' id with a digit after it: its view reads tally__b<ours><digit>.
        var theirs = (await _projections.OpenAsync(new Tallies("theirs", 1, TallyColumns), default)).Serving;
        Assert.Equal(ours.Id * 10, theirs.Id);

        var error = await Assert.ThrowsAsync<InvalidProjectionException>(() => _projections.StartShadowAsync(new Tallies("ours", 2, TallyColumns), default));
        Assert.Contains("view serving another projection", error.Message);
        Assert.True(await ViewReadsAsync("tally", $"tally__b{theirs.Id}"));
    }

    /// <summary>Rebuilds <paramref name="projection"/> into a shadow build and switches to it; returns the build.</summary>
    private async Task<ProjectionBuild> SwitchAsync(Projection projection)
    {
        var shadow = await _projections.StartShadowAsync(projection, default);
        await _projections.ApplyAsync(new ProjectionBatch(projection.Name, shadow.Id, GlobalPosition.Start, GlobalPosition.Start, [], (_, _) => { }) { GoLive = true }, default);
        return shadow;
    }

}
