using System.Globalization;
using System.Text;
using System.Text.Json;
using Cairn.DependencyInjection;
using Cairn.EventStore;
using Cairn.Schemas;
using Cairn.Serialization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Cairn.Cli;

/// <summary>What the <c>schemas</c> commands do, over the services of the application's built host.</summary>
internal sealed class SchemaActions(IServiceProvider services)
{
    private static readonly UTF8Encoding Utf8 = new(encoderShouldEmitUTF8Identifier: false);

    public Task<int> CheckSnapshotAsync(string path, bool update, Writers io, CancellationToken cancellationToken) => GuardAsync(io, async () =>
    {
        var full = update ? OutputPath(path) : FullPath(path);
        var exists = File.Exists(full);
        if (!exists && !update)
        {
            throw new CommandException(
                $"The schema snapshot '{path}' does not exist (looked for {full}). Create it from this application's event types with " +
                $"`schemas check --snapshot {path} --update`, or from the registry of its backend with `schemas export --out {path}`.");
        }

        var snapshot = exists ? await ReadSnapshotAsync(path, cancellationToken).ConfigureAwait(false) : new SchemaSnapshot([]);
        var (types, options, json) = EventTypes();
        var report = SchemaCheck.Run(types, options, json, snapshot);
        await WriteReportAsync(io, report, $"the snapshot {path}").ConfigureAwait(false);
        if (!report.Passed)
        {
            await io.Error.WriteLineAsync(Invariant($"The schema check failed with {report.Problems.Count} problem(s); {path} is unchanged.")).ConfigureAwait(false);
            return CairnCli.CheckFailed;
        }

        var added = NewVersions(report);
        var modes = ChangedModes(snapshot, report.Updated);
        if (added.Count == 0 && modes.Count > 0 && exists)
        {
            if (update)
            {
                await WriteFileAsync(full, report.Updated.ToJson(), cancellationToken).ConfigureAwait(false);
                await io.Output.WriteLineAsync(Invariant($"Recorded the compatibility mode of {modes.Count} event type(s) in {path}: {string.Join(", ", modes)}.")).ConfigureAwait(false);
            }
            else
            {
                await io.Output.WriteLineAsync(Invariant($"The compatibility mode of {modes.Count} event type(s) differs from the snapshot's ({string.Join(", ", modes)}); run with --update to record it.")).ConfigureAwait(false);
            }
        }
        else if (added.Count == 0 && (exists || !update))
        {
            await io.Output.WriteLineAsync($"The snapshot {path} is up to date.").ConfigureAwait(false);
        }
        else if (!update)
        {
            await io.Output.WriteLineAsync(Invariant($"{added.Count} new version(s) not in the snapshot yet ({string.Join(", ", added)}); run with --update to add them.")).ConfigureAwait(false);
        }
        else
        {
            await WriteFileAsync(full, report.Updated.ToJson(), cancellationToken).ConfigureAwait(false);
            await io.Output.WriteLineAsync(exists
                ? Invariant($"Added {added.Count} new version(s) to {path}: {string.Join(", ", added)}.")
                : Invariant($"Created {path} with {added.Count} version(s): {string.Join(", ", added)}.")).ConfigureAwait(false);
        }

        return CairnCli.Success;
    });

