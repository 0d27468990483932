using System.Collections.Concurrent;
using Cairn.Envelopes;
using Cairn.EventStore;

namespace Cairn.Subscriptions;

/// <summary>Stores, per subscriber key, the position of the last event it handled.</summary>
public interface ICheckpointStore
{
    /// <summary>The stored position for a key, or null when none was stored.</summary>
    ValueTask<GlobalPosition?> GetAsync(string key, CancellationToken cancellationToken);

    /// <summary>Stores the position for a key, durably.</summary>
    ValueTask SetAsync(string key, GlobalPosition position, CancellationToken cancellationToken);
}

/// <summary>Checkpoints held in memory, for tests and the in-memory store.</summary>
public sealed class InMemoryCheckpointStore : ICheckpointStore
{
    private readonly ConcurrentDictionary<string, GlobalPosition> _positions = new(StringComparer.Ordinal);

    /// <inheritdoc />
    public ValueTask<GlobalPosition?> GetAsync(string key, CancellationToken cancellationToken) =>
        ValueTask.FromResult(_positions.TryGetValue(CheckpointKeys.Validate(key), out var p) ? p : (GlobalPosition?)null);

    /// <inheritdoc />
    public ValueTask SetAsync(string key, GlobalPosition position, CancellationToken cancellationToken)
    {
        _positions[CheckpointKeys.Validate(key)] = position;
        return ValueTask.CompletedTask;
    }
}

/// <summary>Rules for checkpoint keys.</summary>
public static class CheckpointKeys
{
    /// <summary>Refuses an empty, over-long or control-character key, and returns it otherwise.</summary>
    public static string Validate(string key)
    {
        if (string.IsNullOrWhiteSpace(key) || key.Length > 256 || StoredText.Refuses(key))
        {
            throw new ArgumentException($"'{key}' is not a valid checkpoint key: 1 to 256 characters, not blank, no {StoredText.Refused}.", nameof(key));
        }

        return key;
    }
}
