using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Cairn.Diagnostics;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Subscriptions;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Cairn.Sqlite.Tests;

/// <summary>Starting, stopping and disposing at the edges: subscriptions, the container, a request with a hole, a backend configured twice.</summary>
public sealed class LifecycleEdgeTests : IDisposable
{
    private readonly TempDatabase _database = new();

    public void Dispose() => _database.Dispose();

    private SqliteEventStore Open() => new(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString });

    // A checkpoint interval or a retry delay is waited out with a timer, which waits at most about 49.7 days: longer ones
    // were accepted, and then a subscription going idle faulted and delivered its events again, and a failed one ended
    // its run loop and threw out of its stop.
    [Fact]
    public void A_checkpoint_interval_or_retry_delay_over_thirty_days_is_refused_by_name()
    {
        foreach (var (options, name) in new (SubscriptionOptions, string)[]
        {
            (new SubscriptionOptions { Name = "s", CheckpointInterval = TimeSpan.MaxValue }, "CheckpointInterval"),
            (new SubscriptionOptions { Name = "s", CheckpointInterval = TimeSpan.FromDays(31) }, "CheckpointInterval"),
            (new SubscriptionOptions { Name = "s", RetryDelay = TimeSpan.FromDays(60), MaxRetryDelay = TimeSpan.FromDays(60) }, "MaxRetryDelay"),
            (new SubscriptionOptions { Name = "s", MaxRetryDelay = TimeSpan.MaxValue }, "MaxRetryDelay"),
        })
        {
            Assert.Equal(name, Assert.Throws<ArgumentOutOfRangeException>(options.Validate).ParamName);
        }

        new SubscriptionOptions { Name = "s", CheckpointInterval = SubscriptionOptions.MaxWait, MaxRetryDelay = SubscriptionOptions.MaxWait }.Validate();
    }

    // WaitForPositionAsync fails once the subscription has ended (docs/event-store.md). One disposed without ever being
    // started (a host whose start failed before reaching it) never failed its waits: they hung.
    [Fact]
    public async Task Waiting_for_a_position_on_a_subscription_disposed_before_it_started_fails()
    {
        using var store = Open();
        var subscription = new CatchUpSubscription(store, new SqliteCheckpointStore(store), new SubscriptionOptions { Name = "never-started" }, (_, _) => ValueTask.CompletedTask);
        var before = subscription.WaitForPositionAsync(new GlobalPosition(1), default);

        await subscription.DisposeAsync();
        var after = subscription.WaitForPositionAsync(new GlobalPosition(1), default);

        await Assert.ThrowsAsync<InvalidOperationException>(() => before.Bounded());
        await Assert.ThrowsAsync<InvalidOperationException>(() => after.Bounded());
    }

    // An `await using` around an explicit dispose disposes twice: the second cancelled a token source the first had
    // disposed, and threw.
    [Fact]
    public async Task Disposing_a_subscription_twice_is_harmless()
    {
        using var store = Open();
        var subscription = new CatchUpSubscription(store, new SqliteCheckpointStore(store), new SubscriptionOptions { Name = "twice" }, (_, _) => ValueTask.CompletedTask);
        await subscription.StartAsync(default);

        await subscription.DisposeAsync();
        await subscription.DisposeAsync();
        await subscription.StopAsync(default);
    }

    // AddCairn's event store decorator could only be disposed asynchronously: a container disposed synchronously (a
    // console app, a test) threw, and the SQLite store inside, its writer thread and its file, stayed open.
    [Fact]
    public async Task Disposing_the_container_synchronously_closes_the_sqlite_store()
    {
        var services = new ServiceCollection();
        services.AddCairn(o => o.UseSqlite(_database.ConnectionString));
        var provider = services.BuildServiceProvider();
        var store = provider.GetRequiredService<IEventStore>();
        await store.AppendToStreamAsync("order-1", ExpectedVersion.Any, [TestEvents.Numbered(1)]);

        provider.Dispose();

        var inner = ((InstrumentedEventStore)store).Inner;
        await Assert.ThrowsAsync<ObjectDisposedException>(() => inner.AppendAsync(new AppendRequest("order-1", ExpectedVersion.Any, [TestEvents.Numbered(2)]), default));
    }

    // The store UseSqlite opens is shared by the broker, checkpoints, schema store and trace reader, but only the
    // IEventStore registration disposed it: a host of queues and consumers alone, which never resolves IEventStore, left
    // its writer, checkpointer and pooled connections running, and the file open with its WAL, after it was disposed.
    [Fact]
    public async Task A_host_with_only_queues_and_consumers_closes_its_sqlite_file_when_disposed()
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services
            .AddCairn(o => o.UseSqlite(_database.ConnectionString))
            .AddQueue("orders")
            .AddConsumer("orders", (_, _) => ValueTask.CompletedTask);
        using (var host = builder.Build())
        {
            await host.StartAsync().Bounded();
            await host.Services.GetRequiredService<IMessageSender>().SendAsync("orders", new OutgoingMessage("order.place", "{}"u8.ToArray()), default);
            await host.StopAsync().Bounded();
        }

        // Closed, the store checkpoints its WAL into the file and removes it.
        Assert.False(File.Exists(_database.Path + "-wal"), "the SQLite store is still open after its host was disposed");
    }

    // A module's own AddCairn naming another file replaced the application's silently: its events went to the module's
    // file. The same file and settings again are one backend; secrets stay out of the error.
    [Fact]
    public void A_second_use_sqlite_with_another_file_is_refused_naming_both()
    {
        var other = Path.Combine(_database.Directory, "module.db");
        var services = new ServiceCollection();
        services.AddCairn(o => o.UseSqlite(_database.ConnectionString + ";Password=app-secret"));
        services.AddCairn(o => o.UseSqlite($"Data Source={other};Password=module-secret"));
        using var provider = services.BuildServiceProvider();

        var refused = Assert.Throws<BackendConflictException>(() => provider.GetRequiredService<IOptions<CairnOptions>>().Value);
        Assert.Contains(_database.Path, refused.Message, StringComparison.Ordinal);
        Assert.Contains(other, refused.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("secret", refused.Message, StringComparison.Ordinal);
        Assert.Throws<BackendConflictException>(() => new CairnOptions().UseSqlite(_database.ConnectionString).UseSqlite(_database.ConnectionString, s => s with { Durability = SqliteDurability.Normal }));
        Assert.Equal("sqlite", new CairnOptions().UseSqlite(_database.ConnectionString).UseSqlite(_database.ConnectionString).BackendName);
    }

    // Bad input is refused with ArgumentException naming what is wrong; a null part of a request's streams failed with
    // a bare NullReferenceException.
    [Fact]
    public async Task A_null_stream_part_in_a_request_is_refused_by_its_place_and_nothing_is_written()
    {
        using var store = Open();
        var request = new AppendRequest([new StreamAppend("order-1", ExpectedVersion.Any, [TestEvents.Numbered(1)]), null!]);

        var refused = await Assert.ThrowsAsync<ArgumentException>(() => store.AppendAsync(request, default));

        Assert.Contains("stream part 1 is null", refused.Message, StringComparison.Ordinal);
        Assert.Equal(GlobalPosition.Start, await store.GetHeadPositionAsync(default));
    }
}
