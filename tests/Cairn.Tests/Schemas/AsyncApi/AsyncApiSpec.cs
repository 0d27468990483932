using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Json.Schema;

namespace Cairn.Tests.Schemas.AsyncApi;

/// <summary>
/// AsyncAPI's own JSON Schema of AsyncAPI 3.0.0, as <c>tests/asyncapi-spec.sh</c> installs it: the path comes from
/// <c>CAIRN_ASYNCAPI_SCHEMA</c> (set by <c>test.sh</c>); without it, CI fails, and a developer's run calls the script.
/// </summary>
internal static class AsyncApiSpec
{
    public const string Variable = "CAIRN_ASYNCAPI_SCHEMA";

    private static readonly Lazy<JsonSchema> Schema = new(Load);

    /// <summary>The keys the AsyncAPI specification allows in the maps of <c>components</c>.</summary>
    public static readonly Regex ComponentKey = new(@"^[a-zA-Z0-9\.\-_]+$", RegexOptions.CultureInvariant);

    /// <summary>The errors of a document against the AsyncAPI 3.0.0 schema, one a line; empty when it is valid.</summary>
    public static string Errors(JsonNode document)
    {
        using var parsed = JsonDocument.Parse(document.ToJsonString());
        var results = Schema.Value.Evaluate(parsed.RootElement, new EvaluationOptions { OutputFormat = OutputFormat.List, RequireFormatValidation = true });
        if (results.IsValid)
        {
            return "";
        }

        var errors = new StringBuilder();
        foreach (var detail in results.Details ?? [])
        {
            foreach (var (keyword, message) in detail.Errors ?? new Dictionary<string, string>())
            {
                errors.Append(detail.InstanceLocation).Append(" (").Append(detail.EvaluationPath).Append(") ").Append(keyword).Append(": ").AppendLine(message);
            }
        }

        return errors.Length > 0 ? errors.ToString() : "invalid, with no error listed";
    }

    private static JsonSchema Load()
    {
        var path = Environment.GetEnvironmentVariable(Variable);
        if (string.IsNullOrEmpty(path))
        {
            if (Environment.GetEnvironmentVariable("CI") == "true")
            {
                throw new InvalidOperationException($"{Variable} is not set: in CI, test.sh sets it from tests/asyncapi-spec.sh, and no AsyncAPI test may run without the schema.");
            }

            path = RunScript();
        }

        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"{Variable} names {path}, which does not exist.", path);
        }

        // A registry of its own: the bundle's $ids never meet another schema's.
        return JsonSchema.FromText(File.ReadAllText(path), new BuildOptions { SchemaRegistry = new SchemaRegistry() });
    }

    private static string RunScript()
    {
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "Cairn.slnx")))
        {
            root = root.Parent;
        }

        var script = root is null ? null : Path.Combine(root.FullName, "tests", "asyncapi-spec.sh");
        if (script is null || !File.Exists(script))
        {
            throw new InvalidOperationException($"{Variable} is not set and tests/asyncapi-spec.sh was not found above {AppContext.BaseDirectory}.");
        }

        var start = new ProcessStartInfo("bash", [script]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = Process.Start(start) ?? throw new InvalidOperationException("bash could not be started.");
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"tests/asyncapi-spec.sh failed ({process.ExitCode}): {stderr.Result}");
        }

        return stdout.Trim();
    }
}
