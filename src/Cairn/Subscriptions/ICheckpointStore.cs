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
    public ValueTask<GlobalPosition?> GetAsync(string key, CancellationToken cancellationToken)
    {
        try
        {
            CheckpointKeys.Validate(key);
            cancellationToken.ThrowIfCancellationRequested();
            return ValueTask.FromResult(_positions.TryGetValue(key, out var p) ? p : (GlobalPosition?)null);
        }
        catch (Exception ex)
        {
            return Refusal.ValueOf<GlobalPosition?>(ex);
        }
    }

    /// <inheritdoc />
    public ValueTask SetAsync(string key, GlobalPosition position, CancellationToken cancellationToken)
    {
        try
        {
            CheckpointKeys.Validate(key);

            // As on the durable backends: a cancelled call writes nothing.
            cancellationToken.ThrowIfCancellationRequested();
            _positions[key] = position;
            return ValueTask.CompletedTask;
        }
        catch (Exception ex)
        {
            return Refusal.ValueOf(ex);
        }
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
