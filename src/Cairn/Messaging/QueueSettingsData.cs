namespace Cairn.Messaging;

/// <summary>A queue definition as backends store it: plain values, for JSON.</summary>
internal sealed record QueueSettingsData(
    bool Fifo,
    int MaxReceiveCount,
    long LeaseTicks,
    long RetentionTicks,
    int MaxMessageSize,
    long DeduplicationWindowTicks,
    long DefaultDelayTicks)
{
    public static QueueSettingsData From(QueueDefinition queue) => new(
        queue.Fifo,
        queue.MaxReceiveCount,
        queue.Lease.Ticks,
        queue.Retention.Ticks,
        queue.MaxMessageSize,
        queue.DeduplicationWindow.Ticks,
        queue.DefaultDelay.Ticks);

    public QueueDefinition ToDefinition(QueueName name) => new(name)
    {
        Fifo = Fifo,
        MaxReceiveCount = MaxReceiveCount,
        Lease = TimeSpan.FromTicks(LeaseTicks),
        Retention = TimeSpan.FromTicks(RetentionTicks),
        MaxMessageSize = MaxMessageSize,
        DeduplicationWindow = TimeSpan.FromTicks(DeduplicationWindowTicks),
        DefaultDelay = TimeSpan.FromTicks(DefaultDelayTicks),
    };
}
