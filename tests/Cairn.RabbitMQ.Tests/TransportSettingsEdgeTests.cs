using System.Text;
using Cairn.Conformance.Support;
using Cairn.Messaging;

namespace Cairn.RabbitMQ.Tests;

/// <summary>
/// Settings read where the embedded brokers read them: a relative address refused by name, a release deciding by the
/// queue's settings of the moment, a dead letter's reason naming what happened, and a relay started once.
/// </summary>
public sealed class TransportSettingsEdgeTests
{
    private static readonly ReceiveOptions Waiting = new() { MaxMessages = 1, Wait = TimeSpan.FromSeconds(20) };

    private static OutgoingMessage Numbered(int n) => new("test.message", Encoding.UTF8.GetBytes($"{{\"n\":{n}}}"));

    // RabbitMqOptions.Validate promises to refuse an impossible setting with InvalidMessageException naming it
    // (docs/rabbitmq.md, Configuration). A relative Uri is impossible, but Validate reads Uri.Scheme first, which .NET
    // refuses on a relative Uri with InvalidOperationException: the error names no setting and is not Cairn's type.
    [Fact]
    public void a_relative_uri_is_refused_by_validation_with_InvalidMessageException_naming_the_uri()
    {
        var ex = Record.Exception(() => new RabbitMqOptions { Uri = new Uri("rabbit-1.internal/shop", UriKind.Relative) }.Validate());

        var refused = Assert.IsType<InvalidMessageException>(ex);
        Assert.Contains("RabbitMqOptions.Uri", refused.Message, StringComparison.Ordinal);
    }

    // docs/messaging.md: "Declaring a queue again updates every setting but Fifo ... The new settings apply to what the
    // queue already holds", and a message released on its MaxReceiveCount-th receive is dead-lettered. The embedded
    // brokers read the queue's settings when the release comes. Over RabbitMQ the lease keeps the definition read at
    // receive time (HeldLease.Queue), so a release after this very process lowered MaxReceiveCount to 1 republishes
    // the message instead of dead-lettering it.
    [Fact]
    public async Task a_release_after_the_queue_was_declared_again_with_a_lower_max_receive_count_dead_letters_by_the_new_setting()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("lowered"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue) { MaxReceiveCount = 5 }, default);
        var sent = Numbered(1);
        await sut.Broker.SendAsync(queue, sent);
        var delivery = Assert.Single(await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded());
        Assert.Equal(1, delivery.ReceiveCount);

        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue) { MaxReceiveCount = 1 }, default);
        await sut.Broker.ReleaseAsync(delivery.Lease, TimeSpan.Zero, new FailureInfo("Boom", "failed", null), default).Bounded();

        // ReleaseAsync waits for the dead letter's confirm, so the dead letter is there when it returns.
        var deadLetter = await sut.Broker.GetDeadLetterAsync(queue, sent.Id, default).Bounded();
        Assert.NotNull(deadLetter);
        Assert.Equal("it failed on each of its 1 allowed receives", deadLetter.Reason);
    }

    // The embedded brokers (InMemory, SQLite, PostgreSQL) dead-letter a message that reaches a receive already received
    // MaxReceiveCount times, after releases (not a lease that ran out), with the reason "it was received the maximum of
    // N times". Over RabbitMQ every such message is dead-lettered as "its lease ran out on the last of its N allowed
    // receives" (RabbitMqMessageBroker.Receive.cs LeaseAsync), which names a cause that never happened: the operator
    // reading the dead letter looks for a stalled handler. docs/rabbitmq.md names only the lease-ran-out case.
    [Fact]
    public async Task a_message_released_as_often_as_a_lowered_max_receive_count_allows_is_not_dead_lettered_as_a_lease_that_ran_out()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("maxed"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue) { MaxReceiveCount = 5 }, default);
        var sent = Numbered(1);
        await sut.Broker.SendAsync(queue, sent);
        for (var i = 1; i <= 2; i++)
        {
            var delivery = Assert.Single(await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded());
            Assert.Equal(i, delivery.ReceiveCount);
            await sut.Broker.ReleaseAsync(delivery.Lease, TimeSpan.Zero, new FailureInfo("Boom", "failed", null), default).Bounded();
        }

        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue) { MaxReceiveCount = 2 }, default);
        DeadLetter? deadLetter = null;
        await Wait.UntilAsync(
            async () =>
            {
                Assert.Empty(await sut.Broker.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = 1, Wait = TimeSpan.FromMilliseconds(200) }, default));
                return (deadLetter = await sut.Broker.GetDeadLetterAsync(queue, sent.Id, default)) is not null;
            },
            "the message is dead-lettered by the receive that reaches it");

        Assert.Equal(2, deadLetter!.Attempts);
        Assert.DoesNotContain("lease ran out", deadLetter.Reason, StringComparison.Ordinal);
        Assert.Equal("it was received the maximum of 2 times", deadLetter.Reason);
    }

    // A second start replaced the first's scanner and stop token: the stop cancelled the second only, and the first went
    // on listing the backend's queues after the relay stopped and its broker was disposed.
    [Fact]
    public async Task a_relay_started_twice_refuses_the_second_start_and_starts_again_after_a_stop()
    {
        await using var sut = await TransportUnderTest.StartAsync();

        await ThroughTask.RefusedAsync(() => sut.Relay.StartAsync(default), typeof(InvalidOperationException));
        await sut.Relay.StopAsync(default);
        await sut.Relay.StartAsync(default);
        var queue = new QueueName(RabbitMqServer.NewName("restarted"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        await sut.Broker.SendAsync(queue, Numbered(1));
        await sut.RelayedAsync(queue, 1);
    }
}
