using System.CommandLine;

namespace Cairn.Cli;

/// <summary>
/// Cairn's commands, for an application to mount in its own command line (or to run through
/// <see cref="CairnCli.TryRunAsync"/>). Each takes the services of the application's built host; none starts it.
/// </summary>
public static class CairnCommands
{
    /// <summary>
    /// <c>schemas</c>: the schema registry from a build pipeline.
    /// <list type="bullet">
    /// <item><c>schemas check --snapshot &lt;file&gt; [--update]</c>: the event types against a saved snapshot; with
    /// <c>--update</c>, the new versions are written to it when the check passes.</item>
    /// <item><c>schemas check --registry</c>: the event types against the backend's registry, writing nothing.</item>
    /// <item><c>schemas export --out &lt;file&gt;</c>: the backend's registry saved as a snapshot.</item>
    /// <item><c>schemas asyncapi [--out &lt;file&gt;] [--snapshot &lt;file&gt;]</c>: the application's AsyncAPI 3.0
    /// document, with every registered version (of the backend's registry, or of a snapshot).</item>
    /// </list>
    /// Exit codes: <see cref="CairnCli.Success"/>, <see cref="CairnCli.CheckFailed"/>, <see cref="CairnCli.Error"/>.
    /// </summary>
    public static Command Schemas(IServiceProvider services)
    {
        ArgumentNullException.ThrowIfNull(services);
        var actions = new SchemaActions(services);
        return new Command("schemas", "Checks the event types against the schema registry, exports it, describes the application in AsyncAPI.")
        {
            Check(actions),
            Export(actions),
            AsyncApi(actions),
        };
    }

    /// <summary>
    /// <c>storage</c>: the backend's tables, for a deployment step.
    /// <list type="bullet">
    /// <item><c>storage status</c>: their version and the one this Cairn expects; exits with
    /// <see cref="CairnCli.CheckFailed"/> when they differ.</item>
    /// <item><c>storage migrate</c>: creates or migrates them (safe beside starting processes).</item>
    /// </list>
    /// </summary>
    public static Command Storage(IServiceProvider services)
    {
        ArgumentNullException.ThrowIfNull(services);
        var actions = new StorageActions(services);
        var status = new Command("status", "Shows the version of the backend's tables and the one this Cairn expects; fails when they differ.");
        status.SetAction((parse, cancellationToken) => actions.StatusAsync(Writers(parse), cancellationToken));
        var migrate = new Command("migrate", "Creates or migrates the backend's tables to the version this Cairn expects.");
        migrate.SetAction((parse, cancellationToken) => actions.MigrateAsync(Writers(parse), cancellationToken));
        return new Command("storage", "Shows and migrates the version of the backend's tables.") { status, migrate };
    }

    private static Command Check(SchemaActions actions)
    {
        var snapshot = new Option<string>("--snapshot") { Description = "The saved snapshot of the registry to check against (a JSON file).", HelpName = "file" };
        var registry = new Option<bool>("--registry") { Description = "Check against the registry of the application's backend instead; nothing is written." };
        var update = new Option<bool>("--update") { Description = "When the check passes, add the new versions to the snapshot file (created if missing)." };
        var command = new Command("check", "Compares the event types compiled into the application with the registry; fails on any change that breaks compatibility.")
        {
            snapshot,
            registry,
            update,
        };
        // Checked by the action rather than a validator: a parse error exits with System.CommandLine's 1 where an
        // application's own root runs the command, and a pipeline reads 1 as a failed check.
        command.SetAction(async (parse, cancellationToken) =>
        {
            var fromSnapshot = parse.GetResult(snapshot) is not null;
            var fromRegistry = parse.GetValue(registry);
            var misuse = fromSnapshot == fromRegistry ? "Give either --snapshot <file> or --registry."
                : fromRegistry && parse.GetValue(update) ? "--update writes a snapshot file, so it goes with --snapshot; --registry writes nothing."
                : null;
            if (misuse is not null)
            {
                await Writers(parse).Error.WriteLineAsync(misuse).ConfigureAwait(false);
                return CairnCli.Error;
            }

            return fromRegistry
                ? await actions.CheckRegistryAsync(Writers(parse), cancellationToken).ConfigureAwait(false)
                : await actions.CheckSnapshotAsync(parse.GetRequiredValue(snapshot), parse.GetValue(update), Writers(parse), cancellationToken).ConfigureAwait(false);
        });
        return command;
    }

    private static Command Export(SchemaActions actions)
    {
        var output = new Option<string>("--out") { Description = "The snapshot file to write.", HelpName = "file", Required = true };
        var command = new Command("export", "Writes the registry of the application's backend as a snapshot, to keep in the repository.") { output };
        command.SetAction((parse, cancellationToken) => actions.ExportAsync(parse.GetRequiredValue(output), Writers(parse), cancellationToken));
        return command;
    }

    private static Command AsyncApi(SchemaActions actions)
    {
        var output = new Option<string>("--out") { Description = "The file to write; without it, the document is printed.", HelpName = "file" };
        var snapshot = new Option<string>("--snapshot") { Description = "Take the schemas from this snapshot instead of the backend's registry.", HelpName = "file" };
        var command = new Command("asyncapi", "Writes the application's AsyncAPI 3.0 document, with every registered version of its event types.")
        {
            output,
            snapshot,
        };
        command.SetAction((parse, cancellationToken) => actions.AsyncApiAsync(parse.GetValue(output), parse.GetValue(snapshot), Writers(parse), cancellationToken));
        return command;
    }

    private static Writers Writers(ParseResult parse) =>
        new(parse.InvocationConfiguration.Output, parse.InvocationConfiguration.Error);
}

/// <summary>Where a command writes: its results, and its errors.</summary>
internal sealed record Writers(TextWriter Output, TextWriter Error);
