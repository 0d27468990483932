using System.Collections.Concurrent;
using System.Text.Json;
using Cairn.EventStore;

namespace Cairn.Domain;

/// <summary>
/// A decider's state saved at a version of its stream, so a load folds only the events after it. It stands for one
/// history: the events from <see cref="FirstVersion"/> to <see cref="StreamVersion"/>, the last of them at
/// <see cref="Position"/>. A loader uses it only while the stream still shows exactly that history.
/// </summary>
/// <param name="Stream">The stream.</param>
/// <param name="Kind">What the state is (<c>order</c>, say): one stream may keep a snapshot per kind.</param>
/// <param name="StreamVersion">The version of the last event folded into the state.</param>
/// <param name="FirstVersion">The version of the first event folded: 0 unless earlier events were hidden when the state was folded.</param>
/// <param name="Position">The global position of the event at <paramref name="StreamVersion"/>.</param>
/// <param name="SchemaVersion">The version of the state's serialized shape; a loader expecting another ignores the snapshot.</param>
/// <param name="Data">The serialized state.</param>
public sealed record StoredSnapshot(
    StreamName Stream,
    string Kind,
    long StreamVersion,
    long FirstVersion,
    GlobalPosition Position,
    int SchemaVersion,
    ReadOnlyMemory<byte> Data)
{
    /// <summary>
    /// Refuses an impossible snapshot: a bad kind with <see cref="InvalidSnapshotKindException"/>, a negative or
    /// inconsistent version, or a schema version below 1, with <see cref="ArgumentOutOfRangeException"/>.
    /// </summary>
    public void Validate()
    {
        _ = Stream.Value;
        SnapshotKinds.Validate(Kind);
        if (StreamVersion < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(StreamVersion), StreamVersion, "A snapshot's stream version must be 0 or more.");
        }

        if (FirstVersion < 0 || FirstVersion > StreamVersion)
        {
            throw new ArgumentOutOfRangeException(nameof(FirstVersion), FirstVersion, $"A snapshot's first version must be between 0 and its stream version ({StreamVersion}).");
        }

        if (SchemaVersion < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(SchemaVersion), SchemaVersion, "A snapshot's schema version must be 1 or more.");
        }
    }
}

/// <summary>
/// Keeps the latest snapshot per stream and kind. A save replaces the stored snapshot only when its stream version is
/// at least the stored one's, so a slow writer never replaces a newer snapshot with an older one.
/// </summary>
public interface ISnapshotStore
{
    /// <summary>
    /// Saves a snapshot unless one with a later stream version is stored for its stream and kind. Returns whether it
    /// was stored.
    /// </summary>
    ValueTask<bool> SaveAsync(StoredSnapshot snapshot, CancellationToken cancellationToken);

    /// <summary>The snapshot stored for a stream and kind, or null when there is none.</summary>
    ValueTask<StoredSnapshot?> LoadAsync(StreamName stream, string kind, CancellationToken cancellationToken);

    /// <summary>Deletes the snapshot of a stream and kind. Returns whether there was one.</summary>
    ValueTask<bool> DeleteAsync(StreamName stream, string kind, CancellationToken cancellationToken);
}

/// <summary>Snapshots held in memory, for tests and the in-memory store.</summary>
public sealed class InMemorySnapshotStore : ISnapshotStore
{
    private readonly ConcurrentDictionary<(string Stream, string Kind), StoredSnapshot> _snapshots = new();

    /// <inheritdoc />
    public ValueTask<bool> SaveAsync(StoredSnapshot snapshot, CancellationToken cancellationToken)
    {
        try
        {
            ArgumentNullException.ThrowIfNull(snapshot);
            snapshot.Validate();
            cancellationToken.ThrowIfCancellationRequested();

            // A copy: the caller may reuse its buffer.
            var copy = snapshot with { Data = snapshot.Data.ToArray() };
            var key = (snapshot.Stream.Value, snapshot.Kind);
            while (true)
            {
                if (_snapshots.TryGetValue(key, out var stored))
                {
                    if (stored.StreamVersion > copy.StreamVersion)
                    {
                        return ValueTask.FromResult(false);
                    }

                    if (_snapshots.TryUpdate(key, copy, stored))
                    {
                        return ValueTask.FromResult(true);
                    }
                }
                else if (_snapshots.TryAdd(key, copy))
                {
                    return ValueTask.FromResult(true);
                }
            }
        }
        catch (Exception ex)
        {
            return Refusal.ValueOf<bool>(ex);
        }
    }

