using System.Text;
using Cairn.Conformance.Support;
using Cairn.Envelopes;
using Cairn.Messaging;
using RabbitMQ.Client;

namespace Cairn.RabbitMQ.Tests;

/// <summary>
/// Edges of the AMQP mapping: CloudEvents published by other producers, times that are not RFC 3339, Cairn's own
/// headers set by someone else, delay queues RabbitMQ refuses to declare, and addresses RabbitMQ.Client cannot use.
/// </summary>
public sealed class RabbitMqMappingEdgeTests
{
    private static readonly ReceiveOptions Waiting = new() { MaxMessages = 1, Wait = TimeSpan.FromSeconds(10) };

    private static OutgoingMessage Numbered(int n) => new("test.message", Encoding.UTF8.GetBytes($"{{\"n\":{n}}}"));

    // CloudEvents' AMQP binding allows the attribute prefix with '_' as well as ':' (for clients, such as JMS and Spring
    // AMQP, whose property names cannot hold ':'); the CloudEvents Java SDK's Spring AMQP support, a common RabbitMQ
    // producer, writes cloudEvents_id, cloudEvents_type, ... Such a CloudEvent was dead-lettered as having "no
    // cloudEvents:id header".
    [Fact]
    public void a_cloudevent_whose_attributes_carry_the_underscore_prefix_is_read()
    {
        var id = Guid.NewGuid();
        var properties = new BasicProperties
        {
            ContentType = "application/json",
            Headers = new Dictionary<string, object?>
            {
                ["cloudEvents_specversion"] = Encoding.UTF8.GetBytes("1.0"),
                ["cloudEvents_id"] = Encoding.UTF8.GetBytes(id.ToString()),
                ["cloudEvents_type"] = Encoding.UTF8.GetBytes("com.example.someevent"),
                ["cloudEvents_source"] = Encoding.UTF8.GetBytes("/mycontext/subcontext"),
                ["cloudEvents_time"] = Encoding.UTF8.GetBytes("2026-11-29T10:15:30Z"),
                ["cloudEvents_subject"] = Encoding.UTF8.GetBytes("order-1"),
                ["cloudEvents_tenant"] = Encoding.UTF8.GetBytes("acme"),
            },
        };

        var message = AmqpMessageCodec.ToMessage(properties, "{}"u8.ToArray(), DateTimeOffset.UtcNow, out var fault);

        Assert.True(message is not null, $"the CloudEvent was refused: {fault}");
        Assert.Equal(id, message.Id.Value);
        Assert.Equal("com.example.someevent", message.Type);
        Assert.Equal("/mycontext/subcontext", message.Source);
        Assert.Equal(DateTimeOffset.Parse("2026-11-29T10:15:30Z", System.Globalization.CultureInfo.InvariantCulture), message.Time);
        Assert.Equal("order-1", message.Subject);
        Assert.Equal("acme", message.Metadata["tenant"]);
    }

    // CloudEvents' time is an RFC 3339 timestamp, which always has an offset (or Z). Text without one was taken by the
    // general parser as the machine's local time, so one message read as different instants on hosts in different
    // zones; text in no RFC 3339 form at all (a culture's date) was taken as a time too. Docs: "a time that is not one"
    // is dead-lettered as unreadable.
    [Theory]
    [InlineData("2026-11-29T10:15:30")]
    [InlineData("2026-11-29 10:15:30")]
    [InlineData("11/29/2026 10:15:30")]
    [InlineData("Sunday, 29 November 2026")]
    public void a_time_that_is_not_rfc_3339_is_not_read_as_the_machines_local_time(string text)
    {
        var headers = new Dictionary<string, object?> { [AmqpMessageCodec.Time] = Encoding.UTF8.GetBytes(text) };

        Assert.Null(AmqpMessageCodec.GetTime(headers, AmqpMessageCodec.Time));
    }

    // Every RFC 3339 form another producer writes is read as the instant it names: an offset, lower-case separators, and
    // a fraction past the 100 ns .NET keeps (a Go producer's nanoseconds), cut there.
    [Theory]
    [InlineData("2026-11-29T10:15:30Z", "2026-11-29T10:15:30.0000000+00:00")]
    [InlineData("2026-11-29t10:15:30z", "2026-11-29T10:15:30.0000000+00:00")]
    [InlineData("2026-11-29T11:15:30+01:00", "2026-11-29T11:15:30.0000000+01:00")]
    [InlineData("2026-11-29T10:15:30.123456789Z", "2026-11-29T10:15:30.1234567+00:00")]
    [InlineData("2026-11-29T05:15:30.5-05:00", "2026-11-29T05:15:30.5000000-05:00")]
    public void rfc_3339_text_is_read_as_the_instant_it_names(string text, string expected)
    {
        var headers = new Dictionary<string, object?> { [AmqpMessageCodec.Time] = Encoding.UTF8.GetBytes(text) };

        Assert.Equal(DateTimeOffset.Parse(expected, System.Globalization.CultureInfo.InvariantCulture), AmqpMessageCodec.GetTime(headers, AmqpMessageCodec.Time));
        Assert.Equal(TimeSpan.Parse(expected[^6..].TrimStart('+'), System.Globalization.CultureInfo.InvariantCulture), AmqpMessageCodec.GetTime(headers, AmqpMessageCodec.Time)!.Value.Offset);
    }

