using System.Collections;
using System.Reflection;

namespace Cairn.Domain;

/// <summary>
/// Equality by value for what a decider decides: an object's own equality first, and where that says no, the same type
/// with every field equal by value. A record compares a list or array member by reference, so two events equal in
/// every value would otherwise differ. Collections compare by their items whatever their own types: sets without
/// order, dictionaries by key, other sequences in order. Fields marked <see cref="NonSerializedAttribute"/> (a memoised
/// result, a cache) are no part of the value.
/// </summary>
internal static class ValueEquality
{
    private const BindingFlags InstanceFields = BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly;

    /// <summary>True when <paramref name="a"/> and <paramref name="b"/> hold the same values.</summary>
    public static bool Same(object? a, object? b) => Same(a, b, new HashSet<(object, object)>(PairComparer.Instance));

    private static bool Same(object? a, object? b, HashSet<(object, object)> entered)
    {
        if (Equals(a, b))
        {
            return true;
        }

        // JSON held as JSON (a JsonObject built in code reads back with other node types): equal when it says the same.
        if (a is System.Text.Json.Nodes.JsonNode nodeA && b is System.Text.Json.Nodes.JsonNode nodeB)
        {
            return System.Text.Json.Nodes.JsonNode.DeepEquals(nodeA, nodeB);
        }

        if (a is System.Text.Json.JsonElement elementA && b is System.Text.Json.JsonElement elementB)
        {
            return System.Text.Json.JsonElement.DeepEquals(elementA, elementB);
        }

        // Two collections compare by their items whatever their own types (an array and the list JSON reads it back
        // as, a member declared as an interface); anything else must be of one type.
        var collections = a is IEnumerable and not string && b is IEnumerable and not string;
        if (a is null || b is null || a is string || (!collections && (a.GetType() != b.GetType() || a.GetType().IsPrimitive || a.GetType().IsEnum)))
        {
            return false;
        }

        // A pair met again below itself (a cycle) is taken as equal: its other members decide. Only the pairs on the
        // path being compared count: one compared before and found unequal (a set's candidate match) is not equal later.
        var tracked = !a.GetType().IsValueType;
        if (tracked && !entered.Add((a, b)))
        {
            return true;
        }

        try
        {
            return (a, b) switch
            {
                (IDictionary first, IDictionary second) => SameDictionary(first, second, entered),
                (IEnumerable first, IEnumerable second) when IsSet(a.GetType()) || IsSet(b.GetType()) => SameSet(first, second, entered),
                (IEnumerable first, IEnumerable second) => SameSequence(first, second, entered),
                _ => SameFields(a, b, entered),
            };
        }
        finally
        {
            if (tracked)
            {
                entered.Remove((a, b));
            }
        }
    }

    private static bool IsSet(Type type) =>
        type.GetInterfaces().Any(i => i.IsGenericType && (i.GetGenericTypeDefinition() == typeof(ISet<>) || i.GetGenericTypeDefinition() == typeof(IReadOnlySet<>)));

    private static bool SameSequence(IEnumerable a, IEnumerable b, HashSet<(object, object)> entered)
    {
        var left = a.Cast<object?>().ToList();
        var right = b.Cast<object?>().ToList();
        return left.Count == right.Count && left.Zip(right).All(p => Same(p.First, p.Second, entered));
    }

    private static bool SameSet(IEnumerable a, IEnumerable b, HashSet<(object, object)> entered)
    {
        var left = a.Cast<object?>().ToList();
        var right = b.Cast<object?>().ToList();
        if (left.Count != right.Count)
        {
            return false;
        }

        // Items equal by their own equality are matched through a hash first, so that a large set of plain values
        // (ids, names) is compared in linear time; only what is left is matched by value, pair by pair.
        var byHash = new Dictionary<object, int>();
        var nulls = 0;
        foreach (var item in right)
        {
            if (item is null)
            {
                nulls++;
            }
            else
            {
                byHash[item] = byHash.GetValueOrDefault(item) + 1;
            }
        }

        var rest = new List<object?>();
        foreach (var item in left)
        {
            if (item is null && nulls > 0)
            {
                nulls--;
            }
            else if (item is not null && byHash.TryGetValue(item, out var count) && count > 0)
            {
                byHash[item] = count - 1;
            }
            else
            {
                rest.Add(item);
            }
        }

        if (rest.Count == 0)
        {
            return true;
        }

        // Each element left matched to a distinct one of the other set: a set's own comparer may be coarser than by value.
        var unmatched = new List<object?>();
        foreach (var (item, count) in byHash)
        {
            unmatched.AddRange(Enumerable.Repeat<object?>(item, count));
        }

        unmatched.AddRange(Enumerable.Repeat<object?>(null, nulls));
        foreach (var item in rest)
        {
            var at = unmatched.FindIndex(other => Same(item, other, entered));
            if (at < 0)
            {
                return false;
            }

            unmatched.RemoveAt(at);
        }

        return true;
    }

    private static bool SameDictionary(IDictionary a, IDictionary b, HashSet<(object, object)> entered)
    {
        if (a.Count != b.Count)
        {
            return false;
        }

        foreach (DictionaryEntry entry in a)
        {
            if (!b.Contains(entry.Key) || !Same(entry.Value, b[entry.Key], entered))
            {
                return false;
            }
        }

        return true;
    }

    private static bool SameFields(object a, object b, HashSet<(object, object)> entered)
    {
        for (var type = a.GetType(); type is not null && type != typeof(object); type = type.BaseType)
        {
            foreach (var field in type.GetFields(InstanceFields))
            {
                // A field marked as no part of the value (a memoised result, a cache) may differ.
                if (field.IsDefined(typeof(NonSerializedAttribute), inherit: false))
                {
                    continue;
                }

                if (!Same(field.GetValue(a), field.GetValue(b), entered))
                {
                    return false;
                }
            }
        }

        return true;
    }

    /// <summary>Pairs by the references they hold, not by the objects' own equality.</summary>
    private sealed class PairComparer : IEqualityComparer<(object, object)>
    {
        public static readonly PairComparer Instance = new();

        public bool Equals((object, object) x, (object, object) y) => ReferenceEquals(x.Item1, y.Item1) && ReferenceEquals(x.Item2, y.Item2);

        public int GetHashCode((object, object) obj) =>
            HashCode.Combine(System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode(obj.Item1), System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode(obj.Item2));
    }
}