    /// <inheritdoc />
    public ValueTask<StoredSnapshot?> LoadAsync(StreamName stream, string kind, CancellationToken cancellationToken)
    {
        try
        {
            SnapshotKinds.Validate(kind);
            cancellationToken.ThrowIfCancellationRequested();
            return ValueTask.FromResult(_snapshots.TryGetValue((stream.Value, kind), out var stored) ? stored : null);
        }
        catch (Exception ex)
        {
            return Refusal.ValueOf<StoredSnapshot?>(ex);
        }
    }

    /// <inheritdoc />
    public ValueTask<bool> DeleteAsync(StreamName stream, string kind, CancellationToken cancellationToken)
    {
        try
        {
            SnapshotKinds.Validate(kind);
            cancellationToken.ThrowIfCancellationRequested();
            return ValueTask.FromResult(_snapshots.TryRemove((stream.Value, kind), out _));
        }
        catch (Exception ex)
        {
            return Refusal.ValueOf<bool>(ex);
        }
    }
}

/// <summary>The rules for snapshot kinds: 1 to 128 ASCII letters, digits, <c>.</c>, <c>_</c>, <c>-</c> and <c>:</c>.</summary>
public static class SnapshotKinds
{
    /// <summary>The longest kind accepted.</summary>
    public const int MaxLength = 128;

    /// <summary>Returns the kind when it is valid; throws <see cref="InvalidSnapshotKindException"/> otherwise.</summary>
    public static string Validate(string? kind)
    {
        if (string.IsNullOrEmpty(kind))
        {
            throw new InvalidSnapshotKindException(kind, "the kind is empty");
        }

        if (kind.Length > MaxLength)
        {
            throw new InvalidSnapshotKindException(kind, $"the kind is over {MaxLength} characters");
        }

        foreach (var c in kind)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-' or ':'))
            {
                throw new InvalidSnapshotKindException(kind, $"'{(char.IsControl(c) ? '?' : c)}' is not allowed: use letters, digits, '.', '_', '-' and ':'");
            }
        }

        return kind;
    }
}

/// <summary>A snapshot kind broke a rule; nothing was read or written.</summary>
public sealed class InvalidSnapshotKindException(string? kind, string reason)
    : ArgumentException($"Invalid snapshot kind '{Printable(kind)}': {reason}.")
{
    /// <summary>The refused kind.</summary>
    public string? Kind { get; } = kind;

    /// <summary>The rule it broke.</summary>
    public string Reason { get; } = reason;

    private static string Printable(string? kind) =>
        kind is null ? "(null)" :
        new string([.. (kind.Length > 64 ? kind[..64] + "…" : kind).Select(c => char.IsControl(c) ? '?' : c)]);
}

/// <summary>
/// When and how a <see cref="DeciderHandler{TCommand, TState, TEvent}"/> snapshots its state:
/// <c>new SnapshotPolicy { Kind = "order", SchemaVersion = 2, Every = 100 }</c>.
/// </summary>
public sealed record SnapshotPolicy
{
    /// <summary>What the state is; snapshots are stored per stream and kind. See <see cref="SnapshotKinds"/>.</summary>
    public required string Kind { get; init; }

    /// <summary>
    /// The version of the state's serialized shape, 1 or more. Raise it whenever the state type changes in a way old
    /// JSON would be misread: snapshots of any other version are then ignored and the state is folded from the events.
    /// </summary>
    public int SchemaVersion { get; init; } = 1;

    /// <summary>
    /// Take a snapshot after an append that brings the stream to or past a multiple of this many events; null to
    /// take them only on demand (<see cref="DeciderHandler{TCommand, TState, TEvent}.TakeSnapshotAsync"/>).
    /// </summary>
    public int? Every { get; init; }

