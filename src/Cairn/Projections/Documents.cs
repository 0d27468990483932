using System.Globalization;
using System.Text;
using System.Text.Json;
using Cairn.Envelopes;

namespace Cairn.Projections;

/// <summary>The kind of value an indexed field holds, which decides how it is stored, compared and ordered.</summary>
public enum IndexKind
{
    /// <summary>Text, compared ordinally (strings, GUIDs, enums by name).</summary>
    Text,

    /// <summary>Whole numbers (integers of any width).</summary>
    Integer,

    /// <summary>Real numbers (double, float, decimal).</summary>
    Real,

    /// <summary>True or false.</summary>
    Boolean,

    /// <summary>Instants (<see cref="DateTimeOffset"/>, <see cref="DateTime"/>), compared in UTC.</summary>
    Time,
}

/// <summary>A field of a document kept beside it, so queries can filter and order on it.</summary>
/// <param name="Name">The field's name in queries.</param>
/// <param name="Kind">What kind of value it holds.</param>
public sealed record DocumentIndex(string Name, IndexKind Kind)
{
    internal Func<object, object?> Extract { get; init; } = _ => null;

    /// <summary>
    /// The longest text an index keeps, in UTF-8 bytes: PostgreSQL's B-tree refuses an entry past about 2,700 bytes,
    /// so every backend refuses longer ones alike. An index is for filtering and ordering; keep long text in the
    /// document.
    /// </summary>
    public const int MaxTextBytes = 2048;

    /// <summary>
    /// The most an index entry of text keeps, in UTF-8 bytes: the text and the document's id beside it (PostgreSQL's
    /// B-tree refuses an entry past about 2,700 bytes, with its own overhead).
    /// </summary>
    public const int MaxEntryBytes = 2600;

    /// <summary>
    /// The stored form of a value of this index: text, a 64-bit integer or a double; null stays null. Throws
    /// <see cref="InvalidDocumentQueryException"/> when the value is not of the index's kind, or is text no backend
    /// can index alike (longer than <see cref="MaxTextBytes"/>, or holding a NUL or an unpaired surrogate).
    /// </summary>
    public object? Normalize(object? value, string collection) => value is null ? null : Kind switch
    {
        IndexKind.Text => value switch
        {
            string s => Indexable(s, collection),
            Guid g => g.ToString("D"),
            Enum e => e.ToString(),
            char c => Indexable(c.ToString(), collection),
            _ => throw Mismatch(value, collection),
        },
        IndexKind.Integer => value switch
        {
            long l => l,
            int i => (long)i,
            short s => (long)s,
            byte b => (long)b,
            uint u => (long)u,
            ushort us => (long)us,
            sbyte sb => (long)sb,
            ulong ul when ul <= long.MaxValue => (long)ul,
            _ => throw Mismatch(value, collection),
        },
        IndexKind.Real => Comparable(value switch
        {
            double d => d,
            float f => Widened(f),
            decimal m => (double)m,
            long l => (double)l,
            int i => (double)i,
            _ => throw Mismatch(value, collection),
        }, collection),
        IndexKind.Boolean => value is bool b ? (b ? 1L : 0L) : throw Mismatch(value, collection),
        IndexKind.Time => value switch
        {
            DateTimeOffset t => t.UtcTicks,
            DateTime t => t.Kind == DateTimeKind.Unspecified
                ? throw new InvalidDocumentQueryException(collection, Name, $"the DateTime {t:O} has no kind; use UTC or a DateTimeOffset")
                : t.ToUniversalTime().Ticks,
            _ => throw Mismatch(value, collection),
        },
        _ => throw Mismatch(value, collection),
    };