    public Task<int> CheckRegistryAsync(Writers io, CancellationToken cancellationToken) => GuardAsync(io, async () =>
    {
        var (types, options, json) = EventTypes();
        if (BrokenChain(types, options) is { } broken)
        {
            // The backend's parts are made from the validated options, which this chain fails: the registry cannot be
            // opened, and whatever it holds the host would not start, so the chain alone is the check's verdict.
            var backend = ConfiguredOptions().BackendName ?? "configured";
            await io.Output.WriteLineAsync(Invariant($"Schema check against the registry of the {backend} backend:")).ConfigureAwait(false);
            await io.Output.WriteLineAsync().ConfigureAwait(false);
            await io.Output.WriteLineAsync("1 problem(s):").ConfigureAwait(false);
            await io.Output.WriteLineAsync($"- {broken.Message}").ConfigureAwait(false);
            await io.Error.WriteLineAsync("The schema check failed with 1 problem(s); the host would not start. The registry was not read: " +
                "the application's options are refused until the upcaster chain is mended, so check again after that.").ConfigureAwait(false);
            return CairnCli.CheckFailed;
        }

        var registry = await RegistryAsync(cancellationToken).ConfigureAwait(false);
        var report = await SchemaCheck.RunAsync(types, options, json, registry, cancellationToken).ConfigureAwait(false);
        await WriteReportAsync(io, report, $"the registry of the {BackendName} backend").ConfigureAwait(false);
        if (!report.Passed)
        {
            await io.Error.WriteLineAsync(Invariant($"The schema check failed with {report.Problems.Count} problem(s); the host would not start.")).ConfigureAwait(false);
            return CairnCli.CheckFailed;
        }

        var added = NewVersions(report);
        if (added.Count > 0)
        {
            await io.Output.WriteLineAsync(Invariant($"{added.Count} new version(s) will be registered when the host starts: {string.Join(", ", added)}.")).ConfigureAwait(false);
        }

        return CairnCli.Success;
    });

    public Task<int> ExportAsync(string path, Writers io, CancellationToken cancellationToken) => GuardAsync(io, async () =>
    {
        var full = OutputPath(path);
        var snapshot = await (await RegistryAsync(cancellationToken).ConfigureAwait(false)).ExportAsync(cancellationToken).ConfigureAwait(false);
        await WriteFileAsync(full, snapshot.ToJson(), cancellationToken).ConfigureAwait(false);
        var versions = snapshot.Types.Sum(t => t.Versions.Count);
        await io.Output.WriteLineAsync(Invariant($"Wrote the registry of the {BackendName} backend to {path}: {snapshot.Types.Count} event type(s), {versions} version(s).")).ConfigureAwait(false);
        if (snapshot.Types.Count == 0)
        {
            await io.Error.WriteLineAsync(BackendName == "in-memory"
                ? "The registry is empty: the in-memory backend keeps none from one run to the next. Export from the backend the application runs on, or create the snapshot from its event types with `schemas check --snapshot FILE --update`."
                : "The registry is empty: a host registers its event types when it starts, and this backend's has not started yet.").ConfigureAwait(false);
        }

        return CairnCli.Success;
    });

    public Task<int> AsyncApiAsync(string? path, string? snapshotPath, Writers io, CancellationToken cancellationToken) => GuardAsync(io, async () =>
    {
        var full = path is null ? null : OutputPath(path);
        if (full is not null && snapshotPath is not null && string.Equals(full, RealPath(FullPath(snapshotPath)), StringComparison.Ordinal))
        {
            throw new CommandException($"--out names the snapshot the document is made from ({path}): writing the document would replace it. Name another file.");
        }

        IReadOnlyList<RegisteredSchema> schemas;
        string source;
        if (snapshotPath is null)
        {
            var registry = await RegistryAsync(cancellationToken).ConfigureAwait(false);
            var all = new List<RegisteredSchema>();
            foreach (var type in await registry.GetEventTypesAsync(cancellationToken).ConfigureAwait(false))
            {
                all.AddRange(await registry.GetVersionsAsync(type, cancellationToken).ConfigureAwait(false));
            }

            schemas = all;
            source = $"the registry of the {BackendName} backend";
        }
        else
        {
            schemas = [.. (await ReadSnapshotAsync(snapshotPath, cancellationToken).ConfigureAwait(false)).Types.SelectMany(t => t.Versions)];
            source = $"the snapshot {snapshotPath}";

            // A snapshot is a file anyone may have edited: a schema that is no JSON Schema would make the document invalid.
            foreach (var schema in schemas)
            {
                try
                {
                    JsonSchemaDocuments.Check(schema.EventType, schema.Version, schema.Schema);
                }
                catch (InvalidSchemaException invalid)
                {
                    throw new CommandException($"{snapshotPath}: {invalid.Message}");
                }
            }
        }

        var document = services.GetRequiredService<AsyncApiDescriber>().Generate(schemas);
        var text = AsyncApiGenerator.ToJson(document);
        if (path is null)
        {
            await io.Output.WriteAsync(text).ConfigureAwait(false);
        }
        else
        {
            await WriteFileAsync(full!, text, cancellationToken).ConfigureAwait(false);
            await io.Output.WriteLineAsync(Invariant($"Wrote the AsyncAPI document to {path}: {schemas.Count} schema version(s) from {source}.")).ConfigureAwait(false);
        }

        var known = schemas.Select(s => s.EventType).ToHashSet(StringComparer.Ordinal);
        // Cairn's own types (a workflow's history) are versioned with Cairn: the registry never holds them.
        var missing = EventTypes().Types.Registrations.Keys.Where(t => !known.Contains(t) && !EventTypeNames.IsCairnOwn(t)).Order(StringComparer.Ordinal).ToList();
        if (missing.Count > 0)
        {
            await io.Error.WriteLineAsync(Invariant($"{missing.Count} event type(s) have no schema in {source}, so their messages have no payload: {string.Join(", ", missing)}.")).ConfigureAwait(false);
        }

        return CairnCli.Success;
    });

