namespace Cairn.Schemas;

/// <summary>
/// A schema given to <see cref="SchemaCompatibility"/> cannot be read as JSON Schema: a subschema that is not an object
/// or a boolean, a keyword of the wrong JSON type, a <c>$ref</c> that does not resolve or that only refers to itself.
/// </summary>
public sealed class SchemaDocumentException : ArgumentException
{
    /// <summary>Creates the error.</summary>
    /// <param name="document">Which document: <c>original</c>, <c>update</c>, <c>candidate</c> or <c>earlier version N</c>.</param>
    /// <param name="location">The JSON Pointer of the offending place in that document; <c>/</c> is the root.</param>
    /// <param name="reason">What is wrong there.</param>
    /// <param name="paramName">The argument that held the document.</param>
    public SchemaDocumentException(string document, string location, string reason, string? paramName)
        : base($"The {document} schema is not valid at {location}: {reason}.", paramName)
    {
        Document = document;
        Location = location;
        Reason = reason;
    }

    /// <summary>Which document: <c>original</c>, <c>update</c>, <c>candidate</c> or <c>earlier version N</c>.</summary>
    public string Document { get; }

    /// <summary>The JSON Pointer of the offending place; <c>/</c> is the root.</summary>
    public string Location { get; }

    /// <summary>What is wrong there.</summary>
    public string Reason { get; }
}
