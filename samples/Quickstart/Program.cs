using Cairn.Cli;
using Quickstart;

var path = Path.Combine(AppContext.BaseDirectory, "quickstart.db");
using var host = QuickstartApp.Build(path, Console.Out);

// Cairn's commands run against the host as built, before it starts: `dotnet run --project samples/Quickstart --
// schemas check --snapshot samples/Quickstart/schemas.json` checks the event types against the saved registry.
if (await CairnCli.TryRunAsync(args, host.Services, Console.Out, Console.Error) is { } code)
{
    return code;
}

// Runs on a fresh file each time, so the output is the same on every run. Nothing has opened it yet: the host has
// not started.
foreach (var file in new[] { path, path + "-wal", path + "-shm" })
{
    File.Delete(file);
}

await QuickstartApp.RunAsync(host);
Console.WriteLine($"The events are in {path}.");
return 0;
