using Npgsql;

namespace Cairn.Postgres;

/// <summary>What a PostgreSQL error says about its cause: the connection or the server's state, or the statement itself.</summary>
internal static class PostgresFaults
{
    /// <summary>
    /// The connection failure <paramref name="error"/> is or wraps, or null: an I/O error (not a command's time-out), a
    /// session the server ended (57P01 to 57P03, an administrator, a shutdown, a crash) or a connection exception (class 08).
    /// </summary>
    public static Exception? ConnectionFailureIn(Exception? error)
    {
        for (var e = error; e is not null; e = e.InnerException)
        {
            switch (e)
            {
                case PostgresException { SqlState: { } state } when state.StartsWith("08", StringComparison.Ordinal) || state.StartsWith("57P0", StringComparison.Ordinal):
                // Not a command's time-out: the connection stays open (the server is asked to cancel the statement).
                case NpgsqlException and not PostgresException when e.InnerException is not TimeoutException:
                    return e;
            }
        }

        return null;
    }

    /// <summary>
    /// Whether a statement refused with <paramref name="sqlState"/> may pass when run again unchanged: the connection,
    /// a rollback to break a deadlock, resources, an object's state (a lock not available), an operator's intervention,
    /// a system error. Any other refusal (a syntax error, a value out of range, a feature not supported) is the
    /// statement's own, and no retry mends it.
    /// </summary>
    public static bool MayPassAgain(string? sqlState) =>
        sqlState is null || sqlState.Length < 2 || sqlState[..2] is "08" or "40" or "53" or "55" or "57" or "58" or "XX";
}