    /// <summary>
    /// A float as the number it shows: 0.1f is 0.1, which a double or decimal 0.1 equals, where widening it bit for bit
    /// gives 0.10000000149011612, which nothing written as 0.1 does. Distinct floats stay distinct and in order.
    /// </summary>
    private static double Widened(float value) => float.IsFinite(value)
        ? double.Parse(value.ToString("R", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture)
        : value;

    /// <summary>
    /// Whether <paramref name="value"/> is in the form <see cref="Normalize"/> gives this index's values: text, a 64-bit
    /// integer (integers, booleans and times) or a double other than NaN; null is.
    /// </summary>
    internal bool IsStoredForm(object? value) => value is null || Kind switch
    {
        IndexKind.Text => value is string,
        IndexKind.Integer or IndexKind.Boolean or IndexKind.Time => value is long,
        IndexKind.Real => value is double d && !double.IsNaN(d),
        _ => false,
    };

    /// <summary>
    /// A real value every backend indexes alike: not NaN, which SQLite stores as NULL (so it matched a query for null
    /// there, and nothing in memory) and which sorts nowhere consistently.
    /// </summary>
    private double Comparable(double value, string collection) => double.IsNaN(value)
        ? throw new InvalidDocumentQueryException(collection, Name, "NaN cannot be indexed: it equals nothing and sorts nowhere; store null for an unknown value")
        : value;

    private string Indexable(string text, string collection)
    {
        if (text.Contains('\0', StringComparison.Ordinal) || StoredText.HasUnpairedSurrogate(text))
        {
            throw new InvalidDocumentQueryException(collection, Name, "text holding a NUL or an unpaired surrogate cannot be indexed");
        }

        if (text.Length > MaxTextBytes / 3 && Encoding.UTF8.GetByteCount(text) > MaxTextBytes)
        {
            throw new InvalidDocumentQueryException(collection, Name, $"text of {Encoding.UTF8.GetByteCount(text):N0} UTF-8 bytes is longer than an index keeps ({MaxTextBytes:N0}); keep it in the document, not in an index");
        }

        return text;
    }

    private InvalidDocumentQueryException Mismatch(object value, string collection) =>
        new(collection, Name, $"a {value.GetType().Name} is not a {Kind} value");

    /// <summary>The kind of index a CLR type makes, or null when it cannot be indexed.</summary>
    public static IndexKind? KindOf(Type type)
    {
        type = Nullable.GetUnderlyingType(type) ?? type;
        if (type == typeof(string) || type == typeof(Guid) || type == typeof(char) || type.IsEnum)
        {
            return IndexKind.Text;
        }

        if (type == typeof(long) || type == typeof(int) || type == typeof(short) || type == typeof(byte) || type == typeof(uint) || type == typeof(ushort) || type == typeof(sbyte) || type == typeof(ulong))
        {
            return IndexKind.Integer;
        }

        if (type == typeof(double) || type == typeof(float) || type == typeof(decimal))
        {
            return IndexKind.Real;
        }

        if (type == typeof(bool))
        {
            return IndexKind.Boolean;
        }

        return type == typeof(DateTimeOffset) || type == typeof(DateTime) ? IndexKind.Time : null;
    }
}

/// <summary>
/// A kind of document a projection writes: its collection name, how its id is found, and its indexed fields.
/// Documents are stored as JSON with the event serializer's options.
/// </summary>
public abstract class DocumentDefinition
{
    private readonly List<DocumentIndex> _indexes = [];
    private ResolvedContract? _contract;

    private protected DocumentDefinition(Type type, string collection)
    {
        DocumentType = type;
        Collection = ProjectionNames.ValidateIdentifier("collection", collection);
    }

    /// <summary>The CLR type of the documents.</summary>
    public Type DocumentType { get; }

    /// <summary>The collection's name: letters, digits and <c>_</c>, starting with a letter.</summary>
    public string Collection { get; }

    /// <summary>The indexed fields, in declaration order.</summary>
    public IReadOnlyList<DocumentIndex> Indexes => _indexes;

    /// <summary>Whether documents can be stored without naming their id.</summary>
    public abstract bool HasIdSelector { get; }

    /// <summary>Finds an index by name, or fails naming the indexes there are.</summary>
    public DocumentIndex GetIndex(string name) =>
        _indexes.Find(i => i.Name == name)
        ?? throw new InvalidDocumentQueryException(Collection, name, _indexes.Count == 0
            ? "the collection declares no indexed fields"
            : $"it is not an indexed field; the indexed fields are {string.Join(", ", _indexes.Select(i => i.Name))}");

    /// <summary>A text that changes whenever the stored shape (collection, index names and kinds) changes.</summary>
    public string Shape => Collection + "(" + string.Join(",", _indexes.Select(i => i.Name + ":" + i.Kind)) + ")";

    internal abstract string IdOf(object document);

    internal byte[] Serialize(object document, JsonSerializerOptions options) => JsonSerializer.SerializeToUtf8Bytes(document, TypeInfo(options));

    internal object Deserialize(string id, ReadOnlySpan<byte> json, JsonSerializerOptions options)
    {
        try
        {
            return JsonSerializer.Deserialize(json, TypeInfo(options))
                ?? throw new DocumentDeserializationException(Collection, id, DocumentType, "the stored JSON is null", null);
        }
        catch (Exception ex) when (ex is JsonException or NotSupportedException or InvalidOperationException or ArgumentException)
        {
            throw new DocumentDeserializationException(Collection, id, DocumentType, ex.Message, ex);
        }
    }

    /// <summary>
    /// Whether a document comes back whole from its JSON under <paramref name="options"/>
    /// (<see cref="Serialization.JsonRoundTrip.LostMembers"/> finds nothing lost): only then may a runner keep the objects
    /// a batch stored for the next batch, which would otherwise see what a process loading the JSON would not.
    /// </summary>
    internal bool ComesBackWhole(JsonSerializerOptions options) => Contract(options).ComesBackWhole;

    /// <summary>The document type's JSON contract under <paramref name="options"/>, resolved once per options.</summary>
    private System.Text.Json.Serialization.Metadata.JsonTypeInfo TypeInfo(JsonSerializerOptions options) => Contract(options).TypeInfo;

