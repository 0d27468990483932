using System.Globalization;
using Cairn.Postgres.Child;

// A process of the PostgreSQL backend's multi-process tests. Modes:
//   append <connection string> <schema> <process> <writers> <appends per writer>
//     opens a store, prints READY, waits for a line on standard input, runs the writers of GlobalOrderWriters and
//     prints a line "C <event id>" per committed event, then "DONE <appends> <conflicts>".
//   project <connection string> <schema>
//     hosts the LeasedTally projection until killed: prints "live" once it holds the projection's lease, then
//     "applied N" as it applies.
if (args.Length < 1)
{
    Console.Error.WriteLine("usage: Cairn.Postgres.Child append <connection string> <schema> <process> <writers> <appends per writer>");
    return 2;
}

switch (args[0])
{
    case "append" when args.Length == 6:
        return await GlobalOrderWriters.RunProcessAsync(
            args[1],
            args[2],
            int.Parse(args[3], CultureInfo.InvariantCulture),
            int.Parse(args[4], CultureInfo.InvariantCulture),
            int.Parse(args[5], CultureInfo.InvariantCulture));
    case "project" when args.Length == 3:
        return await LeasedTally.HostAsync(args[1], args[2]);
    default:
        Console.Error.WriteLine($"Unknown mode or wrong arguments: {string.Join(' ', args)}");
        return 2;
}