    /// <summary>JSON options for the state; the event serializer's options when null.</summary>
    public JsonSerializerOptions? JsonOptions { get; init; }

    /// <summary>
    /// Refuses a bad kind with <see cref="InvalidSnapshotKindException"/>, and a schema version or interval below 1
    /// with <see cref="ArgumentOutOfRangeException"/>.
    /// </summary>
    public void Validate()
    {
        SnapshotKinds.Validate(Kind);
        if (SchemaVersion < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(SchemaVersion), SchemaVersion, "SchemaVersion must be 1 or more.");
        }

        if (Every is < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(Every), Every, "Every must be 1 or more, or null to take snapshots only on demand.");
        }
    }
}

/// <summary>
/// A decider's state type cannot be snapshotted: the JSON options know no contract for it (add it to the source-generated
/// context), or its contract would not bring back members it holds (a snapshot would load another state than the fold).
/// </summary>
public sealed class SnapshotSerializationException : CairnException
{
    /// <summary>The JSON options have no contract for <paramref name="stateType"/>, or cannot map it (<paramref name="inner"/> says why).</summary>
    public SnapshotSerializationException(Type stateType, Exception inner)
        : base(
            inner is NotSupportedException
                ? $"The JSON options have no contract for the snapshot state type {stateType.FullName}; add [JsonSerializable(typeof({stateType.Name}))] to the source-generated context, or set SnapshotPolicy.JsonOptions."
                : $"The JSON options cannot map the snapshot state type {stateType.FullName}: {inner.Message}",
            inner)
    {
        StateType = stateType;
    }

    /// <summary>The contract of <paramref name="stateType"/> would lose <paramref name="members"/> on the way back.</summary>
    public SnapshotSerializationException(Type stateType, IReadOnlyList<string> members)
        : base($"The snapshot state type {stateType.FullName} would not come back from its JSON whole: {string.Join(", ", members)}. Give each a setter or a constructor parameter (or [JsonInclude]), or include fields in the JSON options; a snapshot must load the state the events fold to.")
    {
        StateType = stateType;
    }

    /// <summary>
    /// The state to snapshot is a <paramref name="derivedType"/>, which the contract of <paramref name="stateType"/>
    /// does not declare as a derived type: it would be written, and loaded back, as a <paramref name="stateType"/>.
    /// </summary>
    public SnapshotSerializationException(Type stateType, Type derivedType)
        : base($"The state to snapshot is a {derivedType.FullName}, derived from the snapshot state type {stateType.FullName}, whose contract does not declare it: its snapshot would load as a {stateType.Name} without what {derivedType.Name} adds. Declare it with [JsonDerivedType(typeof({derivedType.Name}), \"...\")] on {stateType.Name}, or keep the state one type.")
    {
        StateType = stateType;
        DerivedType = derivedType;
    }

    private SnapshotSerializationException(Type stateType, string message, Exception? inner = null)
        : base(message, inner)
    {
        StateType = stateType;
    }

    /// <summary>The state type.</summary>
    public Type StateType { get; }

    /// <summary>A state whose JSON, read back and written again, is not the JSON it was written as.</summary>
    internal static SnapshotSerializationException NotRoundTripped(Type stateType) =>
        new(stateType, $"A state of {stateType.FullName} does not come back from its JSON as it was: read back, it differs from the state (a private field no JSON carries), or written again, its JSON differs (a property over a field that no constructor parameter or setter fills, or a converter that changes a value). The snapshot is not saved; a snapshot must load the state the events fold to.");

    /// <summary>A state that its contract cannot write as JSON, or read back from the JSON it wrote (<paramref name="inner"/> says why).</summary>
    internal static SnapshotSerializationException NotWritable(Type stateType, Exception inner) =>
        new(stateType, $"A state of {stateType.FullName} cannot be snapshotted: its contract cannot write it as JSON or read that JSON back ({inner.GetType().Name}: {inner.Message}). The snapshot is not saved; a snapshot must load the state the events fold to.", inner);

    /// <summary>The derived type of the state that the state type's contract does not declare, when that is the fault.</summary>
    public Type? DerivedType { get; }
}
