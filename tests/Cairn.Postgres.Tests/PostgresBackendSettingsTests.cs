using Cairn.DependencyInjection;

namespace Cairn.Postgres.Tests;

/// <summary>What <c>UsePostgres</c> keeps of its connection string as the backend's settings: never a secret.</summary>
public sealed class PostgresBackendSettingsTests
{
    // BackendSettings is documented as "the settings the configured backend was given (secrets left out)", and it is
    // what a BackendConflictException prints. The password of a client certificate's key is a secret too.
    [Fact]
    public void the_backend_settings_leave_out_the_client_certificate_password()
    {
        const string connection = "Host=db;Database=app;Username=app;SSL Certificate=/etc/app/client.crt;SSL Key=/etc/app/client.key;SSL Password=key-secret";

        var settings = new CairnOptions().UsePostgres(connection).BackendSettings;

        Assert.DoesNotContain("key-secret", settings, StringComparison.Ordinal);
    }

    [Fact]
    public void a_conflicting_second_use_postgres_does_not_print_the_client_certificate_password()
    {
        const string connection = "Host=db;Database=app;Username=app;SSL Password=key-secret";

        var refused = Assert.Throws<BackendConflictException>(() => new CairnOptions()
            .UsePostgres(connection, p => p with { Schema = "orders" })
            .UsePostgres(connection, p => p with { Schema = "billing" }));

        Assert.DoesNotContain("key-secret", refused.Message, StringComparison.Ordinal);
    }
}
