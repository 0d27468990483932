using System.CommandLine;

namespace Cairn.Cli;

/// <summary>
/// Runs Cairn's commands inside an application's own program, against the services of its built (not started) host,
/// so that they see exactly the event types, options and backend the application runs with:
/// <code>
/// using var host = builder.Build();
/// if (await CairnCli.TryRunAsync(args, host.Services, Console.Out, Console.Error) is { } code)
/// {
///     return code;
/// }
///
/// await host.RunAsync();
/// </code>
/// </summary>
public static class CairnCli
{
    /// <summary>The command ran and everything is in order (a check passed, a file was written).</summary>
    public const int Success = 0;

    /// <summary>A check ran and failed: the event types break compatibility with the registry. Nothing was written.</summary>
    public const int CheckFailed = 1;

    /// <summary>The command could not run: bad arguments, a missing or unreadable file, an unreachable backend.</summary>
    public const int Error = 2;

    /// <summary>What a command cancelled before its end says, with <see cref="Error"/>.</summary>
    internal const string CancelledMessage = "The command was cancelled before it finished.";

    /// <summary>The root command with every Cairn command: <c>schemas</c> and <c>storage</c>.</summary>
    public static RootCommand CreateRootCommand(IServiceProvider services)
    {
        ArgumentNullException.ThrowIfNull(services);
        return new RootCommand("Cairn's commands, run against this application's event types and backend.")
        {
            CairnCommands.Schemas(services),
            CairnCommands.Storage(services),
        };
    }

    /// <summary>
    /// Runs the Cairn command the arguments name, writing to <paramref name="output"/> and <paramref name="error"/>, and
    /// returns its exit code (<see cref="Success"/>, <see cref="CheckFailed"/> or <see cref="Error"/>); or returns null,
    /// running nothing, when the first argument names no Cairn command, so that the application goes on as usual.
    /// </summary>
    public static async Task<int?> TryRunAsync(string[] args, IServiceProvider services, TextWriter output, TextWriter error, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(error);
        var root = CreateRootCommand(services);
        if (args.Length == 0 || !root.Subcommands.Any(c => c.Name == args[0] || c.Aliases.Contains(args[0])))
        {
            return null;
        }

        // No response files: an argument starting with '@' is a path (a snapshot under `@team/`), not a file of arguments.
        var parsed = root.Parse(args, new ParserConfiguration { ResponseFileTokenReplacer = null });
        int code;
        try
        {
            // Its own handler would answer an exception with 1, which a pipeline reads as a failed check.
            code = await parsed.InvokeAsync(new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false }, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // A command that did not run to its end gave no verdict.
            await error.WriteLineAsync(CancelledMessage).ConfigureAwait(false);
            return Error;
        }
        catch (Exception ex)
        {
            await error.WriteLineAsync($"The command failed: {ex}").ConfigureAwait(false);
            return Error;
        }

        // System.CommandLine answers bad arguments with 1, which a pipeline would read as a failed check.
        return parsed.Errors.Count > 0 ? Error : code;
    }
}
