namespace Cairn.Benchmarks;

/// <summary>The command line: <c>[--quick] [--only W1,M2] [--postgres] [--pg-no-fsync] [--json FILE] [--cairn-only] [--no-marten]</c>, parsed by hand (a few flags need no library).</summary>
internal sealed record BenchOptions
{
    public static readonly IReadOnlyList<string> AllWorkloads = ["W1", "W2", "W3", "W4", "W5", "M1", "M2", "M3", "P1", "P2", "O1", "O2", "S1", "R1", "R2", "PW1", "PW2", "PW3", "PW4", "PW5", "PW6"];

    /// <summary>The PostgreSQL workloads: run only when named (<c>--postgres</c> or <c>--only</c>), since they need a server.</summary>
    public static readonly IReadOnlyList<string> PostgresWorkloads = ["PW1", "PW2", "PW3", "PW4", "PW5", "PW6"];

    public bool Quick { get; init; }

    public IReadOnlySet<string> Only { get; init; } = new HashSet<string>(AllWorkloads.Except(PostgresWorkloads), StringComparer.OrdinalIgnoreCase);

    /// <summary>False with <c>--pg-no-fsync</c>: the server the bench starts keeps tests/postgres.sh's fsync off.</summary>
    public bool PostgresDurable { get; init; } = true;

    public string? JsonPath { get; init; }

    /// <summary>Set on the child process that measures W5 alone (not for users).</summary>
    public bool Child { get; init; }

    public bool Help { get; init; }

    /// <summary>Skips the baselines, to profile Cairn alone.</summary>
    public bool CairnOnly { get; init; }

    /// <summary>Skips Marten's sides of the PostgreSQL workloads, keeping raw Npgsql.</summary>
    public bool NoMarten { get; init; }

    public bool Runs(string workload) => Only.Contains(workload);

    public const string Usage = """
        Cairn benchmarks: every workload runs against Cairn and against a raw Microsoft.Data.Sqlite baseline in the same run.

        usage: dotnet run -c Release --project bench/Cairn.Benchmarks -- [--quick] [--only W1,M2] [--postgres] [--json FILE]

          --quick        every workload, smaller and shorter (a smoke test)
          --only LIST    only these workloads, comma-separated, of W1 W2 W3 W4 W5 M1 M2 M3 P1 P2 O1 O2 S1 R1 R2 PW1 PW2 PW3 PW4 PW5 PW6
                         (--only P1,P2: the projections alone; --only O1,O2: the workflows;
                         --only S1: schema validation on append; --only PW2: one PostgreSQL workload)
          --postgres     the PostgreSQL workloads PW1-PW6 (not run unless named): Cairn, Marten Rich and Quick, raw
                         Npgsql, on CAIRN_POSTGRES if set, else on a server started (and stopped) with tests/postgres.sh
          --pg-no-fsync  keep tests/postgres.sh's fsync=off and synchronous_commit=off on the server the bench starts
                         (by default it starts it with PostgreSQL's durable defaults; CAIRN_POSTGRES is used as it is)
          --json FILE    also write the figures as a JSON array: id, value, unit, baseline, ratio
          --cairn-only   skip the baselines (to profile Cairn alone; ratios are then empty)
          --no-marten    skip Marten's sides of PW1-PW4, keeping raw Npgsql (Marten writes PW3's log at a few
                         thousand events/s, which takes minutes)
          --help         this text

        Event store:
        W1 single-event appends to many streams, 1 and 16 writers   W2 batches of 100 events, one writer
        W3 full read of $all                                         W4 eight writers on one stream, optimistic retries
        W5 peak working set appending then reading (in a child process)
        Messaging (baseline: a plain SQLite table used as a queue):
        M1 send 200,000 messages in batches, then receive + ack them with 4 consumers; msg/s each way and end to end
        M2 publish-to-handler latency at 2,000 msg/s, one long-polling consumer; p50, p99, max
        M3 fan-out: one topic, 10 filtered subscriptions; publishes/s and copies delivered/s
        Projections (baseline: the same fold written by hand over raw SQLite):
        P1 rebuild of an order projection over 1,000,000 events into memory and into SQLite; events/s
        P2 lag of an async projection behind 5,000 single-event appends/s for 20 s; p50, p99, max
        Workflows (baseline: the same hops coordinated by hand, state in memory; O2's: O1's workflow):
        O1 three-step checkout workflows completed/s, 100 in flight; step latency p50, p99
        O2 the same checkout as a choreography through a topic: orders completed/s, 100 in flight
        Over RabbitMQ (CAIRN_RABBITMQ; skipped without it; baseline: RabbitMQ.Client with confirms and manual acks):
        R1 M1 through the transport's outbox and relay; msg/s sent and end to end
        R2 M2 through the transport at 500 msg/s; p50, p99, max
        Schemas (baseline: the same appends with validation Off):
        S1 appends of an order validated against its schema (Reject): 16 single-event writers, and batches of 100; events/s
        PostgreSQL event store (baselines: Marten Rich and Quick, raw Npgsql; all on one server):
        PW1 W1 on PostgreSQL, 1 and 16 writers   PW2 W2 on PostgreSQL   PW3 W3 on PostgreSQL   PW4 W4 on PostgreSQL
        PW5 append to a live subscription of another store on the schema, an append every 20 ms; p50, p99, max
            (baseline: the same with NotifyAppends off, the reader polling every 500 ms)
        PW6 PW1-16 on each of two stores in two schemas at once, appends notifying
            (baseline: the same with NotifyAppends off)
        """;

