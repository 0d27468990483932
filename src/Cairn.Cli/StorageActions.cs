using Cairn.DependencyInjection;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Cairn.Cli;

/// <summary>What the <c>storage</c> commands do, against the application's backend.</summary>
internal sealed class StorageActions(IServiceProvider services)
{
    public async Task<int> StatusAsync(Writers writers, CancellationToken cancellationToken)
    {
        var (output, error) = writers;
        if (Migrator(error) is not { } migrator)
        {
            return CairnCli.Error;
        }

        StorageSchemaStatus status;
        try
        {
            status = await migrator.GetStatusAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // No verdict: not 1 ("needs migrating"), also where an application's own root runs the command.
            await error.WriteLineAsync(CairnCli.CancelledMessage).ConfigureAwait(false);
            return CairnCli.Error;
        }
        catch (Exception ex)
        {
            await error.WriteLineAsync($"The backend's tables could not be read: {ex.Message}").ConfigureAwait(false);
            return CairnCli.Error;
        }

        var verdict = status.IsCurrent ? "current" : status.IsNewer ? "written by a newer Cairn" : "needs migrating";
        await output.WriteLineAsync($"{status.Backend} ({status.Location}): version {status.Version}, this Cairn expects {status.ExpectedVersion}: {verdict}.").ConfigureAwait(false);
        return status.IsCurrent ? CairnCli.Success : CairnCli.CheckFailed;
    }

    public async Task<int> MigrateAsync(Writers writers, CancellationToken cancellationToken)
    {
        var (output, error) = writers;
        if (Migrator(error) is not { } migrator)
        {
            return CairnCli.Error;
        }

        StorageMigrationResult result;
        try
        {
            result = await migrator.MigrateAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // No verdict: not 1 ("needs migrating"), also where an application's own root runs the command.
            await error.WriteLineAsync(CairnCli.CancelledMessage).ConfigureAwait(false);
            return CairnCli.Error;
        }
        catch (Exception ex)
        {
            await error.WriteLineAsync($"The backend's tables could not be migrated: {ex.Message}").ConfigureAwait(false);
            return CairnCli.Error;
        }

        var after = result.After;
        await output.WriteLineAsync(result.Migrated
            ? $"{after.Backend} ({after.Location}): migrated from version {result.Before} to {after.Version}."
            : $"{after.Backend} ({after.Location}): already at version {after.Version}; nothing to do.").ConfigureAwait(false);
        return CairnCli.Success;
    }

    private IStorageMigrator? Migrator(TextWriter error)
    {
        try
        {
            // The options first: one that cannot be made is said as such, not as a backend without a migration.
            _ = services.GetRequiredService<IOptions<CairnOptions>>().Value;
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // Whatever the application's own configuration throws (a setting it parses, say): exit code 2 as every
            // command that cannot run, not System.CommandLine's 1 ("needs migrating") and a trace.
            error.WriteLine($"This application's Cairn options are invalid: {ex.Message}");
            return null;
        }

        try
        {
            return services.GetRequiredService<IStorageMigrator>();
        }
        catch (InvalidOperationException ex)
        {
            error.WriteLine($"This application's backend has no explicit migration: {ex.Message}");
            return null;
        }
        catch (ArgumentException ex)
        {
            // A configuration the backend refuses (an in-memory SQLite database, a read-only file): no status to give.
            error.WriteLine($"This application's backend refuses its configuration: {ex.Message}");
            return null;
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            error.WriteLine($"This application's backend could not be made: {ex.GetType().Name}: {ex.Message}");
            return null;
        }
    }
}