    private string BackendName => services.GetRequiredService<IOptions<CairnOptions>>().Value.BackendName ?? "configured";

    private (EventTypeRegistry Types, SchemaOptions Options, JsonSerializerOptions Json) EventTypes()
    {
        // Not the application's serializer, whose making refuses a broken upcaster chain, nor its options when a broken
        // chain is all that fails them: the check reports that as a failed check (exit 1), not as a command that could
        // not run (2). Any other fault of the options stops the command as before.
        CairnOptions options;
        try
        {
            options = services.GetRequiredService<IOptions<CairnOptions>>().Value;
        }
        catch (OptionsValidationException invalid) when (ConfiguredOptions() is var configured && OnlyUpcastersFail(invalid, configured))
        {
            options = configured;
        }

        return (options.EventTypes, options.Schemas, new EventSerializer(options.EventTypes, options.JsonOptions).Options);
    }

    /// <summary>The application's options as its configuration makes them, not validated.</summary>
    private CairnOptions ConfiguredOptions()
    {
        var options = new CairnOptions();
        foreach (var configure in services.GetServices<IConfigureOptions<CairnOptions>>())
        {
            if (configure is IConfigureNamedOptions<CairnOptions> named)
            {
                named.Configure(Options.DefaultName, options);
            }
            else
            {
                configure.Configure(options);
            }
        }

        foreach (var post in services.GetServices<IPostConfigureOptions<CairnOptions>>())
        {
            post.PostConfigure(Options.DefaultName, options);
        }

        return options;
    }

    /// <summary>Why the upcasters do not form the chains the host's start asks for, or null when they do.</summary>
    private static InvalidUpcasterException? BrokenChain(EventTypeRegistry types, SchemaOptions options)
    {
        try
        {
            UpcasterChains.Build(types, options.Upcasters);
            return null;
        }
        catch (InvalidUpcasterException broken)
        {
            return broken;
        }
    }

    private static bool OnlyUpcastersFail(OptionsValidationException invalid, CairnOptions configured)
    {
        return BrokenChain(configured.EventTypes, configured.Schemas) is { } broken
            && invalid.Failures.Count() == 1 && invalid.Failures.Single() == broken.Message;
    }

    private static async Task<SchemaSnapshot> ReadSnapshotAsync(string path, CancellationToken cancellationToken)
    {
        var full = FullPath(path);
        if (!File.Exists(full))
        {
            throw new CommandException(
                $"The schema snapshot '{path}' does not exist (looked for {full}). Create it from this application's event types with " +
                $"`schemas check --snapshot {path} --update`, or from the registry of its backend with `schemas export --out {path}`.");
        }

        try
        {
            return SchemaSnapshot.Parse(await File.ReadAllTextAsync(full, Utf8, cancellationToken).ConfigureAwait(false));
        }
        catch (InvalidSchemaSnapshotException ex)
        {
            throw new CommandException($"{path}: {ex.Message}");
        }
    }

    private static async Task WriteReportAsync(Writers io, SchemaCheckReport report, string against)
    {
        await io.Output.WriteLineAsync(Invariant($"Schema check of {report.EventTypes} event type(s) against {against}:")).ConfigureAwait(false);
        await io.Output.WriteLineAsync().ConfigureAwait(false);
        await io.Output.WriteAsync(report.ToString()).ConfigureAwait(false);
    }

