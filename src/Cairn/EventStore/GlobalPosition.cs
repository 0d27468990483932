namespace Cairn.EventStore;

/// <summary>
/// A position in <c>$all</c>, the global log. The first event is at 1; <see cref="Start"/> (0) is the position before
/// it. Positions strictly increase in commit order, and no event ever commits later with a lower position.
/// </summary>
public readonly record struct GlobalPosition : IComparable<GlobalPosition>
{
    /// <summary>Creates a position, refusing a negative one.</summary>
    public GlobalPosition(long value)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(value);
        Value = value;
    }

    /// <summary>The position's number.</summary>
    public long Value { get; }

    /// <summary>The position before the first event.</summary>
    public static GlobalPosition Start => default;

    /// <summary>
    /// The next position; the largest position's is itself, which no log reaches: a checkpoint stored there reads
    /// nothing after it rather than overflowing.
    /// </summary>
    public GlobalPosition Next => Value == long.MaxValue ? this : new(Value + 1);

    /// <inheritdoc />
    public int CompareTo(GlobalPosition other) => Value.CompareTo(other.Value);

    /// <summary>Compares two positions.</summary>
    public static bool operator <(GlobalPosition left, GlobalPosition right) => left.Value < right.Value;

    /// <summary>Compares two positions.</summary>
    public static bool operator >(GlobalPosition left, GlobalPosition right) => left.Value > right.Value;

    /// <summary>Compares two positions.</summary>
    public static bool operator <=(GlobalPosition left, GlobalPosition right) => left.Value <= right.Value;

    /// <summary>Compares two positions.</summary>
    public static bool operator >=(GlobalPosition left, GlobalPosition right) => left.Value >= right.Value;

    /// <summary>The earlier of two positions.</summary>
    public static GlobalPosition Min(GlobalPosition left, GlobalPosition right) => left <= right ? left : right;

    /// <summary>The later of two positions.</summary>
    public static GlobalPosition Max(GlobalPosition left, GlobalPosition right) => left >= right ? left : right;

    /// <summary>Converts a number to a position.</summary>
    public static implicit operator GlobalPosition(long value) => new(value);

    /// <inheritdoc />
    public override string ToString() => Value.ToString(System.Globalization.CultureInfo.InvariantCulture);
}
