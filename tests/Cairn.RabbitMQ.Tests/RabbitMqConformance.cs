using Cairn.Conformance.Messaging;

namespace Cairn.RabbitMQ.Tests;

// The messaging conformance classes that hold over RabbitMQ. FIFO queues stay in the backend, so their class runs
// whole. The others move a manual clock to expire leases and bring delayed messages due, which RabbitMQ's own timers
// do not follow; the transport tests cover the same behaviours on real time.
public sealed class RabbitMqTopicTests(RabbitMqFixture f) : TopicTests<RabbitMqFixture>(f);

public sealed class RabbitMqMessagingBadInputTests(RabbitMqFixture f) : MessagingBadInputTests<RabbitMqFixture>(f);

public sealed class RabbitMqFifoQueueTests(RabbitMqFixture f) : FifoQueueTests<RabbitMqFixture>(f);
