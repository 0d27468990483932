using System.Collections.Concurrent;
using System.Diagnostics;

namespace Cairn.RabbitMQ.Tests;

/// <summary>
/// The RabbitMQ the tests run against: the address in <c>CAIRN_RABBITMQ</c>, which <c>./test.sh</c> sets after starting
/// a throwaway broker with <c>tests/rabbitmq.sh</c>. Without it every test fails, saying how to run them: a test of
/// this transport is never skipped for want of a broker, in CI or elsewhere.
/// </summary>
internal static class RabbitMqServer
{
    private static readonly Lazy<string> Resolved = new(Resolve);

    public static string Uri => Resolved.Value;

    /// <summary>A queue or topic name no other test uses.</summary>
    public static string NewName(string prefix) => $"{prefix}-{Guid.NewGuid():N}";

    /// <summary>Runs <paramref name="use"/> on a channel of a connection of its own, as another AMQP client would (publisher confirms on).</summary>
    public static async Task WithChannelAsync(Func<global::RabbitMQ.Client.IChannel, Task> use)
    {
        var factory = new global::RabbitMQ.Client.ConnectionFactory { Uri = new Uri(Uri) };
        await using var connection = await factory.CreateConnectionAsync();
        await using var channel = await connection.CreateChannelAsync(new global::RabbitMQ.Client.CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true));
        await use(channel);
    }

    private static string Resolve()
    {
        var uri = Environment.GetEnvironmentVariable("CAIRN_RABBITMQ");
        if (!string.IsNullOrWhiteSpace(uri))
        {
            return uri;
        }

        if (Environment.GetEnvironmentVariable("CI") == "true")
        {
            throw new InvalidOperationException("CAIRN_RABBITMQ is not set, and in CI no RabbitMQ test may be skipped: run ./test.sh, which starts a throwaway RabbitMQ with tests/rabbitmq.sh.");
        }

        throw new InvalidOperationException(
            "CAIRN_RABBITMQ is not set. Run ./test.sh, or start a throwaway RabbitMQ and run the tests against it: "
            + "eval \"$(tests/rabbitmq.sh start)\" && dotnet test tests/Cairn.RabbitMQ.Tests; tests/rabbitmq.sh stop");
    }

    /// <summary>The script that runs throwaway brokers, found from the test's directory up to the repository root.</summary>
    public static string Script
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "tests", "rabbitmq.sh");
                if (File.Exists(candidate))
                {
                    return candidate;
                }
            }

            throw new InvalidOperationException("tests/rabbitmq.sh was not found above " + AppContext.BaseDirectory);
        }
    }

    /// <summary>Runs the script with arguments and returns its standard output; fails with its standard error.</summary>
    public static async Task<string> RunScriptAsync(params string[] arguments)
    {
        var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Script);
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(3));
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"rabbitmq.sh {string.Join(' ', arguments)} failed ({process.ExitCode}): {await error}");
        }

        return await output;
    }
}

/// <summary>
/// A broker of this test's own, for tests that stop, freeze, block or disconnect it, which would disturb every other
/// test on the shared one. A node takes 10 to 30 s to start on two cores, so one given back running as it started
/// (no TLS, not halted or frozen, its memory alarm not left on) waits for the next test that asks for one; those still
/// waiting are stopped when the test process exits, and <c>./test.sh</c> stops any left by a process that was killed.
/// </summary>
internal sealed class OwnRabbitMq : IAsyncDisposable
{
    private const int MaxIdle = 3;
    private static readonly ConcurrentBag<OwnRabbitMq> Idle = [];
    private static int _exitHooked;
    private bool _alarmSet;

    private OwnRabbitMq(string uri, string? tlsUri, string directory)
    {
        Uri = uri;
        TlsUri = tlsUri;
        Directory = directory;
    }

    public string Uri { get; }

    /// <summary>The TLS listener's address (<c>amqps://…@localhost:port/</c>) when it was started with one.</summary>
    public string? TlsUri { get; }

    public string Directory { get; }