    /// <summary>The types whose recorded mode the check changed, as "type: Old → New".</summary>
    private static List<string> ChangedModes(SchemaSnapshot before, SchemaSnapshot after) =>
        [.. after.Types
            .Where(t => before.CompatibilityOf(t.EventType) is { } old && old != t.Compatibility)
            .Select(t => Invariant($"{t.EventType}: {before.CompatibilityOf(t.EventType)} to {t.Compatibility}"))];

    private static List<string> NewVersions(SchemaCheckReport report) =>
        [.. report.Results.Where(r => r.IsNew).Select(r => Invariant($"{r.EventType} v{r.Version}"))];

    /// <summary>Writes a file whole or not at all: a temporary file beside it, then moved over it.</summary>
    private static async Task WriteFileAsync(string full, string text, CancellationToken cancellationToken)
    {
        var directory = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(directory);
        var temporary = Path.Combine(directory, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            await File.WriteAllTextAsync(temporary, text, Utf8, cancellationToken).ConfigureAwait(false);
            File.Move(temporary, full, overwrite: true);
        }
        finally
        {
            File.Delete(temporary);
        }
    }

    /// <summary>
    /// The registry of the application's backend, opened only when the backend's tables are at this Cairn's version:
    /// opening its store would otherwise migrate them (MigrateOnStart), and a check meant to write nothing, run before
    /// a deployment, would upgrade the database the running version uses.
    /// </summary>
    private async Task<SchemaRegistry> RegistryAsync(CancellationToken cancellationToken)
    {
        IStorageMigrator? migrator;
        try
        {
            migrator = services.GetService<IStorageMigrator>();
        }
        catch (InvalidOperationException)
        {
            // A backend without tables (memory).
            migrator = null;
        }

        if (migrator is not null && await migrator.GetStatusAsync(cancellationToken).ConfigureAwait(false) is { IsCurrent: false } status)
        {
            if (status.IsNewer)
            {
                throw new CommandException(
                    $"The {status.Backend} backend ({status.Location}) is at version {status.Version}, written by a Cairn newer than this one ({status.ExpectedVersion}): " +
                    "this version cannot read its registry. Run the check with the newer application, or against a snapshot.");
            }

            if (status.Version == 0)
            {
                throw new CommandException(
                    $"The {status.Backend} backend ({status.Location}) has no tables of Cairn's, so it has no registry to read; opening it would create them. " +
                    "Name the database the application uses, or check against a snapshot.");
            }

            throw new CommandException(
                $"The {status.Backend} backend ({status.Location}) is at version {status.Version}, not this Cairn's {status.ExpectedVersion}: " +
                "reading its registry would migrate it. Migrate it first (`storage migrate`) when this version is deployed, or check against a snapshot.");
        }

        return services.GetRequiredService<SchemaRegistry>();
    }

    /// <summary>
    /// The full path of a file the command reads or writes, or a <see cref="CommandException"/> saying it is none (empty,
    /// a directory, or a path ending like one).
    /// </summary>
    private static string FullPath(string path)
    {
        string full;
        try
        {
            full = Path.GetFullPath(path);
        }
        catch (Exception ex) when (ex is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw new CommandException($"'{path}' is not a path: {ex.Message}");
        }

        if (Directory.Exists(full) || Path.EndsInDirectorySeparator(full))
        {
            throw new CommandException($"'{path}' is a directory ({full}); give the path of a file.");
        }

        return full;
    }

    /// <summary>
    /// The real path of a file the command writes (through symbolic links, the file they point at), checked before any
    /// work: not under a file (a folder that is a file), not read-only, and not over an existing file other than JSON,
    /// which is no output of these commands (the backend's own SQLite database named by a slip, say) and would be lost.
    /// </summary>
    private static string OutputPath(string path)
    {
        var full = RealPath(FullPath(path));
        for (var folder = Path.GetDirectoryName(full); !string.IsNullOrEmpty(folder); folder = Path.GetDirectoryName(folder))
        {
            if (File.Exists(folder))
            {
                throw new CommandException($"'{path}' cannot be written: {folder} is a file, not a folder.");
            }

            if (Directory.Exists(folder))
            {
                break;
            }
        }

        var file = new FileInfo(full);
        if (file.Exists && !StartsAsJson(file.FullName))
        {
            throw new CommandException($"'{path}' exists and is not a JSON file ({file.FullName}); these commands write only over JSON, so as not to replace another file (a database, say). Name another file, or remove it first.");
        }

        if (file.Exists && file.IsReadOnly)
        {
            // Its folder may be writable, and a file moved over it would replace it all the same.
            throw new CommandException($"'{path}' is read-only ({file.FullName}); make it writable to replace it, or name another file.");
        }

        return file.FullName;
    }

