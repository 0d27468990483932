using Cairn.Envelopes;
using Cairn.Messaging;
using RabbitMQ.Client;

namespace Cairn.RabbitMQ;

/// <summary>How Cairn talks to RabbitMQ: where it is, how many deliveries it takes ahead, and how its relay paces itself.</summary>
public sealed record RabbitMqOptions
{
    /// <summary>The broker's address, <c>amqp://user:password@host:port/vhost</c> (or <c>amqps://</c>).</summary>
    public required Uri Uri { get; init; }

    /// <summary>
    /// Further nodes of the broker's cluster, each <c>host</c> or <c>host:port</c> (an IPv6 address in brackets; the
    /// <see cref="Uri"/>'s port when left out); none by default. With them, the connection goes to a reachable node among these and the
    /// <see cref="Uri"/>'s own host, in random order, and when its node goes down it recovers onto another. Credentials,
    /// virtual host and TLS are the <see cref="Uri"/>'s for every node.
    /// </summary>
    public IReadOnlyList<string> ClusterNodes { get; init; } = [];

    /// <summary>
    /// Called on the RabbitMQ.Client connection factory once Cairn has set it up from these options, before each of the
    /// process's two connections (consuming and publishing) opens, and again after a first attempt that failed: for
    /// what an address cannot say, such as TLS trust and client certificates (<c>Ssl</c>), a credentials provider for
    /// tokens (<c>CredentialsProvider</c>), the authentication mechanism (<c>EXTERNAL</c> for certificates) or
    /// time-outs. Cairn has already made TLS check the server's name; the callback may accept a mismatch again. It may
    /// change Cairn's own settings too, except automatic and topology recovery, which Cairn's consumers and relay need
    /// and which are turned on again after it. With <see cref="ClusterNodes"/>, each node gets the TLS settings the
    /// factory has after the call, and a server name the call sets stands for every node. Null by default.
    /// </summary>
    public Action<ConnectionFactory>? ConfigureConnectionFactory { get; init; }

    /// <summary>
    /// Put before every queue name in RabbitMQ (<c>billing</c> becomes <c>&lt;prefix&gt;billing</c>), so that several
    /// applications, or tests, share a virtual host without sharing queues. Empty by default; at most 64 characters.
    /// </summary>
    public string QueuePrefix { get; init; } = "";

    /// <summary>The name this process's connection shows in RabbitMQ's tools.</summary>
    public string ClientName { get; init; } = "cairn";

    /// <summary>
    /// How many unacknowledged deliveries RabbitMQ sends one queue's reader ahead of its receives (AMQP prefetch):
    /// the bound on the deliveries buffered in this process per queue, leased or not. 64 by default (1–65,535).
    /// </summary>
    public ushort Prefetch { get; init; } = 64;

    /// <summary>
    /// How many publishes may await their confirm at once on the publishing channel. RabbitMQ.Client starts slowing
    /// publishes down once fewer than <see cref="ConfirmThrottlingPercentage"/> of these are free, so the relay keeps its
    /// publishes in flight below that point: with the defaults, 512 at once, two full batches of
    /// <see cref="RelayBatchSize"/>. 1,024 by default.
    /// </summary>
    public int MaxOutstandingConfirms { get; init; } = 1024;

    /// <summary>
    /// The share of <see cref="MaxOutstandingConfirms"/> that must stay free for publishes not to be slowed down (1–100):
    /// the relay keeps at most the rest in flight. 50 by default, as RabbitMQ.Client's.
    /// </summary>
    public int ConfirmThrottlingPercentage { get; init; } = 50;

    /// <summary>
    /// How many outbox messages the relay takes and publishes at once, per queue (1–1,000); 256 by default. Several
    /// batches are in flight at once while their publishes fit below <see cref="MaxOutstandingConfirms"/>'s throttling point.
    /// </summary>
    public int RelayBatchSize { get; init; } = 256;

