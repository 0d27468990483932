using Cairn.EventStore;

namespace Cairn.Projections;

/// <summary>A projection failed on an event: its handler threw, the event could not be read, or a document it wrote could not be stored.</summary>
public sealed class ProjectionEventException(string projection, RecordedEvent recorded, Exception inner)
    : CairnException($"Projection '{projection}' failed on event {recorded.Id} ({recorded.Type}, {recorded.Stream}@{recorded.Version}, position {recorded.Position}): {inner.Message}", inner)
{
    /// <summary>The projection.</summary>
    public string Projection { get; } = projection;

    /// <summary>The event it failed on.</summary>
    public RecordedEvent Event { get; } = recorded;
}

/// <summary>
/// A batch expected a build at one position and found it at another (another runner applied events to it), or found
/// the build gone (another runner switched to a rebuilt one).
/// </summary>
public sealed class ProjectionConflictException : CairnException
{
    /// <summary>The build is at another position than the batch expected.</summary>
    public ProjectionConflictException(string projection, long build, GlobalPosition expected, GlobalPosition actual)
        : base($"Projection '{projection}' build {build} is at position {actual}, not {expected}: another runner has applied events to it.")
    {
        Projection = projection;
        Expected = expected;
        Actual = actual;
    }

    /// <summary>The build no longer exists.</summary>
    public ProjectionConflictException(string projection, long build, GlobalPosition expected)
        : base($"Projection '{projection}' build {build} no longer exists: another runner has switched to a rebuilt read model.")
    {
        Projection = projection;
        Expected = expected;
        BuildMissing = true;
    }

    /// <summary>Whether the build no longer exists.</summary>
    public bool BuildMissing { get; }

    /// <summary>The projection.</summary>
    public string Projection { get; }

    /// <summary>The position the batch expected.</summary>
    public GlobalPosition Expected { get; }

    /// <summary>The position stored (the start when the build is missing).</summary>
    public GlobalPosition Actual { get; }
}

/// <summary>A stored document could not be read as its type.</summary>
public sealed class DocumentDeserializationException(string collection, string id, Type type, string reason, Exception? inner)
    : CairnException($"Document '{id}' of collection '{collection}' cannot be read as {type.Name}: {reason}", inner)
{
    /// <summary>The collection.</summary>
    public string Collection { get; } = collection;

    /// <summary>The document's id.</summary>
    public string Id { get; } = id;
}

/// <summary>A document query or stored value names a field that is not indexed or a value of the wrong kind.</summary>
public sealed class InvalidDocumentQueryException(string collection, string field, string reason)
    : CairnException($"Query on '{collection}', field '{field}': {reason}.")
{
    /// <summary>The collection.</summary>
    public string Collection { get; } = collection;

    /// <summary>The field.</summary>
    public string Field { get; } = field;
}

/// <summary>A projection's stored read model does not fit its code, and the code's version was not raised to rebuild it.</summary>
public sealed class ProjectionShapeChangedException(string projection, int version, string stored, string current)
    : CairnException($"Projection '{projection}' version {version} stores '{stored}' but its code now declares '{current}'. Raise its Version and set RebuildOnVersionChange to rebuild the read model into the new shape.")
{
    /// <summary>The projection.</summary>
    public string Projection { get; } = projection;
}

/// <summary>
/// The read model is served by a newer version of the projection than this process's code: a newer deployment rebuilt
/// it. The runner refuses to run it rather than rebuild it back; a projection's version only goes up (to roll code
/// back, deploy it under a new, higher version).
/// </summary>
public sealed class ProjectionVersionNewerException(string projection, int serving, int code)
    : CairnException($"Projection '{projection}' is served by version {serving}, newer than this process's version {code}: a newer deployment rebuilt it. This process does not run it; to roll the code back, deploy it under a version above {serving}.")
{
    /// <summary>The projection.</summary>
    public string Projection { get; } = projection;

    /// <summary>The version of the serving read model.</summary>
    public int ServingVersion { get; } = serving;

    /// <summary>The version of this process's code.</summary>
    public int CodeVersion { get; } = code;
}

/// <summary>A read-your-writes wait ended before the projection reached the position.</summary>
public sealed class ProjectionWaitTimeoutException(string projection, GlobalPosition wanted, GlobalPosition reached, TimeSpan timeout, string? reason)
    : CairnException($"Projection '{projection}' did not reach position {wanted} within {timeout} (it is at {reached}){(reason is null ? "" : ": " + reason)}.")
{
    /// <summary>The projection.</summary>
    public string Projection { get; } = projection;

    /// <summary>The position waited for.</summary>
    public GlobalPosition Wanted { get; } = wanted;

    /// <summary>Where the projection was when the wait ended.</summary>
    public GlobalPosition Reached { get; } = reached;
}

/// <summary>No projection of that name (or serving that document type) is registered.</summary>
public sealed class ProjectionNotFoundException(string what)
    : CairnException(what);

/// <summary>
/// A rebuilt build cannot take over from the serving one (on PostgreSQL: objects an application built on a view need
/// columns the new table lacks, or the view serves another projection). The serving build goes on; the runner tries
/// the switch again later.
/// </summary>
public sealed class ProjectionSwitchRefusedException(string projection, long build, string reason)
    : CairnException($"Projection '{projection}' cannot switch to build {build}: {reason}.")
{
    /// <summary>The projection.</summary>
    public string Projection { get; } = projection;

    /// <summary>The build that could not become the serving one.</summary>
    public long Build { get; } = build;
}

/// <summary>A projection cannot be opened as it is declared (a table name another projection owns, say).</summary>
public sealed class InvalidProjectionException(string projection, string reason)
    : CairnException($"Projection '{projection}' cannot be opened: {reason}.")
{
    /// <summary>The projection.</summary>
    public string Projection { get; } = projection;
}
