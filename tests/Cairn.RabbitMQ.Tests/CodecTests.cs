using System.Text;

namespace Cairn.RabbitMQ.Tests;

/// <summary>The CloudEvents <c>time</c> header, as Cairn writes it and as another producer may; properties copied to republish.</summary>
public sealed class CodecTests
{
    [Fact]
    public void A_time_written_by_cairn_reads_back_to_the_tick_with_its_offset()
    {
        var time = new DateTimeOffset(2026, 11, 29, 10, 15, 30, TimeSpan.FromHours(2)).AddTicks(1_234_567);
        var headers = new Dictionary<string, object?> { [AmqpMessageCodec.Time] = Encoding.UTF8.GetBytes(AmqpMessageCodec.Format(time)) };

        var read = AmqpMessageCodec.GetTime(headers, AmqpMessageCodec.Time);

        Assert.Equal(time, read);
        Assert.Equal(time.Offset, read!.Value.Offset);
    }

    [Theory]
    [InlineData("2026-11-29T10:15:30Z", "2026-11-29T10:15:30+00:00")]
    [InlineData("2026-11-29T10:15:30.5+02:00", "2026-11-29T08:15:30.5+00:00")]
    [InlineData("2026-11-29T10:15:30.123-05:30", "2026-11-29T15:45:30.123+00:00")]
    public void An_rfc_3339_time_from_another_producer_is_read(string text, string utc)
    {
        var headers = new Dictionary<string, object?> { [AmqpMessageCodec.Time] = Encoding.UTF8.GetBytes(text) };

        Assert.Equal(DateTimeOffset.Parse(utc, System.Globalization.CultureInfo.InvariantCulture), AmqpMessageCodec.GetTime(headers, AmqpMessageCodec.Time));
    }

    [Theory]
    [InlineData("yesterday")]
    [InlineData("")]
    public void A_time_that_is_not_a_time_reads_as_none(string text)
    {
        var headers = new Dictionary<string, object?> { [AmqpMessageCodec.Time] = Encoding.UTF8.GetBytes(text) };

        Assert.Null(AmqpMessageCodec.GetTime(headers, AmqpMessageCodec.Time));
    }

    [Fact]
    public void A_copy_to_republish_keeps_another_publishers_properties_and_drops_what_describes_the_old_copy()
    {
        var received = new global::RabbitMQ.Client.BasicProperties
        {
            ContentType = "application/json",
            ContentEncoding = "gzip",
            ReplyTo = "replies",
            AppId = "billing",
            Priority = 7,
            MessageId = "m-1",
            CorrelationId = "c-1",
            Type = "invoice.sent",
            Expiration = "60000",
            UserId = "someone-else",
            Headers = new Dictionary<string, object?> { ["x-death"] = new List<object?>(), ["tenant"] = "eu", [AmqpMessageCodec.Id] = "id" },
        };

        var copy = AmqpMessageCodec.Copy(received);

        Assert.Equal(("application/json", "gzip", "replies", "billing", (byte)7), (copy.ContentType, copy.ContentEncoding, copy.ReplyTo, copy.AppId, copy.Priority));
        Assert.Equal(("m-1", "c-1", "invoice.sent"), (copy.MessageId, copy.CorrelationId, copy.Type));
        Assert.False(copy.IsExpirationPresent());
        Assert.False(copy.IsUserIdPresent());
        Assert.Equal(["cloudEvents:id", "tenant"], copy.Headers!.Keys.Order(StringComparer.Ordinal));
        Assert.False(AmqpMessageCodec.Copy(new global::RabbitMQ.Client.BasicProperties()).IsPriorityPresent());
    }
}
