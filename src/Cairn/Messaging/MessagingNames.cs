namespace Cairn.Messaging;

/// <summary>The name of a durable queue: 1 to 128 letters, digits, <c>.</c>, <c>_</c>, <c>-</c> or <c>:</c>.</summary>
public readonly record struct QueueName
{
    /// <summary>Wraps a name, refusing one that breaks the rules with <see cref="InvalidMessagingNameException"/>.</summary>
    public QueueName(string value) => Value = MessagingNames.Validate("queue", value);

    /// <summary>The name.</summary>
    public string Value { get; }

    /// <inheritdoc />
    public override string ToString() => Value;

    /// <summary>Wraps a name.</summary>
    public static implicit operator QueueName(string value) => new(value);
}

/// <summary>The name of a topic: the same rules as a queue's name.</summary>
public readonly record struct TopicName
{
    /// <summary>Wraps a name, refusing one that breaks the rules with <see cref="InvalidMessagingNameException"/>.</summary>
    public TopicName(string value) => Value = MessagingNames.Validate("topic", value);

    /// <summary>The name.</summary>
    public string Value { get; }

    /// <inheritdoc />
    public override string ToString() => Value;

    /// <summary>Wraps a name.</summary>
    public static implicit operator TopicName(string value) => new(value);
}

/// <summary>The rules shared by queue, topic, subscription and consumer names.</summary>
public static class MessagingNames
{
    /// <summary>The longest name accepted.</summary>
    public const int MaxLength = 128;

    /// <summary>
    /// Throws <see cref="InvalidMessagingNameException"/> for a name that is missing: a default <see cref="QueueName"/>
    /// or <see cref="TopicName"/> (<paramref name="value"/> is its <c>Value</c>), which no constructor validated.
    /// </summary>
    internal static void RequirePresent(string? value, string kind)
    {
        if (value is null)
        {
            throw new InvalidMessagingNameException(kind, null, "the name is missing");
        }
    }

    /// <summary>Returns the name when it is valid; throws <see cref="InvalidMessagingNameException"/> otherwise.</summary>
    public static string Validate(string kind, string? name)
    {
        if (string.IsNullOrEmpty(name))
        {
            throw new InvalidMessagingNameException(kind, name, "the name is empty");
        }

        if (name.Length > MaxLength)
        {
            throw new InvalidMessagingNameException(kind, name, $"the name is over {MaxLength} characters");
        }

        foreach (var c in name)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-' or ':'))
            {
                throw new InvalidMessagingNameException(kind, name, $"'{(char.IsControl(c) ? '?' : c)}' is not allowed: use letters, digits, '.', '_', '-' and ':'");
            }
        }

        return name;
    }
}