    /// <summary>How long the relay's receive from an empty outbox waits for a message before it looks again; 1 s by default.</summary>
    public TimeSpan RelayPollWait { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// The relay's lease on the outbox rows it publishes, whatever the queue's own <see cref="QueueDefinition.Lease"/>:
    /// short enough that another process's relay soon publishes what a dead relay took, and kept (extended every half
    /// of it) while RabbitMQ's confirms are awaited, so that a resource alarm longer than it does not have the row
    /// taken and published again. One minute by default (1 s – 1 hour).
    /// </summary>
    public TimeSpan RelayLease { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>
    /// How long the relay waits for RabbitMQ to confirm a batch's publishes while publishing is not blocked by a resource
    /// alarm (1 s – 1 hour); 30 s by default. Past it (a quorum queue that lost its majority takes publishes and never
    /// confirms them), the publishing connection is aborted, the unconfirmed messages go back to the outbox, and they
    /// are published again after a pause; so is every other queue's batch awaiting its confirms then, at least once.
    /// </summary>
    public TimeSpan ConfirmTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How often the relay looks for outbox queues that another process declared; 5 s by default.</summary>
    public TimeSpan RelayRescanInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>The first pause after a failure to reach RabbitMQ; doubled on each failure up to <see cref="MaxReconnectDelay"/>. 200 ms by default.</summary>
    public TimeSpan ReconnectDelay { get; init; } = TimeSpan.FromMilliseconds(200);

    /// <summary>The longest pause between attempts to reach RabbitMQ; 10 s by default.</summary>
    public TimeSpan MaxReconnectDelay { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// The largest message body the broker takes (its <c>max_message_size</c>): 128 MiB by default, RabbitMQ 3.x's own
    /// default; set it to what the broker has (RabbitMQ 4.x's default is 16 MiB). A queue in RabbitMQ whose
    /// <see cref="QueueDefinition.MaxMessageSize"/> is larger is refused at its declaration, since RabbitMQ would close
    /// the publishing channel on such a message.
    /// </summary>
    public int MaxMessageSize { get; init; } = 128 * 1024 * 1024;

    /// <summary>
    /// Every setting, without secrets (the address's user name and password; of the connection factory's delegate,
    /// only whether there is one): a second <c>UseRabbitMq</c> must repeat them, since its transport would replace the first's.
    /// </summary>
    internal string Settings => string.Create(
        System.Globalization.CultureInfo.InvariantCulture,
        $"{WithoutUserInfo(Uri)}, credentials {Fingerprint(Uri is { IsAbsoluteUri: true } ? Uri.UserInfo : null)}, QueuePrefix '{QueuePrefix}', ClusterNodes [{string.Join(", ", ClusterNodes ?? [])}], ClientName '{ClientName}', "
        + $"Prefetch {Prefetch}, MaxOutstandingConfirms {MaxOutstandingConfirms}, ConfirmThrottlingPercentage {ConfirmThrottlingPercentage}, "
        + $"RelayBatchSize {RelayBatchSize}, RelayPollWait {RelayPollWait}, RelayLease {RelayLease}, ConfirmTimeout {ConfirmTimeout}, "
        + $"RelayRescanInterval {RelayRescanInterval}, ReconnectDelay {ReconnectDelay}, MaxReconnectDelay {MaxReconnectDelay}, "
        + $"MaxMessageSize {MaxMessageSize}, ConfigureConnectionFactory {(ConfigureConnectionFactory is null ? "none" : "set")}");

    /// <summary>A key of this process's own, so that a credentials' fingerprint says only whether two are the same.</summary>
    private static readonly byte[] FingerprintKey = System.Security.Cryptography.RandomNumberGenerator.GetBytes(32);

    /// <summary>
    /// Tells two user names and passwords apart without printing or revealing them: a keyed hash, its key never out of
    /// this process, so the value cannot be tried against guesses elsewhere.
    /// </summary>
    private static string Fingerprint(string? userInfo) =>
        string.IsNullOrEmpty(userInfo)
            ? "none"
            : Convert.ToHexStringLower(System.Security.Cryptography.HMACSHA256.HashData(FingerprintKey, System.Text.Encoding.UTF8.GetBytes(userInfo)))[..12];

    /// <summary>An address as an error may print it: without its user name and password.</summary>
    private static string WithoutUserInfo(Uri? uri) =>
        uri is null ? "" : uri.IsAbsoluteUri ? uri.GetComponents(UriComponents.AbsoluteUri & ~UriComponents.UserInfo, UriFormat.UriEscaped) : uri.ToString();

    /// <summary>Refuses impossible settings with <see cref="InvalidMessageException"/> naming the setting.</summary>
    public void Validate()
    {
        if (Uri is null || !Uri.IsAbsoluteUri || (Uri.Scheme != "amqp" && Uri.Scheme != "amqps"))
        {
            throw new InvalidMessageException($"RabbitMqOptions.Uri is '{WithoutUserInfo(Uri)}'; it must be an amqp:// or amqps:// address.");
        }

        try
        {
            // What the first connection would meet, met here: RabbitMQ.Client refuses some addresses the scheme allows
            // (a virtual host path of several segments).
            _ = new ConnectionFactory { Uri = Uri };
        }
        catch (ArgumentException ex)
        {
            throw new InvalidMessageException($"RabbitMqOptions.Uri is '{WithoutUserInfo(Uri)}', which RabbitMQ.Client refuses: {ex.Message}");
        }

        Check(ClusterNodes is not null, nameof(ClusterNodes), "is null");
        foreach (var node in ClusterNodes!)
        {
            Check(TryParseNode(node, Uri.Port, out _), nameof(ClusterNodes), $"has '{node}'; each node must be a host name or address (IPv6 in brackets), with a port (1-65535) or without");
        }

        Check(QueuePrefix is not null && QueuePrefix.Length <= 64 && !StoredText.Refuses(QueuePrefix) && !QueuePrefix.StartsWith("amq.", StringComparison.Ordinal), nameof(QueuePrefix), $"is '{QueuePrefix}'; it must be at most 64 characters, without {StoredText.Refused}, and not start with 'amq.' (RabbitMQ's own)");
        Check(!string.IsNullOrWhiteSpace(ClientName), nameof(ClientName), "is empty");
        Check(Prefetch >= 1, nameof(Prefetch), $"is {Prefetch}; it must be between 1 and 65535");
        Check(MaxOutstandingConfirms is >= 1 and <= 65_536, nameof(MaxOutstandingConfirms), $"is {MaxOutstandingConfirms}; it must be between 1 and 65536");
        Check(ConfirmThrottlingPercentage is >= 1 and <= 100, nameof(ConfirmThrottlingPercentage), $"is {ConfirmThrottlingPercentage}; it must be between 1 and 100");
        Check(RelayBatchSize is >= 1 and <= 1000, nameof(RelayBatchSize), $"is {RelayBatchSize}; it must be between 1 and 1000");
        Check(RelayPollWait >= TimeSpan.FromMilliseconds(1) && RelayPollWait <= TimeSpan.FromMinutes(5), nameof(RelayPollWait), $"is {RelayPollWait}; it must be between 1 ms and 5 minutes");
        Check(RelayRescanInterval >= TimeSpan.FromMilliseconds(10) && RelayRescanInterval <= TimeSpan.FromDays(1), nameof(RelayRescanInterval), $"is {RelayRescanInterval}; it must be between 10 ms and 1 day");
        Check(MaxReconnectDelay <= TimeSpan.FromHours(1), nameof(MaxReconnectDelay), $"is {MaxReconnectDelay}; it must be at most 1 hour");
        Check(ReconnectDelay >= TimeSpan.FromMilliseconds(1) && ReconnectDelay <= MaxReconnectDelay, nameof(ReconnectDelay), $"is {ReconnectDelay}; it must be at least 1 ms and at most MaxReconnectDelay ({MaxReconnectDelay})");
        Check(RelayLease >= TimeSpan.FromSeconds(1) && RelayLease <= TimeSpan.FromHours(1), nameof(RelayLease), $"is {RelayLease}; it must be between 1 s and 1 hour");
        Check(ConfirmTimeout >= TimeSpan.FromSeconds(1) && ConfirmTimeout <= TimeSpan.FromHours(1), nameof(ConfirmTimeout), $"is {ConfirmTimeout}; it must be between 1 s and 1 hour");
        Check(MaxMessageSize >= 1024, nameof(MaxMessageSize), $"is {MaxMessageSize}; it must be at least 1 KiB (RabbitMQ's max_message_size)");
    }

    /// <summary>
    /// Every node to connect to, the <see cref="Uri"/>'s host first, each once, as <c>(host, port)</c>.
    /// </summary>
    internal IReadOnlyList<(string Host, int Port)> Nodes()
    {
        // AMQP's default port spelled out, so a node named with it and one without are the same node.
        var defaultPort = Uri.Port != -1 ? Uri.Port : Uri.Scheme == "amqps" ? 5671 : 5672;
        var nodes = new List<(string Host, int Port)> { (Uri.IdnHost, defaultPort) };
        foreach (var node in ClusterNodes)
        {
            if (TryParseNode(node, defaultPort, out var parsed) && !nodes.Contains(parsed))
            {
                nodes.Add(parsed);
            }
        }

        return nodes;
    }

    private static bool TryParseNode(string? node, int defaultPort, out (string Host, int Port) parsed)
    {
        parsed = default;
        if (string.IsNullOrWhiteSpace(node) || node.Contains('/', StringComparison.Ordinal) || node.Contains('@', StringComparison.Ordinal)
            || !Uri.TryCreate("amqp://" + node.Trim(), UriKind.Absolute, out var uri) || uri.Host.Length == 0)
        {
            return false;
        }

        // A port left out reads as -1 (amqp is no scheme .NET knows): the Uri's port then, -1 meaning AMQP's default.
        var port = uri.Port == -1 ? defaultPort : uri.Port;
        if (port == 0 || uri.AbsolutePath != "/" || uri.Query.Length > 0 || uri.Fragment.Length > 0)
        {
            return false;
        }

        parsed = (uri.IdnHost, port);
        return true;
    }

    private static void Check(bool ok, string setting, string fault)
    {
        if (!ok)
        {
            throw new InvalidMessageException($"RabbitMqOptions.{setting} {fault}.");
        }
    }
}
