using System.Text;

namespace Cairn.RabbitMQ.Tests;

/// <summary>RFC 3339 date-times from other producers, as the <c>cloudEvents:time</c> header carries them.</summary>
public sealed class AmqpTimeFormsTests
{
    // RFC 3339 section 5.8's own examples: a leap second, in UTC and with an offset. Both are valid RFC 3339 date-times
    // ("time-second = 2DIGIT ; 00-58, 00-59, 00-60 based on leap second rules"), yet the time header reads as absent or
    // unreadable, and a message carrying one is refused. .NET keeps no 60th second; the nearest instant it keeps
    // (23:59:59, as other parsers that clamp do) names the event's time within a second.
    [Theory]
    [InlineData("1990-12-31T23:59:60Z")]
    [InlineData("1990-12-31T15:59:60-08:00")]
    [InlineData("2016-12-31T23:59:60.5Z")]
    public void an_rfc_3339_leap_second_is_read_as_a_time(string text)
    {
        var headers = new Dictionary<string, object?> { [AmqpMessageCodec.Time] = Encoding.UTF8.GetBytes(text) };

        Assert.NotNull(AmqpMessageCodec.GetTime(headers, AmqpMessageCodec.Time));
    }

    // The other RFC 3339 examples of section 5.8, and Cairn's own "O" output, are read exactly.
    [Theory]
    [InlineData("1985-04-12T23:20:50.52Z")]
    [InlineData("1996-12-19T16:39:57-08:00")]
    [InlineData("1937-01-01T12:00:27.87+00:20")]
    [InlineData("2026-11-29T10:15:30.1234567+00:00")]
    public void rfc_3339_examples_are_read(string text)
    {
        var headers = new Dictionary<string, object?> { [AmqpMessageCodec.Time] = Encoding.UTF8.GetBytes(text) };

        Assert.Equal(DateTimeOffset.Parse(text, System.Globalization.CultureInfo.InvariantCulture), AmqpMessageCodec.GetTime(headers, AmqpMessageCodec.Time));
    }
}
