using System.Globalization;
using Cairn.DependencyInjection;
using Cairn.EventStore;
using Cairn.Serialization;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Cairn.Schemas;

/// <summary>
/// Registers the current version of every event type when the host starts, before anything appends or sends: a new
/// version is checked and recorded, a registered one must be unchanged, and older stored versions must stay readable
/// (an upcaster, or a backward compatible next version, for each step). Any problem stops the start, every problem
/// listed. Then it loads the registry's versions into the check of payloads on append and send.
/// </summary>
internal sealed class SchemaRegistrationService(
    IOptions<CairnOptions> options,
    EventSerializer serializer,
    SchemaRegistry? registry,
    PayloadSchemas payloads,
    ILogger<SchemaRegistrationService> logger) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var schemas = options.Value.Schemas;

        // What is registered and validated is read now: a type added later would be written unregistered and unchecked.
        serializer.Registry.Fix("the event types are fixed once the host has started, when they are registered in the schema registry");
        if (!schemas.RegisterOnStart)
        {
            // Nothing registered, checked or validated; but what is written by hand still names its class's version,
            // or its readers would take it for version 1 and upcast it.
            var classes = serializer.Registry.Registrations.Keys.Where(t => !EventTypeNames.IsCairnOwn(t));
            payloads.LoadClassVersions(classes.Select(t => (t, serializer.Registry.GetVersion(t))), logger);
            return;
        }

        if (registry is null)
        {
            logger.LogWarning("The {Backend} backend keeps no schema registry: event types are not registered or checked, and payloads are not validated.", options.Value.BackendName);
            return;
        }

        var types = serializer.Registry;
        // Cairn's own types (a workflow's history) are versioned with Cairn, not with the application.
        var registrations = types.Registrations.Where(r => !EventTypeNames.IsCairnOwn(r.Key)).OrderBy(r => r.Key, StringComparer.Ordinal).ToList();

        // Concurrently: on SQLite the registrations share the writer's group commits.
        var outcomes = await Task.WhenAll(registrations.Select(r => RegisterAsync(registry, r.Key, r.Value, types.GetVersion(r.Key), schemas, cancellationToken))).ConfigureAwait(false);
        var problems = outcomes.Where(o => o.Problem is not null).Select(o => o.Problem!).Concat(schemas.UnusedDocuments(types)).Concat(schemas.UnusedCompatibilities(types)).ToList();
        if (problems.Count > 0)
        {
            throw new SchemaRegistrationException(problems);
        }

        var loaded = outcomes.Where(o => o.Versions is not null).Select(o => (o.EventType, o.Current, schemas.ValidationOf(o.EventType), o.Versions!)).ToList();
        var awaiting = new Dictionary<string, SchemaValidationMode>(StringComparer.Ordinal);

        // A type validated here without a class of its own (a gateway appending another service's events as JSON):
        // checked against the registry's versions, the latest as current, which its owner registered.
        foreach (var eventType in schemas.TypesWithValidation.Where(t => !types.Registrations.ContainsKey(t)).Order(StringComparer.Ordinal))
        {
            var versions = await registry.GetVersionsAsync(eventType, cancellationToken).ConfigureAwait(false);
            if (versions.Count == 0)
            {
                logger.LogWarning("The event type '{EventType}' has a validation mode but no class here and no schema in the registry: its payloads are not validated until a schema is registered for it.", eventType);
                awaiting[eventType] = schemas.ValidationOf(eventType);
                continue;
            }

            loaded.Add((eventType, versions[^1].Version, schemas.ValidationOf(eventType), versions));
        }

        payloads.Load(loaded, logger, awaiting, registry.GetVersionsAsync);
        logger.LogInformation("Cairn schema registry: {Count} event types checked, {Added} new versions registered.", outcomes.Length, outcomes.Count(o => o.Added));
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    private async Task<Outcome> RegisterAsync(SchemaRegistry registry, string eventType, Type clrType, int version, SchemaOptions schemas, CancellationToken cancellationToken)
    {
        System.Text.Json.Nodes.JsonObject schema;
        try
        {
            schema = SchemaCheck.CurrentSchema(eventType, version, clrType, schemas, serializer.Options);
        }
        catch (InvalidSchemaException ex)
        {
            return new Outcome(eventType, version, null, false, ex.Message);
        }
        catch (Exception ex) when (ex is InvalidOperationException or NotSupportedException)
        {
            // A class System.Text.Json cannot describe (an interface, say): the type goes unchecked, and says so.
            logger.LogWarning(ex, "No JSON Schema can be generated for the event type '{EventType}' ({Class}); supply one with Schemas.Document(...).", eventType, clrType.FullName);
            return new Outcome(eventType, version, null, false, null);
        }

        try
        {
            var registration = await registry.RegisterAsync(eventType, version, schema, schemas.CompatibilityOf(eventType), cancellationToken).ConfigureAwait(false);
            var versions = await registry.GetVersionsAsync(eventType, cancellationToken).ConfigureAwait(false);
            if (versions[^1].Version > version)
            {
                logger.LogWarning("The event type '{EventType}' is at version {Version} here, but the registry has version {Latest}: events written by newer code cannot be read here.", eventType, version, versions[^1].Version);
            }

            var unreadable = SchemaRules.UnreadableVersions(eventType, versions, version, serializer.Upcasters);
            return new Outcome(eventType, version, versions, registration.Added, unreadable);
        }
        catch (CairnException ex) when (ex is InvalidSchemaException or IncompatibleSchemaException or SchemaVersionChangedException or SchemaVersionConflictException)
        {
            return new Outcome(eventType, version, null, false, ex.Message);
        }
    }

    private sealed record Outcome(string EventType, int Current, IReadOnlyList<RegisteredSchema>? Versions, bool Added, string? Problem);
}

/// <summary>The host's event types do not fit the schema registry; it did not start. Every problem is listed.</summary>
public sealed class SchemaRegistrationException(IReadOnlyList<string> problems)
    : CairnException(string.Create(CultureInfo.InvariantCulture, $"The event types do not fit the schema registry ({problems.Count} problem(s)):{Environment.NewLine}- {string.Join(Environment.NewLine + "- ", problems)}"))
{
    /// <summary>Each problem, in words.</summary>
    public IReadOnlyList<string> Problems { get; } = problems;
}
