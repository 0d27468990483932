using System.Reflection;
using Cairn.Envelopes;

namespace Cairn.EventStore;

/// <summary>Settings every backend's event store keeps.</summary>
public sealed record EventStoreOptions
{
    /// <summary>The default limit on one event's data and metadata: 1 MiB.</summary>
    public const int DefaultMaxEventSize = 1024 * 1024;

    /// <summary>The CloudEvents <c>source</c> written on events that do not set their own.</summary>
    public string Source { get; init; } = DefaultSource();

    /// <summary>The largest event accepted, in bytes of data plus metadata.</summary>
    public int MaxEventSize { get; init; } = DefaultMaxEventSize;

    /// <summary>The clock that stamps commit times and evaluates max age.</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>The schema registry's check of payloads on append and send; null checks nothing.</summary>
    internal Schemas.PayloadSchemas? Schemas { get; init; }

    /// <summary>What a valid <see cref="Source"/> is, as a refusal says it.</summary>
    internal const string SourceRule = "must be " + UriText.ReferenceRule + ".";

    /// <summary>Whether <paramref name="source"/> may be every event's default source.</summary>
    internal static bool IsValidSource(string? source) => UriText.IsReference(source);

    /// <summary>Refuses impossible settings with <see cref="ArgumentException"/>.</summary>
    public void Validate()
    {
        if (!IsValidSource(Source))
        {
            throw new ArgumentException("The event source " + SourceRule, nameof(Source));
        }

        if (MaxEventSize is < 1 or > 256 * 1024 * 1024)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxEventSize), MaxEventSize, "MaxEventSize must be between 1 byte and 256 MiB.");
        }
    }

    private static string DefaultSource() =>
        "urn:cairn:" + Uri.EscapeDataString((Assembly.GetEntryAssembly()?.GetName().Name ?? "app").ToLowerInvariant());
}