    /// <summary>Parses the arguments; throws <see cref="ArgumentException"/> naming the bad one.</summary>
    public static BenchOptions Parse(IReadOnlyList<string> args)
    {
        var options = new BenchOptions();
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            switch (arg)
            {
                case "--quick":
                    options = options with { Quick = true };
                    break;
                case "--postgres":
                    options = options with { Only = new HashSet<string>(PostgresWorkloads, StringComparer.OrdinalIgnoreCase) };
                    break;
                case "--pg-no-fsync":
                    options = options with { PostgresDurable = false };
                    break;
                case "--cairn-only":
                    options = options with { CairnOnly = true };
                    break;
                case "--no-marten":
                    options = options with { NoMarten = true };
                    break;
                case "--child":
                    options = options with { Child = true };
                    break;
                case "--help" or "-h" or "-?":
                    options = options with { Help = true };
                    break;
                case "--only":
                    options = options with { Only = ParseOnly(Value(args, ref i, arg)) };
                    break;
                case "--json":
                    options = options with { JsonPath = Value(args, ref i, arg) };
                    break;
                default:
                    if (arg.StartsWith("--only=", StringComparison.Ordinal))
                    {
                        options = options with { Only = ParseOnly(arg["--only=".Length..]) };
                    }
                    else if (arg.StartsWith("--json=", StringComparison.Ordinal))
                    {
                        options = options with { JsonPath = arg["--json=".Length..] };
                    }
                    else
                    {
                        throw new ArgumentException($"Unknown argument '{arg}'.");
                    }

                    break;
            }
        }

        return options;
    }

    private static string Value(IReadOnlyList<string> args, ref int i, string flag)
    {
        if (i + 1 >= args.Count || args[i + 1].StartsWith("--", StringComparison.Ordinal))
        {
            throw new ArgumentException($"{flag} needs a value.");
        }

        return args[++i];
    }

    private static HashSet<string> ParseOnly(string list)
    {
        var only = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var item in list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!AllWorkloads.Contains(item, StringComparer.OrdinalIgnoreCase))
            {
                throw new ArgumentException($"--only names '{item}', which is not one of {string.Join(", ", AllWorkloads)}.");
            }

            only.Add(item.ToUpperInvariant());
        }

        if (only.Count == 0)
        {
            throw new ArgumentException("--only needs at least one workload, such as --only W1,M2.");
        }

        return only;
    }
}