    /// <summary>
    /// The path with every symbolic link along it followed, as the file system follows them: a link's relative target
    /// counts from the folder the link really is in, and a <c>..</c> in a link's target leaves the folder it points at.
    /// A <c>..</c> written in the path itself has already been taken as text by <see cref="Path.GetFullPath(string)"/>,
    /// as .NET's file calls take it, so the file written is the one the command reads. Two paths name one file when
    /// their real paths are equal (a hard link aside).
    /// </summary>
    private static string RealPath(string full)
    {
        var root = Path.GetPathRoot(full) ?? "";
        var parts = new Queue<string>(full[root.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries));
        var current = root;
        for (var links = 0; parts.Count > 0;)
        {
            var part = parts.Dequeue();
            if (part == "..")
            {
                current = Path.GetDirectoryName(current) ?? current;
                continue;
            }

            if (part == ".")
            {
                continue;
            }

            var next = Path.Combine(current, part);
            if (new FileInfo(next).LinkTarget is not { } target)
            {
                current = next;
                continue;
            }

            if (++links > 40)
            {
                throw new CommandException($"'{full}' cannot be written: its links go round in a loop, or nest too deep.");
            }

            var followed = Path.IsPathRooted(target) ? target : Path.Combine(current, target);
            var followedRoot = Path.GetPathRoot(followed) ?? "";
            parts = new Queue<string>(followed[followedRoot.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries).Concat(parts));
            current = followedRoot;
        }

        return current;
    }

    /// <summary>Whether a file is empty or its first character (past a byte order mark and white space) opens JSON.</summary>
    private static bool StartsAsJson(string full)
    {
        using var file = new StreamReader(full, Utf8, detectEncodingFromByteOrderMarks: true);
        int next;
        while ((next = file.Read()) >= 0 && char.IsWhiteSpace((char)next))
        {
        }

        return next is < 0 or '{' or '[';
    }

    /// <summary>Runs a command; what stops it is reported in words, with <see cref="CairnCli.Error"/>.</summary>
    private static async Task<int> GuardAsync(Writers io, Func<Task<int>> run)
    {
        try
        {
            return await run().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is CommandException or CairnException or OptionsValidationException or IOException or UnauthorizedAccessException)
        {
            await io.Error.WriteLineAsync(ex.Message).ConfigureAwait(false);
            return CairnCli.Error;
        }
        catch (ArgumentException ex)
        {
            // A configuration the backend refuses as it opens (an in-memory SQLite database, a read-only file, a
            // connection string's "Couldn't set port"): its message alone does not say what it was about.
            await io.Error.WriteLineAsync($"This application's backend refuses its configuration: {ex.Message}").ConfigureAwait(false);
            return CairnCli.Error;
        }
        catch (System.Data.Common.DbException ex)
        {
            // A database that cannot be read (not a database, locked, unreachable): said in one line, as `storage status` does.
            await io.Error.WriteLineAsync($"The backend could not be read: {ex.Message}").ConfigureAwait(false);
            return CairnCli.Error;
        }

        catch (OperationCanceledException)
        {
            // A command that did not run to its end gave no verdict: not 1, also where an application's own root runs it.
            await io.Error.WriteLineAsync(CairnCli.CancelledMessage).ConfigureAwait(false);
            return CairnCli.Error;
        }
        catch (Exception ex)
        {
            // Unexpected: the whole exception, since its message alone may not say where.
            await io.Error.WriteLineAsync($"The command failed: {ex}").ConfigureAwait(false);
            return CairnCli.Error;
        }
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}

/// <summary>A command cannot run; the message says why and what to do.</summary>
internal sealed class CommandException(string message) : Exception(message);
