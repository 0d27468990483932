using Cairn.EventStore;

namespace Cairn.Postgres;

/// <summary>
/// A write committed on the primary, but PostgreSQL stopped waiting for its synchronous standby before the standby
/// confirmed it: the commit's statement was cancelled (Npgsql's <c>Command Timeout</c>, <c>pg_cancel_backend</c>), and
/// PostgreSQL then keeps the commit on the primary alone. The write is in the primary's log and visible there, but a
/// failover to the standby would lose it, so Cairn does not answer it as done. Retry it as it was: an append with the
/// same event ids is answered, with the original positions, once the standby has it. A settlement (an acknowledgement,
/// a release) took effect on the primary, so its lease is gone and its retry fails with a lost lease.
/// </summary>
public sealed class ReplicationNotConfirmedException()
    : CairnException("The write committed on the PostgreSQL primary, but the wait for its synchronous standby was cancelled (a statement time-out, such as Npgsql's Command Timeout, or pg_cancel_backend) before the standby confirmed it: a failover could lose it. Retry it as it was; an append with the same event ids is answered once the standby has it.");
