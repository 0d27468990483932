using System.Text;
using System.Text.Json;
using Cairn.EventStore;

namespace Cairn.Sqlite;

/// <summary>Named parameters collected while a query is built, bound once the statement is prepared.</summary>
internal sealed class SqlParameters : List<KeyValuePair<string, object>>
{
    public void Add(string name, object value) => Add(new KeyValuePair<string, object>(name, value));

    public void BindTo(RawStatement statement)
    {
        foreach (var (name, value) in this)
        {
            statement.BindValue(statement.IndexOf(name), value);
        }
    }
}

/// <summary>Builds the SQL predicates of filters and tag queries, with parameters, never with spliced values.</summary>
internal static class SqliteQueries
{
    /// <summary>Excludes Cairn's own events: only they have types starting with <c>$</c>.</summary>
    private const string UserEventsOnly = "e.type_id NOT IN (SELECT id FROM cairn_names WHERE value >= '$' AND value < '%')";

    /// <summary>Appends the predicate of an <see cref="EventFilter"/>, starting with <c> AND</c> when it has one.</summary>
    public static void AppendFilter(StringBuilder sql, SqlParameters parameters, EventFilter filter)
    {
        if (!filter.IncludeSystemEvents)
        {
            sql.Append(" AND ").Append(UserEventsOnly);
        }

        if (filter.Stream is { } stream)
        {
            sql.Append(" AND e.stream_id = (SELECT id FROM cairn_streams WHERE name = $f_stream)");
            parameters.Add("$f_stream", stream);
        }

        // A read of $all pages in position order from a position. An index on another column (the stream's or the
        // type's) would make SQLite fetch every matching event after that position and sort them, for each page: the
        // unary + keeps these lists to checks on a scan in position order. One type is the exception: its index is in
        // position order already.
        if (filter.Category is { } category)
        {
            sql.Append(" AND +e.stream_id IN (SELECT id FROM cairn_streams WHERE category = $f_category)");
            parameters.Add("$f_category", category);
        }

        if (filter.EventTypes is [var single])
        {
            sql.Append(" AND e.type_id = (SELECT id FROM cairn_names WHERE value = $f_type0)");
            parameters.Add("$f_type0", single);
        }
        else if (filter.EventTypes is { } types)
        {
            sql.Append(" AND +e.type_id IN (SELECT id FROM cairn_names WHERE value IN ").Append(ListOf("$f_types", types, parameters)).Append(')');
        }
    }

    /// <summary>
    /// A list of values bound as one parameter, a JSON array read back with <c>json_each</c>: SQLite takes at most
    /// 32,766 parameters in a statement, and a filter or query may name tens of thousands of types or tags.
    /// </summary>
    private static string ListOf(string name, IEnumerable<string> values, SqlParameters parameters)
    {
        parameters.Add(name, JsonSerializer.Serialize(values.ToArray(), CairnJsonContext.Default.StringArray));
        return $"(SELECT value FROM json_each({name}))";
    }

    /// <summary>Past this many tags, an item's tags are matched by one counting term rather than a term per tag.</summary>
    private const int ManyTags = 16;

    /// <summary>Appends the predicate of a tag and type query over <c>cairn_events e</c>, user events only.</summary>
    public static void AppendQueryPredicate(StringBuilder sql, SqlParameters parameters, EventQuery query)
    {
        sql.Append(UserEventsOnly);
        if (query.MatchesAll)
        {
            return;
        }

        // Items of one tag (the usual shape of a decision's query: one per entity it reads) are one term per set of
        // types they name, their tags one parameter: (type in T and tag a) or (type in T and tag b) is type in T and
        // tag in (a, b). The others are a term each.
        var oneTag = query.Items.Where(i => i.Tags.Count == 1)
            .GroupBy(i => string.Join('\n', i.Types.Order(StringComparer.Ordinal)), StringComparer.Ordinal)
            .Select(g => (g.First().Types, Tags: g.Select(i => i.Tags[0]).ToList()))
            .ToList();
        var items = query.Items.Where(i => i.Tags.Count != 1).ToList();
        sql.Append(" AND ");
        AppendBalanced(sql, 0, items.Count + oneTag.Count, " OR ", i =>
        {
            if (i >= items.Count)
            {
                var group = i - items.Count;
                var (types, tags) = oneTag[group];
                var tagTerm = "e.position IN (SELECT position FROM cairn_event_tags WHERE tag IN " + ListOf($"$q_tags{group}", tags, parameters) + ")";
                if (types.Count == 0)
                {
                    sql.Append(tagTerm);
                    return;
                }

                sql.Append("(e.type_id IN (SELECT id FROM cairn_names WHERE value IN ").Append(ListOf($"$q_types{group}", types, parameters)).Append(") AND ").Append(tagTerm).Append(')');
                return;
            }

            var item = items[i];
            if (item.Tags.Count > ManyTags)
            {
                // Many tags, all of which an event must carry: one term counting them, rather than a term per tag.
                var distinct = item.Tags.Distinct(StringComparer.Ordinal).ToList();
                sql.Append("(e.position IN (SELECT position FROM cairn_event_tags WHERE tag IN ").Append(ListOf($"$q{i}_tags", distinct, parameters))
                    .Append(" GROUP BY position HAVING count(*) = ").Append(distinct.Count.ToString(System.Globalization.CultureInfo.InvariantCulture)).Append(')');
                if (item.Types.Count > 0)
                {
                    sql.Append(" AND e.type_id IN (SELECT id FROM cairn_names WHERE value IN ").Append(ListOf($"$q{i}_types", item.Types, parameters)).Append(')');
                }

                sql.Append(')');
                return;
            }

            var terms = item.Tags.Count + (item.Types.Count > 0 ? 1 : 0);
            AppendBalanced(sql, 0, terms, " AND ", t =>
            {
                if (item.Types.Count > 0 && t == 0)
                {
                    sql.Append("e.type_id IN (SELECT id FROM cairn_names WHERE value IN ").Append(ListOf($"$q{i}_types", item.Types, parameters)).Append(')');
                    return;
                }

                var tag = t - (item.Types.Count > 0 ? 1 : 0);
                var tagName = $"$q{i}_tag{tag}";
                sql.Append("e.position IN (SELECT position FROM cairn_event_tags WHERE tag = ").Append(tagName).Append(')');
                parameters.Add(tagName, item.Tags[tag]);
            });
        });
    }

    /// <summary>
    /// Appends terms <paramref name="from"/> to <paramref name="from"/> + <paramref name="count"/> - 1 joined by
    /// <paramref name="op"/>, parenthesised as a balanced tree: SQLite parses a plain chain as a tree as deep as it is
    /// long and refuses one past 1,000 terms, where a balanced one is as deep as the count's logarithm.
    /// </summary>
    private static void AppendBalanced(StringBuilder sql, int from, int count, string op, Action<int> term)
    {
        if (count == 1)
        {
            term(from);
            return;
        }

        var half = count / 2;
        sql.Append('(');
        AppendBalanced(sql, from, half, op, term);
        sql.Append(op);
        AppendBalanced(sql, from + half, count - half, op, term);
        sql.Append(')');
    }
}
