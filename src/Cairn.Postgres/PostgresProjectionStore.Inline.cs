using System.Collections.Concurrent;
using Cairn.EventStore;
using Cairn.Projections;
using Npgsql;

namespace Cairn.Postgres;

public sealed partial class PostgresProjectionStore
{
    /// <summary>The inline projections attached in this process, by name.</summary>
    private readonly ConcurrentDictionary<string, (Projection Projection, ReadModelApply Apply)> _inline = new(StringComparer.Ordinal);

    /// <summary>This store's hook in the event store's appends; one object, so that it can be taken out again.</summary>
    private readonly Func<PostgresWriteContext, AppendResult, CancellationToken, Task> _applyInline;

    /// <inheritdoc />
    object IInlineScope.InlineScope => _store;

    /// <inheritdoc />
    public void AttachInline(Projection projection, ReadModelApply apply)
    {
        ArgumentNullException.ThrowIfNull(projection);
        ArgumentNullException.ThrowIfNull(apply);
        lock (_inline)
        {
            _inline[projection.Name] = (projection, apply);
            _store.AddAfterAppend(_applyInline);
        }
    }

    /// <inheritdoc />
    public void DetachInline(string projection)
    {
        // With no inline projection left, appends go back to the writer's shared check and write (no hook after each).
        lock (_inline)
        {
            if (_inline.TryRemove(projection, out _) && _inline.IsEmpty)
            {
                _store.RemoveAfterAppend(_applyInline);
            }
        }
    }

    /// <summary>
    /// Applies the attached inline projections whose serving build is live to what an append has just written, in its
    /// transaction, which holds the append lock: appends of every process apply them one after another. Events after
    /// the build's position but before this append (written by a process that does not attach the projection) are
    /// applied first, so the read model never misses one.
    /// </summary>
    private async Task ApplyInlineAsync(PostgresWriteContext context, AppendResult appended, CancellationToken cancellationToken)
    {
        if (_inline.IsEmpty)
        {
            return;
        }

        var attached = _inline.ToArray();
        var live = new List<(string Projection, long Build, long Position, string Shape, int Version)>(attached.Length);
        await using (var select = context.Command($"SELECT projection, id, position, shape, version FROM {_s}.projection_builds WHERE projection = ANY($1) AND serving AND live ORDER BY projection FOR UPDATE"))
        {
            select.Parameters.Add(new NpgsqlParameter { Value = attached.Select(a => a.Key).ToArray() });
            await using var reader = await select.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                live.Add((reader.GetString(0), reader.GetInt64(1), reader.GetInt64(2), reader.GetString(3), reader.GetInt32(4)));
            }
        }

        var head = appended.LastPosition.Value;
        foreach (var (name, build, position, shape, version) in live)
        {
            // A build of another shape (code deployed with a changed shape, which its runner refuses) or of a newer
            // version (this is an old process during a rolling deployment) is left alone: the next append of a process
            // running newer code applies what this one skipped. An older build is this code's to go on with, as its
            // runner does until a rebuild.
            if (position >= head || !_inline.TryGetValue(name, out var inline) || inline.Projection.Shape != shape || version > inline.Projection.Version)
            {
                continue;
            }

            var events = await ReadEventsAsync(context, position, head, inline.Projection.Filter, cancellationToken).ConfigureAwait(false);
            if (events.Count > 0)
            {
                inline.Apply(new PostgresReadModelTransaction(this, context, build), events);
            }

            await SetPositionAsync(context, build, head, cancellationToken).ConfigureAwait(false);
        }
    }
}
