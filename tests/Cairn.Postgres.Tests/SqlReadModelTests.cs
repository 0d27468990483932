using System.Data.Common;
using System.Text.RegularExpressions;
using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Projections;
using Npgsql;

namespace Cairn.Postgres.Tests;

/// <summary>
/// The SQL read-model contract on PostgreSQL: a projection's tables sit in the store's schema behind views named after
/// them; and what only PostgreSQL has: named parameters translated, and Cairn's own table names refused.
/// </summary>
public sealed partial class SqlReadModelTests : Cairn.Conformance.Projections.SqlReadModelTests, IAsyncLifetime
{
    private readonly string _schema = PostgresServer.NewSchema();
    private readonly PostgresEventStore _store;
    private readonly PostgresProjectionStore _projections;

    public SqlReadModelTests()
    {
        _store = new PostgresEventStore(new PostgresEventStoreOptions { ConnectionString = PostgresServer.ConnectionString, Schema = _schema });
        _projections = new PostgresProjectionStore(_store);
    }

    protected override IEventStore Store => _store;

    protected override IProjectionStore Projections => _projections;

    protected override string CountsTableSql => "CREATE TABLE {table} (customer text PRIMARY KEY, orders bigint NOT NULL); CREATE INDEX {table}_by_orders ON {table} (orders)";

    protected override Type SqlErrorType => typeof(PostgresException);

    protected override string UniqueViolationText => "duplicate key value violates unique constraint";

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        await _projections.DisposeAsync();
        await _store.DisposeAsync();
        await PostgresServer.DropSchemaAsync(_schema);
    }

    [Fact]
    public void Named_parameters_are_written_as_on_sqlite_and_dollar_quotes_strings_and_comments_are_left_alone()
    {
        Assert.Equal(
            "INSERT INTO t (a, b) VALUES (@day, @total) -- $not\n/* $nor /* $nested */ */ SELECT '$text''$x', \"$col\", $$ $body $$, $q$ $y $q$, $1, a$b",
            ProjectionSqlParameters.Translate("INSERT INTO t (a, b) VALUES ($day, $total) -- $not\n/* $nor /* $nested */ */ SELECT '$text''$x', \"$col\", $$ $body $$, $q$ $y $q$, $1, a$b"));
        Assert.Equal("SELECT E'\\'$x', @y", ProjectionSqlParameters.Translate("SELECT E'\\'$x', $y"));
        Assert.Equal("day", ProjectionSqlParameters.Name("$day"));
        Assert.Equal("day", ProjectionSqlParameters.Name("@day"));
        Assert.Equal("day", ProjectionSqlParameters.Name("day"));
    }

    [Fact]
    public async Task A_table_named_like_one_of_cairns_own_is_refused_when_the_projection_starts()
    {
        var projection = new TableNamed("events");
        await using var runner = await StartAsync(projection);
        await Wait.UntilAsync(() => runner.Status.State == ProjectionState.Failed, "the projection is refused");

        Assert.Contains(nameof(InvalidProjectionException), runner.Status.LastError);
        Assert.Contains("'events'", runner.Status.LastError);
        Assert.Equal(0L, await ScalarAsync($"SELECT count(*) FROM \"{_schema}\".projection_builds"));
    }

    protected override string Name(string name) => $"\"{_schema}\".\"{name}\"";

    protected override async Task<bool> IsViewAsync(string name) =>
        "v".Equals(await ScalarAsync($"SELECT c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '{_schema}' AND c.relname = '{name}'"));

    protected override async Task<bool> TableExistsAsync(string table)
    {
        Assert.StartsWith($"\"{_schema}\".", table);
        return 1L.Equals(await ScalarAsync($"SELECT count(*) FROM pg_tables WHERE schemaname = '{_schema}' AND tablename = '{Unqualified(table)}'"));
    }

    protected override async Task<bool> ViewReadsAsync(string view, string table) =>
        ((string?)await ScalarAsync($"SELECT pg_get_viewdef('\"{_schema}\".\"{view}\"'::regclass)")) is { } definition
            && Regex.IsMatch(definition, $@"\b{Regex.Escape(Unqualified(table))}\b");

    protected override async Task<List<T>> QueryAsync<T>(string sql, Func<DbDataReader, T> row)
    {
        await using var connection = new NpgsqlConnection(PostgresServer.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await using var reader = await command.ExecuteReaderAsync();
        var rows = new List<T>();
        while (await reader.ReadAsync())
        {
            rows.Add(row(reader));
        }

        return rows;
    }

    private static string Unqualified(string table) => table[(table.LastIndexOf('.') + 1)..];

    /// <summary>A projection declaring one table of the given name.</summary>
    private sealed class TableNamed : Projection
    {
        public TableNamed(string table)
            : base("table-named")
        {
            SqlTable(table, "CREATE TABLE {table} (id text PRIMARY KEY)");
            On<OrderPlaced>((ctx, e) => ctx.Sql.Execute($"INSERT INTO {ctx.Sql.Table(table)} (id) VALUES ($id)", ("$id", e.OrderId)));
        }
    }
}