    // Another publisher may set Cairn's own cairn-receives header (copied from a message it consumed, or by mistake).
    // A negative count, or one so large that adding the redeliveries overflows, made the receive count zero or
    // negative: a delivery reported as received "0 times", and one far past its queue's limit handed to a consumer
    // instead of being dead-lettered.
    [Theory]
    [InlineData(-5L)]
    [InlineData(long.MaxValue)]
    public async Task a_foreign_receive_count_header_never_yields_a_receive_count_below_one(long receives)
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("foreigncount"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue) { MaxReceiveCount = 3 }, default);
        Assert.Empty(await sut.Broker.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = 1, Wait = TimeSpan.Zero }, default));

        var properties = new BasicProperties
        {
            ContentType = "application/json",
            DeliveryMode = DeliveryModes.Persistent,
            Headers = new Dictionary<string, object?>
            {
                [AmqpMessageCodec.SpecVersion] = "1.0",
                [AmqpMessageCodec.Id] = Guid.NewGuid().ToString(),
                [AmqpMessageCodec.Type] = "com.example.thing",
                [AmqpMessageCodec.Receives] = receives,
            },
        };
        await RabbitMqServer.WithChannelAsync(channel => channel.BasicPublishAsync("", sut.Broker.AmqpName(queue), true, properties, "{}"u8.ToArray()).AsTask());
        await sut.Broker.SendAsync(queue, Numbered(1));

        // Whatever becomes of the foreign message (delivered or dead-lettered), no delivery counts fewer than one receive.
        var deliveries = new List<Delivery>();
        while (!deliveries.Any(d => d.Message.Type == "test.message"))
        {
            var received = await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded();
            Assert.NotEmpty(received);
            deliveries.AddRange(received);
        }

        Assert.All(deliveries, d => Assert.True(d.ReceiveCount >= 1, $"a delivery of {d.Message.Type} has the receive count {d.ReceiveCount} (cairn-receives {receives})"));
        await sut.Broker.AcknowledgeAsync([.. deliveries.Select(d => d.Lease)], default);
    }

    // RabbitMQ refuses to declare a queue that exists with other arguments (406 PRECONDITION_FAILED). DeclareQueueAsync
    // turns that into QueueDefinitionConflictException naming the queue; a release with a delay, whose delay queue is
    // declared on first use, let RabbitMQ.Client's OperationInterruptedException through instead.
    [Fact]
    public async Task a_release_whose_delay_queue_exists_with_other_arguments_fails_with_a_typed_error_naming_it()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("delayclash"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        var delayQueue = sut.Broker.DelayQueueName(queue, 1000);

        // Another application's (or an operator's) classic queue of that name.
        await RabbitMqServer.WithChannelAsync(channel => channel.QueueDeclareAsync(delayQueue, durable: true, exclusive: false, autoDelete: false));
        try
        {
            await sut.Broker.SendAsync(queue, Numbered(1));
            var delivery = Assert.Single(await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded());

            var ex = await Record.ExceptionAsync(() => sut.Broker.ReleaseAsync(delivery.Lease, TimeSpan.FromSeconds(1), null, default));

            var conflict = Assert.IsType<QueueDefinitionConflictException>(ex);
            Assert.Contains(delayQueue, conflict.Message, StringComparison.Ordinal);

            // The delivery was given back, and comes again.
            var again = Assert.Single(await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded());
            Assert.Equal(delivery.Message.Id, again.Message.Id);
            await sut.Broker.AcknowledgeAsync([again.Lease], default);
        }
        finally
        {
            await RabbitMqServer.WithChannelAsync(channel => channel.QueueDeleteAsync(delayQueue));
        }
    }

    // Validate() promises to refuse an impossible setting naming it; an address RabbitMQ.Client itself refuses (a
    // virtual host path of several segments) passed, and failed only on the first connection, with RabbitMQ.Client's
    // ArgumentException, from inside a receive, a declaration or the relay's retry loop.
    [Theory]
    [InlineData("amqp://guest:guest@localhost/shop/eu")]
    [InlineData("amqp://guest:guest@localhost:5672/a/b/c")]
    public void an_address_rabbitmq_client_cannot_use_is_refused_by_validation_naming_the_uri(string address)
    {
        var uri = new Uri(address);
        Assert.ThrowsAny<ArgumentException>(() => new ConnectionFactory { Uri = uri }); // what the first connection would meet

        var ex = Record.Exception(() => new RabbitMqOptions { Uri = uri }.Validate());

        var refused = Assert.IsType<InvalidMessageException>(ex);
        Assert.Contains("RabbitMqOptions.Uri", refused.Message, StringComparison.Ordinal);
    }

    // A second UseRabbitMq with another address (a module's own, say) silently replaced the first, where a second
    // backend with other settings is refused; the same settings again are accepted, and no password is printed.
    [Fact]
    public void the_rabbitmq_transport_configured_again_elsewhere_is_refused_and_again_the_same_is_accepted()
    {
        var options = new Cairn.DependencyInjection.CairnOptions().UseRabbitMq("amqp://app:secret@rabbit-a:5672/");
        options.UseRabbitMq("amqp://app:secret@rabbit-a:5672/");

        var refused = Assert.Throws<InvalidOperationException>(() => options.UseRabbitMq("amqp://app:secret@rabbit-b:5672/"));
        Assert.Contains("rabbit-b", refused.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("secret", refused.Message, StringComparison.Ordinal);
        Assert.Throws<InvalidOperationException>(() => options.UseRabbitMq("amqp://app:secret@rabbit-a:5672/", r => r with { QueuePrefix = "shop." }));
        Assert.DoesNotContain("secret", options.TransportSettings, StringComparison.Ordinal);
    }

    // Every setting counts, not only where it connects: the second's transport would replace the first's, and with it
    // the first's prefetch, size limit, timeouts and connection factory.
    [Fact]
    public void the_rabbitmq_transport_configured_again_with_any_other_setting_is_refused_naming_it()
    {
        static RabbitMqOptions Tuned(RabbitMqOptions r) => r with { Prefetch = 10, MaxMessageSize = 16 * 1024 * 1024 };
        var options = new Cairn.DependencyInjection.CairnOptions().UseInMemory().UseRabbitMq("amqp://rabbit-a:5672/", Tuned);
        options.UseRabbitMq("amqp://rabbit-a:5672/", Tuned);

        var refused = Assert.Throws<InvalidOperationException>(() => options.UseRabbitMq("amqp://rabbit-a:5672/", r => r with { Prefetch = 500 }));

        Assert.Contains("Prefetch 10", refused.Message, StringComparison.Ordinal);
        Assert.Contains("Prefetch 500", refused.Message, StringComparison.Ordinal);
        Assert.Throws<InvalidOperationException>(() => options.UseRabbitMq("amqp://rabbit-a:5672/", r => Tuned(r) with { ConfirmTimeout = TimeSpan.FromSeconds(5) }));

        // Other credentials too, told apart without being printed.
        var withUser = new Cairn.DependencyInjection.CairnOptions().UseInMemory().UseRabbitMq("amqp://orders:first-secret@rabbit-a:5672/");
        withUser.UseRabbitMq("amqp://orders:first-secret@rabbit-a:5672/");
        var credentials = Assert.Throws<InvalidOperationException>(() => withUser.UseRabbitMq("amqp://billing:other-secret@rabbit-a:5672/"));
        Assert.DoesNotContain("secret", credentials.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("billing", credentials.Message, StringComparison.Ordinal);
        Assert.Throws<InvalidOperationException>(() => options.UseRabbitMq("amqp://rabbit-a:5672/", r => Tuned(r) with { ConfigureConnectionFactory = f => f.RequestedHeartbeat = TimeSpan.FromSeconds(5) }));
    }

    private static BasicProperties CloudEvent(params (string Header, object? Value)[] extra)
    {
        var headers = new Dictionary<string, object?>
        {
            [AmqpMessageCodec.SpecVersion] = Encoding.UTF8.GetBytes("1.0"),
            [AmqpMessageCodec.Id] = Encoding.UTF8.GetBytes(Guid.NewGuid().ToString()),
            [AmqpMessageCodec.Type] = Encoding.UTF8.GetBytes("com.example.someevent"),
            [AmqpMessageCodec.Time] = Encoding.UTF8.GetBytes("2026-11-29T10:15:30Z"),
        };
        foreach (var (header, value) in extra)
        {
            headers[header] = value;
        }

        return new BasicProperties { ContentType = "application/json", Headers = headers };
    }

    // CloudEvents' specversion names the version of the envelope's rules; a consumer must not read an event of a version
    // it does not know as if it were 1.0 (its attributes may mean other things). A 0.3 or 2.0 event was read as 1.0.
    [Theory]
    [InlineData("0.3")]
    [InlineData("2.0")]
    [InlineData("")]
    public void a_cloudevent_of_another_spec_version_is_refused_naming_it(string version)
    {
        var message = AmqpMessageCodec.ToMessage(CloudEvent((AmqpMessageCodec.SpecVersion, Encoding.UTF8.GetBytes(version))), "{}"u8.ToArray(), DateTimeOffset.UtcNow, out var fault);

        Assert.Null(message);
        Assert.Contains($"{AmqpMessageCodec.SpecVersion} '{version}'", fault, StringComparison.Ordinal);
    }

    [Fact]
    public void a_cloudevent_without_a_spec_version_is_read_as_1_0()
    {
        var properties = CloudEvent();
        properties.Headers!.Remove(AmqpMessageCodec.SpecVersion);

        var message = AmqpMessageCodec.ToMessage(properties, "{}"u8.ToArray(), DateTimeOffset.UtcNow, out var fault);

        Assert.True(message is not null, $"the CloudEvent was refused: {fault}");
    }

    // CloudEvents' attributes are scalars (string, integer, boolean, binary, URI, timestamp); AMQP also has tables and
    // arrays, which another client may put in a header under the prefix. Such a value was read as its .NET type name
    // ("System.Collections.Generic.Dictionary`2[...]"), kept as metadata or taken as the event's type.
    [Fact]
    public void an_extension_sent_as_an_amqp_table_or_array_is_not_read_as_a_type_name()
    {
        var table = new Dictionary<string, object?> { ["region"] = Encoding.UTF8.GetBytes("eu") };
        var array = new List<object?> { Encoding.UTF8.GetBytes("a"), Encoding.UTF8.GetBytes("b") };
        var properties = CloudEvent((AmqpMessageCodec.Prefix + "routing", table), (AmqpMessageCodec.Prefix + "labels", array), (AmqpMessageCodec.Prefix + "tenant", Encoding.UTF8.GetBytes("acme")));

        var message = AmqpMessageCodec.ToMessage(properties, "{}"u8.ToArray(), DateTimeOffset.UtcNow, out var fault);

        Assert.True(message is not null, $"the CloudEvent was refused: {fault}");
        Assert.Equal("acme", message.Metadata["tenant"]);
        Assert.False(message.Metadata.ContainsKey("routing"));
        Assert.False(message.Metadata.ContainsKey("labels"));
    }

    [Fact]
    public void a_type_sent_as_an_amqp_table_is_refused_naming_it()
    {
        var properties = CloudEvent((AmqpMessageCodec.Type, new Dictionary<string, object?> { ["name"] = Encoding.UTF8.GetBytes("x") }));

        var message = AmqpMessageCodec.ToMessage(properties, "{}"u8.ToArray(), DateTimeOffset.UtcNow, out var fault);

        Assert.Null(message);
        Assert.Contains(AmqpMessageCodec.Type, fault, StringComparison.Ordinal);
        Assert.Contains("not a string", fault, StringComparison.Ordinal);
    }

    // CloudEvents names attributes in lower-case a-z and 0-9 only: a metadata key that is no such name (tenant-id,
    // Region) travels as a cairn-metadata: header, which a CloudEvents reader does not take for an attribute, and reads
    // back as the same metadata; a key that is one stays an extension attribute.
    [Fact]
    public void metadata_keys_that_are_no_cloudevents_attribute_name_travel_outside_the_cloudevents_headers_and_read_back()
    {
        var sent = new Message(MessageId.New(), "order.placed", "urn:test", DateTimeOffset.UnixEpoch, "application/json", "{}"u8.ToArray())
        {
            Metadata = new Dictionary<string, string> { ["tenant"] = "acme", ["tenant-id"] = "t-1", ["Region"] = "eu", ["shard_2"] = "b" },
        };

        var properties = AmqpMessageCodec.ToProperties(sent, DateTimeOffset.UnixEpoch);

        var headers = properties.Headers!;
        Assert.Equal("acme", headers["cloudEvents:tenant"]);
        Assert.Equal("t-1", headers["cairn-metadata:tenant-id"]);
        Assert.Equal("eu", headers["cairn-metadata:Region"]);
        Assert.Equal("b", headers["cairn-metadata:shard_2"]);
        Assert.All(
            headers.Keys.Where(k => k.StartsWith(AmqpMessageCodec.Prefix, StringComparison.Ordinal)),
            k => Assert.Matches("^[a-z0-9]+$", k[AmqpMessageCodec.Prefix.Length..]));

        var received = AmqpMessageCodec.ToMessage(properties, sent.Data, null, out var fault);
        Assert.True(received is not null, fault);
        Assert.Equal(sent.Metadata.OrderBy(m => m.Key, StringComparer.Ordinal), received.Metadata.OrderBy(m => m.Key, StringComparer.Ordinal));
    }
}
