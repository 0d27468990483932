using Cairn.EventStore;

namespace Cairn.Conformance.Support;

/// <summary>A subscription handler that records what it is given, in order.</summary>
public sealed class Recorder
{
    private readonly List<RecordedEvent> _events = [];

    /// <summary>What was handled so far.</summary>
    public IReadOnlyList<RecordedEvent> Events
    {
        get
        {
            lock (_events)
            {
                return [.. _events];
            }
        }
    }

    /// <summary>The positions handled so far.</summary>
    public IReadOnlyList<GlobalPosition> Positions => [.. Events.Select(e => e.Position)];

    /// <summary>The handler.</summary>
    public ValueTask HandleAsync(RecordedEvent e, CancellationToken cancellationToken)
    {
        lock (_events)
        {
            _events.Add(e);
        }

        return ValueTask.CompletedTask;
    }
}
