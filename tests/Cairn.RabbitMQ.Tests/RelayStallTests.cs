using System.Text;
using Cairn.Conformance.Support;
using Cairn.Messaging;

namespace Cairn.RabbitMQ.Tests;

/// <summary>
/// The relay when RabbitMQ takes publishes and never confirms them (a quorum queue without its majority): the other
/// queues go on, the unconfirmed messages go back to the outbox after <see cref="RabbitMqOptions.ConfirmTimeout"/>, and
/// a stop ends.
/// </summary>
public sealed class RelayStallTests
{
    private static readonly ReceiveOptions Waiting = new() { MaxMessages = 1, Wait = TimeSpan.FromSeconds(20) };

    private static OutgoingMessage Numbered(int n) => new("test.message", Encoding.UTF8.GetBytes($"{{\"n\":{n}}}"));

    /// <summary>
    /// Suspends (or resumes) the Ra server of one quorum queue on a broker of the test's own: RabbitMQ takes the
    /// queue's publishes but never confirms them, while the connection, its heartbeats and every other queue go on. As a
    /// quorum queue whose members lost their majority does in a cluster.
    /// </summary>
    private static Task SuspendQueueAsync(OwnRabbitMq rabbit, string amqpName, bool suspend = true) => rabbit.CtlAsync(
        "eval",
        $"{{ok, Q}} = rabbit_amqqueue:lookup(rabbit_misc:r(<<\"/\">>, queue, <<\"{amqpName}\">>)), {{Name, _}} = amqqueue:get_pid(Q), sys:{(suspend ? "suspend" : "resume")}(Name).");

