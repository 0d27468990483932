using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Cairn.EventStore;

namespace Cairn.Schemas;

/// <summary>
/// Keeps the schema registry in memory: for tests and tools, not for schemas that must survive the process. Each
/// version is kept as its canonical JSON text and parsed afresh for every read, so no caller can change a registered
/// document through a node it was given or one it added.
/// </summary>
public sealed class InMemorySchemaStore : ISchemaStore
{
    private readonly Lock _gate = new();
    private readonly Dictionary<string, List<(int Version, string Document)>> _versions = new(StringComparer.Ordinal);
    private readonly Dictionary<string, CompatibilityMode> _compatibility = new(StringComparer.Ordinal);

    /// <inheritdoc />
    public Task<IReadOnlyList<RegisteredSchema>> GetVersionsAsync(string eventType, CancellationToken cancellationToken = default)
    {
        try
        {
            SchemaStoreInput.CheckEventType(eventType, nameof(eventType));
            cancellationToken.ThrowIfCancellationRequested();
            (int Version, string Document)[] versions;
            lock (_gate)
            {
                versions = _versions.TryGetValue(eventType, out var stored) ? [.. stored] : [];
            }

            return Task.FromResult<IReadOnlyList<RegisteredSchema>>(
                Array.ConvertAll(versions, v => new RegisteredSchema(eventType, v.Version, SchemaStoreInput.Parse(eventType, v.Version, v.Document))));
        }
        catch (Exception ex)
        {
            return Refusal.Of<IReadOnlyList<RegisteredSchema>>(ex);
        }
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<string>> GetEventTypesAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            cancellationToken.ThrowIfCancellationRequested();
            string[] types;
            lock (_gate)
            {
                types = [.. _versions.Keys];
            }

            Array.Sort(types, StringComparer.Ordinal);
            return Task.FromResult<IReadOnlyList<string>>(types);
        }
        catch (Exception ex)
        {
            return Refusal.Of<IReadOnlyList<string>>(ex);
        }
    }

    /// <inheritdoc />
    public Task AddVersionAsync(RegisteredSchema schema, CancellationToken cancellationToken = default)
    {
        try
        {
            var document = SchemaStoreInput.CheckAndSerialize(schema);
            cancellationToken.ThrowIfCancellationRequested();
            lock (_gate)
            {
                if (!_versions.TryGetValue(schema.EventType, out var stored))
                {
                    _versions.Add(schema.EventType, [(schema.Version, document)]);
                    return Task.CompletedTask;
                }

                var latest = stored[^1].Version;
                if (schema.FirstOfType || schema.Version != (long)latest + 1)
                {
                    // Faulted, not thrown: a refusal is the outcome of the call, as on a backend that reports it later.
                    return Task.FromException(new SchemaVersionConflictException(schema.EventType, schema.Version, latest));
                }

                stored.Add((schema.Version, document));
            }

            return Task.CompletedTask;
        }
        catch (Exception ex)
        {
            return Refusal.Of(ex);
        }
    }

    /// <inheritdoc />
    public Task<CompatibilityMode?> GetCompatibilityAsync(string eventType, CancellationToken cancellationToken = default)
    {
        try
        {
            SchemaStoreInput.CheckEventType(eventType, nameof(eventType));
            cancellationToken.ThrowIfCancellationRequested();
            lock (_gate)
            {
                return Task.FromResult<CompatibilityMode?>(_compatibility.TryGetValue(eventType, out var mode) ? mode : null);
            }
        }
        catch (Exception ex)
        {
            return Refusal.Of<CompatibilityMode?>(ex);
        }
    }

    /// <inheritdoc />
    public Task SetCompatibilityAsync(string eventType, CompatibilityMode mode, CancellationToken cancellationToken = default)
    {
        try
        {
            SchemaStoreInput.CheckEventType(eventType, nameof(eventType));
            SchemaStoreInput.CheckMode(mode, nameof(mode));
            cancellationToken.ThrowIfCancellationRequested();
            lock (_gate)
            {
                _compatibility[eventType] = mode;
            }

            return Task.CompletedTask;
        }
        catch (Exception ex)
        {
            return Refusal.Of(ex);
        }
    }
}

/// <summary>
/// What every backend's schema store checks and how it keeps a document, so the backends refuse the same input with
/// the same errors and hand back the same JSON.
/// </summary>
internal static class SchemaStoreInput
{
    /// <summary>
    /// The deepest document kept, <see cref="JsonSchemaDocuments.MaxDepth"/>. The same limit writes and reads, so a
    /// document that was stored can always be read back (System.Text.Json writes 1,000 levels by default but reads only 64).
    /// </summary>
    public const int MaxDepth = JsonSchemaDocuments.MaxDepth;

    private static readonly JsonWriterOptions WriterOptions = new() { MaxDepth = MaxDepth };
    private static readonly JsonDocumentOptions ReaderOptions = new() { MaxDepth = MaxDepth };

    /// <summary>Refuses a missing or invalid event type name, naming the parameter.</summary>
    public static void CheckEventType(string? eventType, string parameter)
    {
        ArgumentNullException.ThrowIfNull(eventType, parameter);
        if (EventTypeNames.Validate(eventType) is { } fault)
        {
            throw new ArgumentException($"'{eventType}' is not a valid event type name: {fault}.", parameter);
        }
    }

    /// <summary>Refuses a value that is no member of <see cref="CompatibilityMode"/>.</summary>
    public static void CheckMode(CompatibilityMode mode, string parameter)
    {
        if (!Enum.IsDefined(mode))
        {
            throw new ArgumentOutOfRangeException(parameter, mode, "The compatibility mode is not one of CompatibilityMode's members.");
        }
    }

    /// <summary>Checks a version to add and returns its document's canonical JSON text.</summary>
    public static string CheckAndSerialize(RegisteredSchema schema)
    {
        ArgumentNullException.ThrowIfNull(schema);
        CheckEventType(schema.EventType, nameof(RegisteredSchema.EventType));
        if (schema.Version < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(RegisteredSchema.Version), schema.Version, "A schema version must be 1 or more.");
        }

        if (schema.Schema is null)
        {
            throw new ArgumentNullException(nameof(RegisteredSchema.Schema), "A schema version needs its JSON Schema document.");
        }

        var buffer = new ArrayBufferWriter<byte>(1024);
        try
        {
            using var writer = new Utf8JsonWriter(buffer, WriterOptions);
            schema.Schema.WriteTo(writer);
        }
        catch (Exception ex) when (ex is InvalidOperationException or JsonException or NotSupportedException)
        {
            throw new ArgumentException($"The schema document of version {schema.Version} of '{schema.EventType}' cannot be written as JSON: {ex.Message}", nameof(RegisteredSchema.Schema), ex);
        }

        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    /// <summary>A fresh node of a stored document; a document that is not a JSON object is reported, not returned.</summary>
    public static JsonObject Parse(string eventType, int version, string document)
    {
        try
        {
            return JsonNode.Parse(document, documentOptions: ReaderOptions) as JsonObject
                ?? throw new CairnException($"The stored schema of version {version} of '{eventType}' is not a JSON object.");
        }
        catch (JsonException ex)
        {
            throw new CairnException($"The stored schema of version {version} of '{eventType}' is not valid JSON: {ex.Message}", ex);
        }
    }
}
