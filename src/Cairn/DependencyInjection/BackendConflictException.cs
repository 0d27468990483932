namespace Cairn.DependencyInjection;

/// <summary>
/// <c>AddCairn</c> was given two backends, or one backend twice with different settings (a module's own
/// <c>UseSqlite(...)</c> naming another file, say): the later would silently replace the earlier, so neither is chosen.
/// </summary>
public sealed class BackendConflictException : InvalidOperationException
{
    /// <summary>Creates the exception for the backend configured first and the one configured after it.</summary>
    public BackendConflictException(string backend, string? settings, string otherBackend, string? otherSettings)
        : base(backend == otherBackend
            ? $"Cairn is already configured with the {backend} backend ({settings}), and it is configured again with other settings ({otherSettings}); configure it once, or with the same settings."
            : $"Cairn is already configured with the {backend} backend, and it is configured again with the {otherBackend} backend; choose one.")
    {
        Backend = backend;
        Settings = settings;
        OtherBackend = otherBackend;
        OtherSettings = otherSettings;
    }

    /// <summary>The backend configured first.</summary>
    public string Backend { get; }

    /// <summary>The settings it was configured with (secrets left out), or null when the backend gave none.</summary>
    public string? Settings { get; }

    /// <summary>The backend configured after it.</summary>
    public string OtherBackend { get; }

    /// <summary>The settings that one was configured with (secrets left out), or null when it gave none.</summary>
    public string? OtherSettings { get; }
}