    /// <summary>
    /// One queue whose confirms never come (its quorum queue unavailable) holds at most three quarters of the relay's
    /// publish window, which all loops share: another queue's outbox goes on being published.
    /// </summary>
    [Fact]
    public async Task a_queue_whose_confirms_never_come_does_not_stop_the_relay_for_every_other_queue()
    {
        await using var rabbit = await OwnRabbitMq.StartAsync();
        // A window of 20 outstanding publishes (40 - 50%), batches of 10.
        var stuck = new QueueName(RabbitMqServer.NewName("stuck"));
        var other = new QueueName(RabbitMqServer.NewName("other"));
        TakeCounter? takes = null;
        await using var sut = await TransportUnderTest.StartAsync(rabbit.Uri, o => o with { RelayBatchSize = 10, MaxOutstandingConfirms = 40 }, backend: b => takes = new TakeCounter(b, RabbitMqMessageBroker.OutboxOf(other)));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(stuck), default);
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(other), default);
        await sut.Broker.SendAsync(stuck, Numbered(0));
        await sut.Broker.SendAsync(other, Numbered(0));
        await Wait.UntilAsync(() => sut.Relay.Published == 2, "the relay publishes to both queues");
        var warmUp = Assert.Single(await sut.Broker.ReceiveAsync(other, Waiting, default).Bounded());
        await sut.Broker.AcknowledgeAsync([warmUp.Lease], default);

        await SuspendQueueAsync(rabbit, sut.Broker.AmqpName(stuck));
        try
        {
            await sut.Broker.SendBatchAsync(stuck, [.. Enumerable.Range(1, 20).Select(Numbered)]);
            await Wait.UntilAsync(
                async () => (await sut.Broker.Backend.GetStatsAsync(RabbitMqMessageBroker.OutboxOf(stuck), default)).Leased == 15,
                "the relay has three quarters of its window of the stuck queue's messages in flight");

            // Once a take of the other queue's outbox has ended with the window full, its loop has seen the window full.
            var before = takes!.Completed;
            await Wait.UntilAsync(() => takes.Completed > before, "a take of the other queue's outbox ends");

            // A queue RabbitMQ confirms at once: its message should go out whatever another queue waits for.
            await sut.Broker.SendAsync(other, Numbered(1));
            var delivered = await sut.Broker.ReceiveAsync(other, Waiting, default).Bounded();
            delivered = delivered.Count > 0 ? delivered : await sut.Broker.ReceiveAsync(other, Waiting, default).Bounded();
            Assert.True(delivered.Count == 1 && Encoding.UTF8.GetString(delivered[0].Message.Data.Span) == "{\"n\":1}", $"nothing sent to '{other}' was published in 40 s: the relay's window is held by '{stuck}', whose confirms never come (relay published {sut.Relay.Published}, returned {sut.Relay.Returned})");
        }
        finally
        {
            await SuspendQueueAsync(rabbit, sut.Broker.AmqpName(stuck), suspend: false);
        }
    }

    /// <summary>
    /// Past <see cref="RabbitMqOptions.ConfirmTimeout"/> the publishing connection is aborted and the unconfirmed message
    /// goes back to the outbox; once the queue is back, it is delivered.
    /// </summary>
    [Fact]
    public async Task an_unconfirmed_publish_goes_back_to_the_outbox_after_the_confirm_timeout_and_is_delivered_once_the_queue_is_back()
    {
        await using var rabbit = await OwnRabbitMq.StartAsync();
        await using var sut = await TransportUnderTest.StartAsync(rabbit.Uri, o => o with { ConfirmTimeout = TimeSpan.FromSeconds(2) });
        var queue = new QueueName(RabbitMqServer.NewName("timeout"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        await sut.Broker.SendAsync(queue, Numbered(0));
        await Wait.UntilAsync(() => sut.Relay.Published == 1, "the relay works");
        var warmUp = Assert.Single(await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded());
        await sut.Broker.AcknowledgeAsync([warmUp.Lease], default);

        await SuspendQueueAsync(rabbit, sut.Broker.AmqpName(queue));
        try
        {
            await sut.Broker.SendAsync(queue, Numbered(1));
            await Wait.UntilAsync(() => sut.Relay.Returned > 0, "the unconfirmed publish goes back to the outbox");
            Assert.Equal(1, sut.Relay.Published);
        }
        finally
        {
            await SuspendQueueAsync(rabbit, sut.Broker.AmqpName(queue), suspend: false);
        }

        // At least once: the queue may also keep the copy it took while it could not confirm.
        var delivered = Assert.Single(await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded());
        Assert.Equal("{\"n\":1}", Encoding.UTF8.GetString(delivered.Message.Data.Span));
        await Wait.UntilAsync(() => sut.Relay.Published >= 2, "the message is published again and confirmed");
    }

    /// <summary>Counts the takes of one backend queue that have ended.</summary>
    private sealed class TakeCounter(IMessageBroker inner, QueueName counted) : DelegatingMessageBroker(inner)
    {
        private int _completed;

        public int Completed => Volatile.Read(ref _completed);

        public override async Task<IReadOnlyList<Delivery>> ReceiveAsync(QueueName queue, ReceiveOptions options, CancellationToken cancellationToken)
        {
            try
            {
                return await Inner.ReceiveAsync(queue, options, cancellationToken);
            }
            finally
            {
                if (queue == counted)
                {
                    Interlocked.Increment(ref _completed);
                }
            }
        }
    }

    /// <summary>
    /// A stop (a dispose) lets the batches in flight settle for a few seconds, then aborts the publishing connection: with
    /// a confirm that never comes it ends, and the message stays in the outbox.
    /// </summary>
    [Fact]
    public async Task disposing_the_relay_while_a_confirm_never_comes_ends_and_leaves_the_message_in_the_outbox()
    {
        await using var rabbit = await OwnRabbitMq.StartAsync();
        await using var sut = await TransportUnderTest.StartAsync(rabbit.Uri);
        var queue = new QueueName(RabbitMqServer.NewName("unconfirmed"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        await sut.Broker.SendAsync(queue, Numbered(0));
        await Wait.UntilAsync(() => sut.Relay.Published == 1, "the relay works");

        await SuspendQueueAsync(rabbit, sut.Broker.AmqpName(queue));
        try
        {
            await sut.Broker.SendAsync(queue, Numbered(1));
            await Wait.UntilAsync(
                async () => (await sut.Broker.Backend.GetStatsAsync(RabbitMqMessageBroker.OutboxOf(queue), default)).Leased == 1,
                "the relay has the message in flight");

            var disposing = sut.Relay.DisposeAsync().AsTask();
            var ended = await Task.WhenAny(disposing, Task.Delay(TimeSpan.FromSeconds(45)));
            Assert.True(ended == disposing, "the relay's dispose did not end within 45 s: it waits for a confirm that never comes");
            var outbox = await sut.Broker.Backend.GetStatsAsync(RabbitMqMessageBroker.OutboxOf(queue), default);
            Assert.Equal(1, outbox.Visible + outbox.Leased);
        }
        finally
        {
            await SuspendQueueAsync(rabbit, sut.Broker.AmqpName(queue), suspend: false);
        }
    }
}
