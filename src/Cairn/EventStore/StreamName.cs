namespace Cairn.EventStore;

/// <summary>
/// The name of a stream: 1 to <see cref="MaxLength"/> characters, no control characters, no leading or trailing
/// white space. The category is the part before the first <c>-</c> (<c>order-42</c> is in category <c>order</c>).
/// Names that start with <c>$</c> are reserved for Cairn's own streams.
/// </summary>
public readonly record struct StreamName
{
    /// <summary>The longest stream name accepted, in UTF-16 characters (a metadata stream's, <c>$$</c> and the name, two more).</summary>
    public const int MaxLength = 256;

    private readonly string? _value;

    /// <summary>Creates a stream name, refusing an invalid one with <see cref="InvalidStreamNameException"/>.</summary>
    public StreamName(string value)
    {
        if (Validate(value) is { } reason)
        {
            throw new InvalidStreamNameException(value, reason);
        }

        _value = value;
    }

    /// <summary>The name as a string.</summary>
    public string Value => _value ?? throw new InvalidStreamNameException(null, "the name is missing (a default StreamName)");

    /// <summary>The category: the part before the first <c>-</c>, or the whole name when it has none.</summary>
    public string Category => CategoryOf(Value);

    /// <summary>True for Cairn's own streams, whose names start with <c>$</c>.</summary>
    public bool IsSystem => Value[0] == '$';

    /// <summary>
    /// The stream <c>$$&lt;name&gt;</c> where this stream's lifecycle is recorded: one <c>$metadata</c> event for each
    /// change of its metadata, delete or tombstone. Cairn's own streams have none.
    /// </summary>
    /// <exception cref="InvalidStreamNameException">This is one of Cairn's own streams.</exception>
    public StreamName MetadataStream => IsSystem
        ? throw new InvalidStreamNameException(Value, "Cairn's own streams have no metadata stream")
        : new("$$" + Value);

    /// <summary>Creates a stream name from a category and an id: <c>For("order", "42")</c> is <c>order-42</c>.</summary>
    public static StreamName For(string category, string id)
    {
        if (string.IsNullOrEmpty(category) || category.Contains('-', StringComparison.Ordinal))
        {
            throw new InvalidStreamNameException(category + "-" + id, "the category must be non-empty and contain no '-'");
        }

        return new StreamName(category + "-" + id);
    }

    /// <summary>Tries to create a stream name without throwing.</summary>
    public static bool TryCreate(string? value, out StreamName name)
    {
        if (value is null || Validate(value) is not null)
        {
            name = default;
            return false;
        }

        name = new StreamName(value);
        return true;
    }

    /// <summary>The category of a stream name string.</summary>
    public static string CategoryOf(string name)
    {
        var dash = name.IndexOf('-', StringComparison.Ordinal);
        return dash < 0 ? name : name[..dash];
    }

    /// <summary>Why a name is invalid, or null when it is valid.</summary>
    public static string? Validate(string? value)
    {
        if (value is null)
        {
            return "the name is null";
        }

        if (value.Length == 0)
        {
            return "the name is empty";
        }

        // A stream's metadata stream, $$<name>, is two characters longer than the longest name it serves.
        var limit = value.StartsWith("$$", StringComparison.Ordinal) ? MaxLength + 2 : MaxLength;
        if (value.Length > limit)
        {
            return $"the name is {value.Length} characters long, over the limit of {limit}";
        }

        if (char.IsWhiteSpace(value[0]) || char.IsWhiteSpace(value[^1]))
        {
            return "the name starts or ends with white space";
        }

        for (var i = 0; i < value.Length; i++)
        {
            var c = value[i];
            if (char.IsControl(c))
            {
                return $"the name contains the control character U+{(int)c:X4} at index {i}";
            }

            if (char.IsHighSurrogate(c) && i + 1 < value.Length && char.IsLowSurrogate(value[i + 1]))
            {
                i++;
            }
            else if (char.IsSurrogate(c))
            {
                return $"the name contains an unpaired surrogate at index {i}";
            }
        }

        return null;
    }

    /// <inheritdoc />
    public override string ToString() => _value ?? "";

    /// <summary>Converts a string to a stream name, validating it.</summary>
    public static implicit operator StreamName(string value) => new(value);
}
