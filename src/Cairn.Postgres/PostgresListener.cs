using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Cairn.Postgres;

/// <summary>
/// One dedicated connection that <c>LISTEN</c>s on a channel of the schema and hands each notification's payload to
/// <c>notified</c>: the queues' channel wakes this process's receivers of the queue each notification names, the
/// appends' channel its live readers. When the connection drops it is opened again, backing off up to
/// <see cref="MaxBackoff"/>; after each (re)connection, and while it is down, <c>missed</c> is called, so every waiter
/// looks again for what was notified meanwhile. It is opened on the first wait, and closed on dispose.
/// </summary>
internal sealed class PostgresListener : IDisposable, IAsyncDisposable
{
    /// <summary>The longest wait between two attempts to connect.</summary>
    public static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(5);

    /// <summary>How long the connection may sit silent before a round trip checks it is still there.</summary>
    private static readonly TimeSpan Heartbeat = TimeSpan.FromSeconds(15);

    /// <summary>The application name the queues' listening connection shows in <c>pg_stat_activity</c>.</summary>
    public const string QueueApplicationName = "cairn-queue-listener";

    /// <summary>The application name the appends' listening connection shows in <c>pg_stat_activity</c>.</summary>
    public const string AppendApplicationName = "cairn-append-listener";

    private readonly PostgresEventStoreOptions _options;
    private readonly string _applicationName;
    private readonly string _channel;
    private readonly Action<string> _notified;
    private readonly Action _missed;
    private readonly string _what;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private readonly object _gate = new();
    private Task? _loop;
    private int _connections;
    private int _processId;
    private TaskCompletionSource _listening = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <param name="options">The store's settings, for its data source.</param>
    /// <param name="channel">The channel to listen on.</param>
    /// <param name="applicationName">The name the connection shows in <c>pg_stat_activity</c>.</param>
    /// <param name="what">What is listened for, for the log.</param>
    /// <param name="notified">Called with each notification's payload.</param>
    /// <param name="missed">Called when notifications may have been missed: after each (re)connection, and on a drop.</param>
    /// <param name="logger">Where a dropped connection is reported.</param>
    public PostgresListener(PostgresEventStoreOptions options, string channel, string applicationName, string what, Action<string> notified, Action missed, ILogger? logger)
    {
        _options = options;
        _applicationName = applicationName;
        _what = what;
        _notified = notified;
        _missed = missed;
        _channel = channel;
        _logger = logger ?? NullLogger.Instance;
    }

    /// <summary>How many times the connection has been opened and is listening (1 after the first, 2 after a reconnect, …).</summary>
    public int Connections => Volatile.Read(ref _connections);

    /// <summary>The server process of the listening connection, 0 before the first.</summary>
    public int ProcessId => Volatile.Read(ref _processId);

    /// <summary>Completes when the connection is listening (the current one, or the next after a drop).</summary>
    public Task WhenListeningAsync()
    {
        lock (_gate)
        {
            return _listening.Task;
        }
    }

    /// <summary>Opens the listening connection unless it is open or opening already.</summary>
    public void Start()
    {
        if (Volatile.Read(ref _loop) is not null)
        {
            return;
        }

        lock (_gate)
        {
            if (_loop is null && !_stop.IsCancellationRequested)
            {
                _loop = BackgroundWork.Start(() => ListenAsync(_stop.Token));
            }
        }
    }

    /// <summary>
    /// Listens until stopped, through a data source of its own made only now: one made for a listener that never
    /// listens would still run the application's password provider.
    /// </summary>
    private async Task ListenAsync(CancellationToken stop)
    {
        NpgsqlDataSource dataSource;
        try
        {
            dataSource = _options.BuildDataSource(required: connection =>
            {
                // Its own physical connection: never taken from or given back to the pool, which would forget the LISTEN.
                connection.Pooling = false;
                connection.ApplicationName = _applicationName;
            });
        }
        catch (Exception ex)
        {
            // The application's ConfigureDataSource failed for this one: said once, loudly, rather than silently
            // leaving every waiter to its polling.
            _logger.LogError(ex, "The connection listening for {What} could not be set up; waiters find new work only by polling.", _what);
            _missed();
            return;
        }

        await using (dataSource.ConfigureAwait(false))
        {
            await ListenUntilStoppedAsync(dataSource, stop).ConfigureAwait(false);
        }
    }

    private async Task ListenUntilStoppedAsync(NpgsqlDataSource dataSource, CancellationToken stop)
    {
        var backoff = TimeSpan.FromMilliseconds(50);
        while (!stop.IsCancellationRequested)
        {
            try
            {
                await using var connection = await dataSource.OpenConnectionAsync(stop).ConfigureAwait(false);
                connection.Notification += (_, e) => _notified(e.Payload);
                await using (var listen = new NpgsqlCommand($"LISTEN \"{_channel}\"", connection))
                {
                    await listen.ExecuteNonQueryAsync(stop).ConfigureAwait(false);
                }

                Volatile.Write(ref _processId, connection.ProcessID);
                Interlocked.Increment(ref _connections);
                backoff = TimeSpan.FromMilliseconds(50);

                // Whatever was notified while no connection listened: every waiter looks again (before anyone is told
                // the connection listens, so a wait begun after that is woken only by a notification).
                _missed();
                TaskCompletionSource listening;
                lock (_gate)
                {
                    listening = _listening;
                }

                listening.TrySetResult();
                while (true)
                {
                    if (!await connection.WaitAsync(Heartbeat, stop).ConfigureAwait(false))
                    {
                        await using var ping = new NpgsqlCommand("SELECT 1", connection);
                        await ping.ExecuteNonQueryAsync(stop).ConfigureAwait(false);
                    }
                }
            }
            catch (Exception) when (stop.IsCancellationRequested)
            {
                // Closed on dispose, whatever the connection made of the cancellation.
                return;
            }
            catch (Exception ex)
            {
                lock (_gate)
                {
                    if (_listening.Task.IsCompleted)
                    {
                        _listening = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    }
                }

                _logger.LogWarning(ex, "The connection listening for {What} on {Channel} failed; reconnecting in {Backoff}. Waiters poll meanwhile.", _what, _channel, backoff);
                _missed();
                try
                {
                    // Real time, not the store's clock: a reconnection must happen whatever a test's clock does.
                    await Task.Delay(backoff, stop).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, MaxBackoff.Ticks));
            }
        }
    }

    /// <summary>Closes the listening connection without waiting for it.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (!_stop.IsCancellationRequested)
            {
                _stop.Cancel();
            }
        }
    }

    /// <summary>Closes the listening connection and waits until it is closed.</summary>
    public async ValueTask DisposeAsync()
    {
        Task? loop;
        lock (_gate)
        {
            if (!_stop.IsCancellationRequested)
            {
                _stop.Cancel();
            }

            loop = _loop;
        }

        if (loop is not null)
        {
            await loop.ConfigureAwait(false);
        }
    }
}
