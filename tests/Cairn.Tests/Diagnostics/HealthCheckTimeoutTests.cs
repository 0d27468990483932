using System.Diagnostics;
using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Messaging;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;

namespace Cairn.Tests.Diagnostics;

/// <summary>
/// A check's reads run at once, each bounded by <c>Timeout</c>, so a check ends within about one <c>Timeout</c> however
/// many queues it reads (docs/health-checks.md). A backend that does its work before it returns its task (SQLite's
/// reads step their statement at once, waiting up to <c>BusyTimeout</c> on a lock) was not bounded at all, and the
/// messaging check's reads ran one after another. The fakes below block the same way, on a gate opened at the end, for
/// longer than the checks are given to end (5 s: a 200 ms limit, with room for a thread pool still starting up under the
/// parallel suite), so a check that waited for a read, let alone four in turn, cannot pass.
/// </summary>
public sealed class HealthCheckTimeoutTests
{
    private static readonly TimeSpan CheckTimeout = TimeSpan.FromMilliseconds(200);

    private static IHost Host(Action<CairnBuilder> cairn, Func<IServiceProvider, EventStoreOptions, IEventStore>? store = null, Func<IMessageBroker, IMessageBroker>? transport = null)
    {
        var builder = Microsoft.Extensions.Hosting.Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        cairn(builder.Services.AddCairn(o =>
        {
            if (store is null)
            {
                o.UseInMemory();
            }
            else
            {
                o.UseBackend("blocking", store, _ => new Subscriptions.InMemoryCheckpointStore());
            }

            if (transport is not null)
            {
                o.UseTransport("blocking", (_, inner) => transport(inner));
            }
        }));
        builder.Services.AddHealthChecks().AddCairn(h => h with { Timeout = CheckTimeout });
        return builder.Build();
    }

    /// <summary>Runs one check off the test's thread, and says whether it ended within <paramref name="within"/>.</summary>
    internal static async Task<(bool Ended, TimeSpan Elapsed, Task<HealthReport> Check)> RunAsync(IHost host, string name, TimeSpan within)
    {
        var service = host.Services.GetRequiredService<HealthCheckService>();
        var started = Stopwatch.StartNew();
        var check = Task.Run(() => service.CheckHealthAsync(r => r.Name == name));
        var ended = await Task.WhenAny(check, Task.Delay(within)) == check;
        return (ended, started.Elapsed, check);
    }

    [Fact]
    public async Task the_storage_check_of_a_backend_whose_head_read_blocks_before_returning_ends_within_its_time_out()
    {
        using var gate = new ManualResetEventSlim();
        using var host = Host(_ => { }, store: (_, options) => new BlockingHead(new InMemoryEventStore(options), gate));
        _ = host.Services.GetRequiredService<IEventStore>();
        try
        {
            var (ended, elapsed, check) = await RunAsync(host, CairnHealthCheckExtensions.StorageCheck, TimeSpan.FromSeconds(5));

            gate.Set();
            var entry = (await check.Bounded()).Entries[CairnHealthCheckExtensions.StorageCheck];
            Assert.True(ended, $"the check with Timeout {CheckTimeout} was still running after {elapsed}; it then reported {entry.Status}: {entry.Description}");
            Assert.Equal(HealthStatus.Unhealthy, entry.Status);
        }
        finally
        {
            gate.Set();
        }
    }

    [Fact]
    public async Task the_messaging_check_reads_queues_whose_statistics_block_before_returning_at_once_within_one_time_out()
    {
        using var gate = new ManualResetEventSlim();
        var blocking = new BlockingStats(gate);
        using var host = Host(
            b =>
            {
                for (var i = 0; i < 4; i++)
                {
                    b.AddQueue($"q{i}");
                }
            },
            transport: blocking.Wrap);
        await host.StartAsync();
        try
        {
            blocking.Block = true;
            var (ended, elapsed, check) = await RunAsync(host, CairnHealthCheckExtensions.MessagingCheck, TimeSpan.FromSeconds(5));

            gate.Set();
            var entry = (await check.Bounded()).Entries[CairnHealthCheckExtensions.MessagingCheck];
            Assert.True(ended, $"the check with Timeout {CheckTimeout} over 4 queues was still running after {elapsed}; most reads at once: {blocking.MostAtOnce}; it then reported {entry.Status}: {entry.Description}");
            Assert.Equal(HealthStatus.Unhealthy, entry.Status);
        }
        finally
        {
            gate.Set();
            blocking.Block = false;
            await host.StopAsync();
        }
    }

    /// <summary>A store whose head read, as SQLite's, does its (here: blocked) work before returning.</summary>
    private sealed class BlockingHead(IEventStore inner, ManualResetEventSlim gate) : DelegatingEventStore(inner)
    {
        public override ValueTask<GlobalPosition> GetHeadPositionAsync(CancellationToken cancellationToken)
        {
            // As a SQLite statement waiting for a lock: at most BusyTimeout, then it answers.
            gate.Wait(TimeSpan.FromSeconds(15), CancellationToken.None);
            return Inner.GetHeadPositionAsync(cancellationToken);
        }
    }

    /// <summary>A broker whose statistics reads, as SQLite's, do their (here: blocked) work before returning.</summary>
    private sealed class BlockingStats(ManualResetEventSlim gate)
    {
        private int _inFlight;
        private int _mostAtOnce;

        public volatile bool Block;

        public int MostAtOnce => Volatile.Read(ref _mostAtOnce);

        public IMessageBroker Wrap(IMessageBroker inner) => new Broker(inner, this);

        private sealed class Broker(IMessageBroker inner, BlockingStats owner) : DelegatingMessageBroker(inner)
        {
            public override Task<QueueStats> GetStatsAsync(QueueName queue, CancellationToken cancellationToken)
            {
                if (owner.Block)
                {
                    var now = Interlocked.Increment(ref owner._inFlight);
                    var seen = Volatile.Read(ref owner._mostAtOnce);
                    while (now > seen && Interlocked.CompareExchange(ref owner._mostAtOnce, now, seen) is var previous && previous != seen)
                    {
                        seen = previous;
                    }

                    try
                    {
                        owner.Wait();
                    }
                    finally
                    {
                        Interlocked.Decrement(ref owner._inFlight);
                    }
                }

                return base.GetStatsAsync(queue, cancellationToken);
            }
        }

        private void Wait() => gate.Wait(TimeSpan.FromSeconds(10), CancellationToken.None);
    }
}