    /// <summary>
    /// A node: one an earlier test gave back, else a new one; with <paramref name="tlsFiles"/> (a directory of
    /// <c>ca.pem</c>, <c>cert.pem</c> and <c>key.pem</c>) always a new one that also listens for TLS, requiring client
    /// certificates signed by that CA.
    /// </summary>
    public static async Task<OwnRabbitMq> StartAsync(string? tlsFiles = null)
    {
        if (tlsFiles is null)
        {
            while (Idle.TryTake(out var idle))
            {
                if (idle.IsRunning())
                {
                    return idle;
                }

                await idle.StopAsync();
            }
        }

        if (Interlocked.Exchange(ref _exitHooked, 1) == 0)
        {
            AppDomain.CurrentDomain.ProcessExit += (_, _) => StopIdleAsync().GetAwaiter().GetResult();
        }

        var exports = await (tlsFiles is null ? RabbitMqServer.RunScriptAsync("start") : RabbitMqServer.RunScriptAsync("start", "--tls", tlsFiles));
        string? Value(string name) => exports.Split('\n').SingleOrDefault(l => l.StartsWith($"export {name}=", StringComparison.Ordinal))?.Split('=', 2)[1].Trim('\'');
        return new OwnRabbitMq(Value("CAIRN_RABBITMQ")!, Value("CAIRN_RABBITMQ_TLS"), Value("CAIRN_RABBITMQ_DIR")!);
    }

    /// <summary>Kills the node (as a crash would), keeping its data.</summary>
    public Task HaltAsync() => RabbitMqServer.RunScriptAsync("halt", Directory);

    /// <summary>Starts the halted node again on the same port, with its data.</summary>
    public Task ResumeAsync() => RabbitMqServer.RunScriptAsync("resume", Directory);

    /// <summary>Runs <c>rabbitmqctl</c> against the node.</summary>
    public async Task<string> CtlAsync(params string[] arguments)
    {
        // Taken for set before the call and for cleared only after it succeeded: a node whose alarm may still be on is
        // stopped, not given to the next test. 0.9 is what tests/rabbitmq.sh configures.
        var lowers = arguments is ["set_vm_memory_high_watermark", "0.9", ..];
        if (arguments is ["set_vm_memory_high_watermark", ..] && !lowers)
        {
            _alarmSet = true;
        }

        var output = await RabbitMqServer.RunScriptAsync(["ctl", Directory, .. arguments]);
        if (lowers)
        {
            _alarmSet = false;
        }

        return output;
    }

    /// <summary>
    /// Stops the node's process without ending it (SIGSTOP): a broker that hangs, its connections open and silent.
    /// Returns once every thread of it has stopped: the signal reaches each thread when it next runs, and on a busy
    /// machine a thread still running could answer a request sent just after the signal.
    /// </summary>
    public async Task FreezeAsync()
    {
        await SignalAsync("STOP");
        var pid = (await File.ReadAllTextAsync(Path.Combine(Directory, "pid"))).Trim();
        await Cairn.Conformance.Support.Wait.UntilAsync(
            () => System.IO.Directory.EnumerateDirectories($"/proc/{pid}/task").All(task =>
            {
                try
                {
                    // The state follows the command name, which is in parentheses and may hold spaces.
                    var stat = File.ReadAllText(Path.Combine(task, "stat"));
                    return stat[(stat.LastIndexOf(')') + 2)..].StartsWith('T');
                }
                catch (IOException)
                {
                    return true; // the thread is gone
                }
            }),
            "every thread of the broker stopped");
    }

    /// <summary>Lets a frozen node run again (SIGCONT).</summary>
    public Task ThawAsync() => SignalAsync("CONT");

    /// <summary>Gives the node back for the next test when it is as it started; stops it otherwise.</summary>
    public async ValueTask DisposeAsync()
    {
        if (TlsUri is null && !_alarmSet && IsRunning() && Idle.Count < MaxIdle)
        {
            Idle.Add(this);
            return;
        }

        await StopAsync();
    }

    private Task StopAsync() => RabbitMqServer.RunScriptAsync("stop", Directory);

    private static Task StopIdleAsync()
    {
        var stops = new List<Task>();
        while (Idle.TryTake(out var idle))
        {
            stops.Add(idle.StopAsync());
        }

        return Task.WhenAll(stops);
    }

    /// <summary>Whether the node's process runs and is not stopped (<see cref="FreezeAsync"/>); a halt removes its pid file.</summary>
    private bool IsRunning()
    {
        try
        {
            var pid = File.ReadAllText(Path.Combine(Directory, "pid")).Trim();
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[(stat.LastIndexOf(')') + 2)..][0] is not ('T' or 't' or 'Z' or 'X');
        }
        catch (IOException)
        {
            return false;
        }
    }

    private async Task SignalAsync(string signal)
    {
        var pid = (await File.ReadAllTextAsync(Path.Combine(Directory, "pid"))).Trim();
        using var kill = Process.Start("kill", ["-" + signal, pid])!;
        await kill.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        if (kill.ExitCode != 0)
        {
            throw new InvalidOperationException($"kill -{signal} {pid} failed ({kill.ExitCode}).");
        }
    }
}
