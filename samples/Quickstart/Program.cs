using Quickstart;

// Runs on a fresh file each time, so the output is the same on every run.
var path = Path.Combine(AppContext.BaseDirectory, "quickstart.db");
foreach (var file in new[] { path, path + "-wal", path + "-shm" })
{
    File.Delete(file);
}

await QuickstartApp.RunAsync(path, Console.Out);
Console.WriteLine($"The events are in {path}.");
