using Cairn.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Cairn.DependencyInjection;

/// <summary>Registers Cairn's health checks with ASP.NET Core's (or any host's) health-check service.</summary>
public static class CairnHealthCheckExtensions
{
    /// <summary>The check of the backend's log: it answers within <see cref="CairnHealthOptions.Timeout"/>.</summary>
    public const string StorageCheck = "cairn-storage";

    /// <summary>The check of the process's queues, their dead letters and the transport (connection, outbox relay).</summary>
    public const string MessagingCheck = "cairn-messaging";

    /// <summary>The check of the hosted subscriptions, projections, consumers and event routes.</summary>
    public const string ProcessingCheck = "cairn-processing";

    /// <summary>
    /// Adds three checks, each tagged <c>cairn</c> and with <paramref name="tags"/>: <see cref="StorageCheck"/>,
    /// <see cref="MessagingCheck"/> and <see cref="ProcessingCheck"/>. What would make a check unhealthy is reported
    /// with <paramref name="failureStatus"/> instead, when given (<see cref="HealthStatus.Degraded"/>, say). Each check
    /// is bounded by its registration's time-out, a few seconds over <see cref="CairnHealthOptions.Timeout"/>.
    /// <code>services.AddHealthChecks().AddCairn(o => o with { MaxQueueAge = TimeSpan.FromMinutes(1) });</code>
    /// </summary>
    public static IHealthChecksBuilder AddCairn(this IHealthChecksBuilder builder, Func<CairnHealthOptions, CairnHealthOptions>? configure = null, IEnumerable<string>? tags = null, HealthStatus? failureStatus = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var options = configure?.Invoke(new CairnHealthOptions()) ?? new CairnHealthOptions();
        options.Validate();
        var all = new[] { "cairn" }.Concat(tags ?? []).Distinct(StringComparer.Ordinal).ToArray();

        // A backstop: the checks end within about one Timeout on their own (their reads run at once, each bounded).
        var timeout = options.Timeout + TimeSpan.FromSeconds(5);
        builder.Add(new HealthCheckRegistration(StorageCheck, sp => new Diagnostics.StorageHealthCheck(sp, options), failureStatus, all, timeout));
        builder.Add(new HealthCheckRegistration(MessagingCheck, sp => new Diagnostics.MessagingHealthCheck(sp, options), failureStatus, all, timeout));
        builder.Add(new HealthCheckRegistration(ProcessingCheck, sp => new Diagnostics.ProcessingHealthCheck(sp, options), failureStatus, all, timeout));
        return builder;
    }
}