    private ResolvedContract Contract(JsonSerializerOptions options)
    {
        var cached = _contract;
        if (cached?.TypeInfo.Options != options)
        {
            options.MakeReadOnly(populateMissingResolver: true);
            var typeInfo = options.GetTypeInfo(DocumentType);
            cached = new ResolvedContract(typeInfo, Serialization.JsonRoundTrip.LostMembers(typeInfo).Count == 0);
            _contract = cached;
        }

        return cached;
    }

    private sealed record ResolvedContract(System.Text.Json.Serialization.Metadata.JsonTypeInfo TypeInfo, bool ComesBackWhole);

    /// <summary>
    /// The stored values of the document's indexed fields, in index order. A text index's entry holds the document's
    /// id beside the text (the tie-break of an ordered page): the two together must fit
    /// <see cref="DocumentIndex.MaxEntryBytes"/>, on every backend alike.
    /// </summary>
    internal object?[] IndexValues(object document, string id)
    {
        var values = new object?[_indexes.Count];
        int? idBytes = null;
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = _indexes[i].Normalize(_indexes[i].Extract(document), Collection);
            if (values[i] is string text && text.Length + id.Length > DocumentIndex.MaxEntryBytes / 4)
            {
                idBytes ??= Encoding.UTF8.GetByteCount(id);
                var entry = Encoding.UTF8.GetByteCount(text) + idBytes.Value;
                if (entry > DocumentIndex.MaxEntryBytes)
                {
                    throw new InvalidDocumentQueryException(Collection, _indexes[i].Name, $"its text and the document's id together take {entry:N0} UTF-8 bytes, more than an index entry keeps ({DocumentIndex.MaxEntryBytes:N0}); shorten the id or keep the text in the document, not in an index");
                }
            }
        }

        return values;
    }

    private protected void AddIndex(DocumentIndex index)
    {
        ProjectionNames.ValidateIdentifier("index", index.Name);
        // Names compare without case: an index is a column of its collection's table, and SQLite's column names ignore it.
        if (_indexes.Exists(i => string.Equals(i.Name, index.Name, StringComparison.OrdinalIgnoreCase)))
        {
            throw new ArgumentException($"Collection '{Collection}' declares the index '{index.Name}' twice (names compare without case).");
        }

        _indexes.Add(index);
    }
}

/// <summary>A kind of document of type <typeparamref name="T"/>; add indexed fields with <see cref="Index{TValue}"/>.</summary>
/// <typeparam name="T">The document type.</typeparam>
public sealed class DocumentDefinition<T> : DocumentDefinition
    where T : class
{
    private readonly Func<T, string>? _id;

    internal DocumentDefinition(string collection, Func<T, string>? id)
        : base(typeof(T), collection)
    {
        _id = id;
    }

    /// <inheritdoc />
    public override bool HasIdSelector => _id is not null;

    /// <summary>
    /// Keeps <paramref name="field"/> beside each document so queries can filter and order on it. Text, whole and real
    /// numbers, booleans, instants, GUIDs and enums can be indexed; null values are kept as null.
    /// </summary>
    public DocumentDefinition<T> Index<TValue>(string name, Func<T, TValue> field)
    {
        ArgumentNullException.ThrowIfNull(field);
        var kind = DocumentIndex.KindOf(typeof(TValue))
            ?? throw new ArgumentException($"Index '{name}' of collection '{Collection}': a {typeof(TValue).Name} cannot be indexed; use text, a number, a boolean, an instant, a GUID or an enum.", nameof(field));
        AddIndex(new DocumentIndex(name, kind) { Extract = d => field((T)d) });
        return this;
    }

    internal override string IdOf(object document)
    {
        if (_id is null)
        {
            throw new InvalidOperationException($"Collection '{Collection}' declares no id selector: store its documents with Store(id, document).");
        }

        return DocumentIds.Validate(Collection, _id((T)document));
    }
}

/// <summary>The rules for document ids.</summary>
public static class DocumentIds
{
    /// <summary>The longest id accepted, in characters.</summary>
    public const int MaxLength = 512;

    /// <summary>
    /// Returns the id when it is 1 to 512 characters with no NUL (which PostgreSQL's text cannot hold) and no unpaired
    /// surrogate (which no UTF-8 text can); throws <see cref="ArgumentException"/> otherwise.
    /// </summary>
    public static string Validate(string collection, string? id)
    {
        if (string.IsNullOrEmpty(id) || id.Length > MaxLength || id.Contains('\0', StringComparison.Ordinal) || StoredText.HasUnpairedSurrogate(id))
        {
            throw new ArgumentException($"'{id}' is not a valid id for a document of '{collection}': 1 to {MaxLength} characters, no NUL, no unpaired surrogates.", nameof(id));
        }

        return id;
    }
}

/// <summary>A table a projection writes with its own SQL, created for each build of the projection.</summary>
/// <param name="Name">The table's name in queries: a view of that name always shows the serving build's table.</param>
/// <param name="CreateSql">
/// The DDL that creates it, with <c>{table}</c> where the table's name goes (indexes too:
/// <c>CREATE INDEX {table}_by_day ON {table} (day)</c>); statements separated by <c>;</c>.
/// </param>
public sealed record SqlTableDefinition(string Name, string CreateSql);
