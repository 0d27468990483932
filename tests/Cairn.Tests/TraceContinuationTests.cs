using System.Diagnostics;
using System.Text;
using Cairn.DependencyInjection;
using Cairn.Messaging;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Cairn.Tests;

/// <summary>
/// What a handler sends continues the trace of the message it handles, whether or not anything listens to Cairn's
/// own sources: an application tracing only its own (and ASP.NET Core's, say) must not see its traces cut at the first
/// hop.
/// </summary>
public sealed class TraceContinuationTests
{
    private static OutgoingMessage Message(string type) => new(type, Encoding.UTF8.GetBytes("{}"));

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task what_a_handler_sends_continues_the_trace_of_the_message_it_handles_whoever_listens(bool alsoCairn)
    {
        var source = "Test.App." + Guid.NewGuid().ToString("N");
        using var listener = new ActivityListener
        {
            ShouldListenTo = s => s.Name == source || (alsoCairn && s.Name.StartsWith("Cairn.", StringComparison.Ordinal)),
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
        };
        ActivitySource.AddActivityListener(listener);
        using var app = new ActivitySource(source);
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddCairn(o => o.UseInMemory())
            .AddQueue("trace-in")
            .AddQueue("trace-out")
            .AddConsumer("trace-in", (context, _) =>
            {
                context.Send("trace-out", Message("test.forwarded"));
                return ValueTask.CompletedTask;
            });
        using var host = builder.Build();
        await host.StartAsync();
        try
        {
            var broker = host.Services.GetRequiredService<IMessageBroker>();
            string traceId;
            using (var request = app.StartActivity("POST /orders"))
            {
                Assert.NotNull(request);
                traceId = request.TraceId.ToHexString();
                await broker.SendAsync("trace-in", Message("test.requested"));
            }

            var forwarded = Assert.Single(await broker.ReceiveAsync("trace-out", new ReceiveOptions { MaxMessages = 1, Wait = TimeSpan.FromSeconds(10) }, default)).Message;
            Assert.NotNull(forwarded.TraceParent);
            Assert.Contains(traceId, forwarded.TraceParent, StringComparison.Ordinal);
        }
        finally
        {
            await host.StopAsync();
        }
    }
}
