namespace Cairn.Schemas;

internal sealed partial class SchemaComparer
{
    /// <summary>The path being compared and the differences found there.</summary>
    private sealed class Context(string path)
    {
        public string Path { get; private set; } = path;

        public List<Difference> Differences { get; } = [];

        public bool IsCompatible => Differences.TrueForAll(d => d.IsCompatible);

        /// <summary>A fresh context at the same path, whose differences are kept or dropped by the caller.</summary>
        public Context Sub() => new(Path);

        public Scope Enter(string segment) => Enter([segment]);

        public Scope Enter(params ReadOnlySpan<string> segments)
        {
            var previous = Path;
            foreach (var segment in segments)
            {
                Path += "/" + segment;
            }

            return new Scope(this, previous);
        }

        public void Add(SchemaChangeKind kind, string original, string update) => Differences.Add(new(Path, kind, original, update));

        public void Add(string segment, SchemaChangeKind kind, string original, string update) =>
            Differences.Add(new(Path + "/" + segment, kind, original, update));

        public void AddRange(List<Difference> differences) => Differences.AddRange(differences);

        /// <summary>Adds differences found relative to a pair compared at this path.</summary>
        public void AddRebased(List<Difference> relative)
        {
            if (Path.Length == 0)
            {
                Differences.AddRange(relative);
                return;
            }

            foreach (var difference in relative)
            {
                Differences.Add(difference with { Path = Path + difference.Path });
            }
        }

        /// <summary>Restores the path on dispose; the default scope (no segment entered) restores nothing.</summary>
        public readonly struct Scope(Context? context, string previous) : IDisposable
        {
            public void Dispose()
            {
                if (context is not null)
                {
                    context.Path = previous;
                }
            }
        }
    }
}
