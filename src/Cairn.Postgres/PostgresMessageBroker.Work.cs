using Cairn.Diagnostics;
using Cairn.Messaging;
using Npgsql;
using NpgsqlTypes;

namespace Cairn.Postgres;

public sealed partial class PostgresMessageBroker
{
    /// <summary>
    /// The messaging side of one write transaction: its clock reading, the queues it read, the queues it made something
    /// receivable in (notified on the way out, woken here after the commit) and the messages it dead-lettered (counted
    /// after the commit).
    /// </summary>
    internal sealed class MessagingWork(PostgresMessageBroker broker, PostgresWriteContext context)
    {
        private readonly Dictionary<string, QueueRow> _queues = new(StringComparer.Ordinal);
        private HashSet<string>? _touched;
        private List<string>? _deadLettered;

        public PostgresWriteContext Context { get; } = context;

        public NpgsqlConnection Connection => Context.Connection;

        public NpgsqlTransaction Transaction => Context.Transaction;

        /// <summary>The time of this transaction, read once from the store's clock.</summary>
        public long Now { get; } = broker._time.GetUtcNow().UtcTicks;

        public NpgsqlCommand Command(string sql) => Context.Command(sql);

        /// <summary>Notes that a queue may have something receivable once this transaction commits.</summary>
        public void Touch(string queue) => (_touched ??= new HashSet<string>(StringComparer.Ordinal)).Add(queue);

        /// <summary>Notes a message dead-lettered from a queue, for the metric.</summary>
        public void DeadLettered(string queue) => (_deadLettered ??= []).Add(queue);

        public async Task<QueueRow> RequireQueueAsync(QueueName queue, CancellationToken cancellationToken)
        {
            // A default QueueName (a default lease token, a redrive to a default target) names no queue there could be.
            if (queue.Value is null)
            {
                throw new QueueNotFoundException(queue);
            }

            if (_queues.TryGetValue(queue.Value, out var cached))
            {
                return cached;
            }

            var row = await broker.FindQueueAsync(Connection, Transaction, queue, cancellationToken).ConfigureAwait(false) ?? throw new QueueNotFoundException(queue);
            _queues[queue.Value] = row;
            return row;
        }

        /// <summary>Notifies the touched queues in the transaction, and wakes this process's receivers after it commits.</summary>
        public async Task FinishAsync(CancellationToken cancellationToken)
        {
            if (_touched is { Count: > 0 } touched)
            {
                // A queue is touched by a row written into it or changed in it.
                Context.NoteWrite();

                // PostgreSQL delivers the notifications when (and only if) the transaction commits.
                await using var notify = Command("SELECT pg_notify($1, q) FROM unnest($2) AS q");
                notify.Parameters.Add(Pg.Text(broker.Channel));
                notify.Parameters.Add(new NpgsqlParameter { Value = touched.ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
                await notify.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }

            if (_touched is null && _deadLettered is null)
            {
                return;
            }

            var queues = _touched;
            var dead = _deadLettered;
            var signal = broker._signal;
            Context.OnCommitted(() =>
            {
                if (queues is not null)
                {
                    foreach (var queue in queues)
                    {
                        signal.Pulse(queue);
                    }
                }

                if (dead is not null)
                {
                    foreach (var queue in dead)
                    {
                        CairnDiagnostics.MessagesDeadLettered.Add(1, new KeyValuePair<string, object?>("queue", queue));
                    }
                }
            });
        }
    }
}

/// <summary>Typed parameters, so a null still tells PostgreSQL its type.</summary>
internal static class Pg
{
    public static NpgsqlParameter Text(string? value) => new() { Value = (object?)value ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text };

    public static NpgsqlParameter Long(long? value) => new() { Value = (object?)value ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Bigint };

    public static NpgsqlParameter Int(int value) => new() { Value = value, NpgsqlDbType = NpgsqlDbType.Integer };

    public static NpgsqlParameter Short(short value) => new() { Value = value, NpgsqlDbType = NpgsqlDbType.Smallint };

    public static NpgsqlParameter Uuid(Guid value) => new() { Value = value, NpgsqlDbType = NpgsqlDbType.Uuid };

    public static NpgsqlParameter Bytes(byte[]? value) => new() { Value = (object?)value ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Bytea };

    public static NpgsqlParameter Longs(long[] values) => new() { Value = values, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bigint };

    public static NpgsqlParameter Uuids(Guid[] values) => new() { Value = values, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Uuid };

    public static NpgsqlParameter Texts(string[] values) => new() { Value = values, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text };
}
