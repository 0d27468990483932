using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Cairn.Postgres;

internal static partial class PostgresSchema
{
    /// <summary>The first key of the transaction lock that orders the creation and dropping of a projection's builds.</summary>
    public const int ProjectionLockClass = 0x43415052; // "CAPR"

    /// <summary>The advisory lock class of a SQL table's name: its check and its view are made by one projection at a time.</summary>
    public const int TableNameLockClass = 0x4341544E; // "CATN"

    /// <summary>
    /// The key of a projection's lease, a session-level advisory lock held by the process that runs it: the first 64
    /// bits of the SHA-256 of the schema and projection names. Advisory locks are shared by every schema of the
    /// database, so a 32-bit hash made leases of different projections collide once a database held some tens of
    /// thousands (a schema per tenant): a process then stood by for a projection nobody ran. At 64 bits two of a
    /// million leases meet with odds of about 1 in 40 million.
    /// </summary>
    public static long ProjectionLeaseKey(string schema, string projection)
    {
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes(schema + "\n" + projection), hash);
        return BinaryPrimitives.ReadInt64BigEndian(hash);
    }

    /// <summary>
    /// Projections and snapshots (version 3). Each build of a projection's read model is a row of
    /// <c>projection_builds</c>, at most one serving and one shadow per projection; its documents live in tables
    /// <c>doc_&lt;build&gt;_&lt;collection&gt;</c> and its own SQL tables in <c>&lt;table&gt;__b&lt;build&gt;</c>, behind
    /// a view named after the table. <c>live</c> marks the serving build of an inline projection that appends apply.
    /// A build's position moves in the same transaction as its documents. Snapshots keep the latest per stream and kind.
    /// </summary>
    /// <summary>
    /// A projection's dead letters belong to the build that skipped them and go with it (version 8; before, one per
    /// projection and position outlived the build). Those kept so far are given to their projection's serving build
    /// (the one that skipped them, or a rebuild since that skipped them again); a projection with no build has none.
    /// </summary>
    private static string[] Migration8(string s) =>
    [
        $"ALTER TABLE {s}.projection_dead_letters ADD COLUMN build bigint",
        $"UPDATE {s}.projection_dead_letters d SET build = b.id FROM {s}.projection_builds b WHERE b.projection = d.projection AND b.serving",
        $"DELETE FROM {s}.projection_dead_letters WHERE build IS NULL",
        $"""
        ALTER TABLE {s}.projection_dead_letters
            ALTER COLUMN build SET NOT NULL,
            DROP CONSTRAINT projection_dead_letters_pkey,
            ADD PRIMARY KEY (projection, build, position)
        """,
    ];

    private static string[] Migration3(string s) =>
    [
        $"""
        CREATE TABLE {s}.projection_builds (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            projection text NOT NULL,
            version integer NOT NULL,
            shape text NOT NULL,
            position bigint NOT NULL,
            serving boolean NOT NULL,
            live boolean NOT NULL DEFAULT false,
            created_at timestamptz NOT NULL DEFAULT now())
        """,
        $"CREATE UNIQUE INDEX projection_builds_serving ON {s}.projection_builds (projection) WHERE serving",
        $"CREATE UNIQUE INDEX projection_builds_shadow ON {s}.projection_builds (projection) WHERE NOT serving",
        $"""
        CREATE TABLE {s}.projection_dead_letters (
            projection text NOT NULL,
            position bigint NOT NULL,
            event_id uuid NOT NULL,
            stream text NOT NULL,
            version bigint NOT NULL,
            event_type text NOT NULL,
            failure text NOT NULL,
            attempts integer NOT NULL,
            dead_ticks bigint NOT NULL,
            PRIMARY KEY (projection, position))
        """,
        $"""
        CREATE TABLE {s}.snapshots (
            stream text NOT NULL,
            kind text NOT NULL,
            schema_version integer NOT NULL,
            stream_version bigint NOT NULL,
            first_version bigint NOT NULL,
            position bigint NOT NULL,
            taken_at timestamptz NOT NULL DEFAULT now(),
            data bytea NOT NULL,
            PRIMARY KEY (stream, kind))
        """,
    ];
}
