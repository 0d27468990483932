namespace Cairn.EventStore;

/// <summary>
/// What an append expects of the stream it writes to: <see cref="Any"/> state, <see cref="NoStream"/> (absent or
/// soft-deleted), <see cref="StreamExists"/>, or an exact last version. A mismatch fails the append with
/// <see cref="WrongExpectedVersionException"/> and writes nothing. <c>default</c> is <see cref="Any"/>.
/// </summary>
public readonly record struct ExpectedVersion
{
    private const long AnyValue = -2;
    private const long NoStreamValue = -1;
    private const long StreamExistsValue = -4;

    // Stored shifted so that default(ExpectedVersion) is Any, the one expectation that cannot surprise anybody.
    private readonly long _shifted;

    private ExpectedVersion(long value, bool _) => _shifted = value - AnyValue;

    /// <summary>Expects the stream's last version to be exactly <paramref name="version"/> (0 for one event).</summary>
    public ExpectedVersion(long version)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(version);
        _shifted = version - AnyValue;
    }

    /// <summary>The raw value: a version of 0 or more, or a negative sentinel for the named expectations.</summary>
    public long Value => _shifted + AnyValue;

    /// <summary>No expectation: the append lands whatever the stream's state (except a tombstone).</summary>
    public static ExpectedVersion Any { get; } = new(AnyValue, true);

    /// <summary>The stream must not exist (or must be soft-deleted).</summary>
    public static ExpectedVersion NoStream { get; } = new(NoStreamValue, true);

    /// <summary>The stream must exist, whatever its version.</summary>
    public static ExpectedVersion StreamExists { get; } = new(StreamExistsValue, true);

    /// <summary>Expects the stream's last version to be exactly <paramref name="version"/>.</summary>
    public static ExpectedVersion Exactly(long version) => new(version);

    /// <summary>Recreates an expected version from its raw <see cref="Value"/>, refusing impossible values.</summary>
    public static ExpectedVersion FromValue(long value) => value switch
    {
        >= 0 => new ExpectedVersion(value),
        AnyValue => Any,
        NoStreamValue => NoStream,
        StreamExistsValue => StreamExists,
        _ => throw new ArgumentOutOfRangeException(nameof(value), value,
            "An expected version is 0 or more, or one of Any (-2), NoStream (-1) and StreamExists (-4)."),
    };

    /// <summary>True when this expects an exact version.</summary>
    public bool IsExact => Value >= 0;

    /// <summary>
    /// Whether a stream whose last version is <paramref name="current"/> (null when the stream has no live events)
    /// satisfies this expectation.
    /// </summary>
    public bool IsSatisfiedBy(long? current) => Value switch
    {
        AnyValue => true,
        NoStreamValue => current is null,
        StreamExistsValue => current is not null,
        _ => current == Value,
    };

    /// <inheritdoc />
    public override string ToString() => Value switch
    {
        AnyValue => "Any",
        NoStreamValue => "NoStream",
        StreamExistsValue => "StreamExists",
        _ => Value.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };
}
