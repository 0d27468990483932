using Cairn.Projections;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Cairn.Postgres;

public sealed partial class PostgresProjectionStore : IProjectionLeases
{
    private readonly LeaseSession _leases;

    /// <summary>
    /// How often the connection holding this process's leases is checked, and how often a process standing by tries
    /// to take a lease. The server also ends that connection, releasing its leases, when it stays idle for five of
    /// these, and at least 10 seconds (PostgreSQL 14 and later), so a holder cut off from the server loses them too.
    /// From 10 ms to an hour.
    /// </summary>
    public TimeSpan LeaseCheckInterval
    {
        get => _leaseCheckInterval;
        init
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, TimeSpan.FromMilliseconds(10), nameof(LeaseCheckInterval));

            // Five of them are the lease session's idle_session_timeout, in milliseconds of a 32-bit setting.
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, TimeSpan.FromHours(1), nameof(LeaseCheckInterval));
            _leaseCheckInterval = value;
        }
    }

    private readonly TimeSpan _leaseCheckInterval = TimeSpan.FromSeconds(1);

    /// <inheritdoc />
    public Task<IProjectionLease> AcquireAsync(string projection, CancellationToken cancellationToken)
    {
        try
        {
            ProjectionNames.Validate(projection);
        }
        catch (Exception ex)
        {
            return Refusal.Of<IProjectionLease>(ex);
        }

        return _leases.AcquireAsync(projection, cancellationToken);
    }

    /// <summary>
    /// The leases of this store: session-level advisory locks, one per projection, all held on one connection of their
    /// own. The server releases them when that connection ends, so when this process dies, or its connection is
    /// killed, another process's next try takes them. A check on the connection every <see cref="LeaseCheckInterval"/>
    /// finds it broken and cancels every lease it held.
    /// </summary>
    private sealed class LeaseSession(PostgresProjectionStore owner) : IAsyncDisposable
    {
        private readonly SemaphoreSlim _gate = new(1, 1);
        private readonly Dictionary<long, int> _held = [];
        private NpgsqlConnection? _connection;
        private CancellationTokenSource? _lost;
        private CancellationTokenSource? _stopCheck;
        private bool _disposed;

        /// <summary>Tries to take the lease until it is held or <paramref name="cancellationToken"/> is cancelled.</summary>
        public async Task<IProjectionLease> AcquireAsync(string projection, CancellationToken cancellationToken)
        {
            var key = PostgresSchema.ProjectionLeaseKey(owner._store.Schema, projection);
            while (true)
            {
                await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
                try
                {
                    ObjectDisposedException.ThrowIf(_disposed, this);

                    // Held here already: a second runner of the projection in this process shares it (the positions
                    // its batches expect keep the two from applying an event twice); leases keep processes apart.
                    if (_held.TryGetValue(key, out var holders) && _lost is { } current)
                    {
                        _held[key] = holders + 1;
                        return new Lease(this, key, current.Token);
                    }

                    var connection = await ConnectAsync(cancellationToken).ConfigureAwait(false);
                    await using var command = new NpgsqlCommand("SELECT pg_try_advisory_lock($1)", connection);
                    command.Parameters.Add(new NpgsqlParameter { Value = key });
                    if ((bool)(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!)
                    {
                        _held[key] = 1;
                        return new Lease(this, key, _lost!.Token);
                    }

                    await DisconnectIfIdleAsync().ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is NpgsqlException or (InvalidOperationException and not ObjectDisposedException) && !cancellationToken.IsCancellationRequested)
                {
                    owner._logger.LogWarning(ex, "Could not try the lease of projection {Projection}; trying again.", projection);
                    await LoseAsync().ConfigureAwait(false);
                }
                finally
                {
                    _gate.Release();
                }

                // Real time, not the store's clock: the server's side of a lease (a session, its idle timeout, another
                // process's tries) runs on real time, whatever clock the application gives the store.
                await Task.Delay(owner.LeaseCheckInterval, TimeProvider.System, cancellationToken).ConfigureAwait(false);
            }
        }

        /// <summary>The lease connection, opened with its checks when there is none.</summary>
        private async Task<NpgsqlConnection> ConnectAsync(CancellationToken cancellationToken)
        {
            if (_connection is not null)
            {
                return _connection;
            }

            var connection = await owner._store.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                if (connection.PostgreSqlVersion.Major >= 14)
                {
                    // A holder that stops checking (cut off, or frozen) is cut off by the server, releasing its leases.
                    // Never tight: a busy process whose checks run late would lose its leases to no purpose.
                    var timeout = (long)Math.Max(owner.LeaseCheckInterval.TotalMilliseconds * 5, 10_000);
                    await using var set = new NpgsqlCommand($"SET idle_session_timeout = {timeout}", connection);
                    await set.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                }
            }
            catch
            {
                await connection.DisposeAsync().ConfigureAwait(false);
                throw;
            }

            _connection = connection;
            _lost = new CancellationTokenSource();
            _stopCheck = new CancellationTokenSource();
            _ = CheckAsync(connection, _stopCheck.Token);
            return connection;
        }

        /// <summary>Checks the connection while it holds leases; a failure loses them all.</summary>
        private async Task CheckAsync(NpgsqlConnection connection, CancellationToken stop)
        {
            while (true)
            {
                try
                {
                    // Real time, as the tries above: a check that waited on a clock that stands still would never find
                    // a killed session, and the holder would run on beside the process that took its lease.
                    await Task.Delay(owner.LeaseCheckInterval, TimeProvider.System, stop).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                await _gate.WaitAsync(CancellationToken.None).ConfigureAwait(false);
                try
                {
                    if (stop.IsCancellationRequested || _connection != connection)
                    {
                        return;
                    }

                    await using var command = new NpgsqlCommand("SELECT 1", connection);
                    await command.ExecuteScalarAsync(stop).ConfigureAwait(false);
                }
                catch (Exception ex) when (!stop.IsCancellationRequested)
                {
                    owner._logger.LogWarning(ex, "The connection holding this process's projection leases broke; the projections it ran stand by.");
                    await LoseAsync().ConfigureAwait(false);
                    return;
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                finally
                {
                    _gate.Release();
                }
            }
        }

        /// <summary>Releases one lease; the connection is closed once it holds none.</summary>
        private async ValueTask ReleaseAsync(long key, CancellationToken lost)
        {
            await _gate.WaitAsync(CancellationToken.None).ConfigureAwait(false);
            try
            {
                if (lost.IsCancellationRequested || !_held.TryGetValue(key, out var holders) || _connection is null)
                {
                    return;
                }

                if (holders > 1)
                {
                    _held[key] = holders - 1;
                    return;
                }

                _held.Remove(key);

                try
                {
                    await using var command = new NpgsqlCommand("SELECT pg_advisory_unlock($1)", _connection);
                    command.Parameters.Add(new NpgsqlParameter { Value = key });
                    await command.ExecuteScalarAsync(CancellationToken.None).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is NpgsqlException or InvalidOperationException)
                {
                    // The connection broke: the server has released the lock with it.
                    await LoseAsync().ConfigureAwait(false);
                    return;
                }

                await DisconnectIfIdleAsync().ConfigureAwait(false);
            }
            finally
            {
                _gate.Release();
            }
        }

        private async ValueTask DisconnectIfIdleAsync()
        {
            if (_held.Count == 0)
            {
                await CloseAsync(lost: false).ConfigureAwait(false);
            }
        }

        /// <summary>Every lease is gone with the connection: cancels them and closes it.</summary>
        private ValueTask LoseAsync() => CloseAsync(lost: true);

        private async ValueTask CloseAsync(bool lost)
        {
            var connection = _connection;
            var leases = _lost;
            _connection = null;
            _lost = null;
            _held.Clear();
            if (_stopCheck is { } stopCheck)
            {
                _stopCheck = null;
                await stopCheck.CancelAsync().ConfigureAwait(false);
                stopCheck.Dispose();
            }

            if (lost && leases is not null)
            {
                await leases.CancelAsync().ConfigureAwait(false);
            }

            if (connection is null)
            {
                return;
            }

            try
            {
                if (connection.FullState == System.Data.ConnectionState.Open)
                {
                    // Back to the pool as any other connection: without the timeout, and without a lock.
                    var sql = connection.PostgreSqlVersion.Major >= 14 ? "RESET idle_session_timeout; SELECT pg_advisory_unlock_all()" : "SELECT pg_advisory_unlock_all()";
                    await using var reset = new NpgsqlCommand(sql, connection);
                    await reset.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
                }
            }
            catch (Exception ex) when (ex is NpgsqlException or InvalidOperationException)
            {
                // Broken: the pool will not hand it out again.
            }

            try
            {
                await connection.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is NpgsqlException or InvalidOperationException)
            {
                // Broken already.
            }
        }

        /// <summary>Closes the lease connection: the server releases every lease it held.</summary>
        public async ValueTask DisposeAsync()
        {
            await _gate.WaitAsync(CancellationToken.None).ConfigureAwait(false);
            try
            {
                _disposed = true;
                await LoseAsync().ConfigureAwait(false);
            }
            finally
            {
                _gate.Release();
            }
        }

        private sealed class Lease(LeaseSession session, long key, CancellationToken lost) : IProjectionLease
        {
            private int _released;

            public CancellationToken Lost { get; } = lost;

            public ValueTask DisposeAsync() =>
                Interlocked.Exchange(ref _released, 1) == 0 ? session.ReleaseAsync(key, Lost) : ValueTask.CompletedTask;
        }
    }
}
