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
    public static bool Same(object? a, object? b) => Same(a, b, new Walk(strict: false));

    /// <summary>
    /// As <see cref="Same(object?, object?)"/>, without taking the word of an application type's own equality (an entity
    /// equal by its id says nothing of the rest it holds) and with collections' comparers compared too: for a snapshot,
    /// which must load the very state it was taken from.
    /// </summary>
    public static bool SameForSnapshot(object? a, object? b) => Same(a, b, new Walk(strict: true));

    private static bool Same(object? a, object? b, Walk walk)
    {
        if (ReferenceEquals(a, b) || ((!walk.Strict || a is null || TrustsOwnEquality(a.GetType())) && Equals(a, b)))
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
        if (tracked && !walk.Entered.Add((a, b)))
        {
            return true;
        }

        try
        {
            return (a, b) switch
            {
                (IEnumerable, IEnumerable) when walk.Strict && !SameComparers(a, b) => false,
                (IDictionary first, IDictionary second) => SameDictionary(first, second, walk),
                (IEnumerable first, IEnumerable second) when IsSet(a.GetType()) || IsSet(b.GetType()) => SameSet(first, second, walk),
                (IEnumerable first, IEnumerable second) => SameSequence(first, second, walk),
                _ => SameFields(a, b, walk),
            };
        }
        finally
        {
            if (tracked)
            {
                walk.Entered.Remove((a, b));
            }
        }
    }

    private static bool IsSet(Type type) =>
        type.GetInterfaces().Any(i => i.IsGenericType && (i.GetGenericTypeDefinition() == typeof(ISet<>) || i.GetGenericTypeDefinition() == typeof(IReadOnlySet<>)));

    private static bool SameSequence(IEnumerable a, IEnumerable b, Walk walk)
    {
        var left = a.Cast<object?>().ToList();
        var right = b.Cast<object?>().ToList();
        return left.Count == right.Count && left.Zip(right).All(p => Same(p.First, p.Second, walk));
    }

    private static bool SameSet(IEnumerable a, IEnumerable b, Walk walk)
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
            else if (item is not null && (!walk.Strict || TrustsOwnEquality(item.GetType())) && byHash.TryGetValue(item, out var count) && count > 0)
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
            var at = unmatched.FindIndex(other => Same(item, other, walk));
            if (at < 0)
            {
                return false;
            }

            unmatched.RemoveAt(at);
        }

        return true;
    }

    private static bool SameDictionary(IDictionary a, IDictionary b, Walk walk)
    {
        if (a.Count != b.Count)
        {
            return false;
        }

        foreach (DictionaryEntry entry in a)
        {
            if (!b.Contains(entry.Key) || !Same(entry.Value, b[entry.Key], walk))
            {
                return false;
            }
        }

        return true;
    }

    private static bool SameFields(object a, object b, Walk walk)
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

                if (!Same(field.GetValue(a), field.GetValue(b), walk))
                {
                    return false;
                }
            }
        }

        return true;
    }

    /// <summary>
    /// Whether a type's own equality is taken as its value's: the runtime's and the framework's types (a string, a
    /// date, a Guid, a tuple of such), not an application's, whose equality may be by identity.
    /// </summary>
    private static bool TrustsOwnEquality(Type type) => Trusted.GetOrAdd(type, static t =>
        t.IsPrimitive || t.IsEnum || (IsFrameworkAssembly(t.Assembly) && (!t.IsGenericType || t.GetGenericArguments().All(TrustsOwnEquality))));

    /// <summary>The answer of <see cref="TrustsOwnEquality"/> per type, asked for every value a snapshot's check meets.</summary>
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<Type, bool> Trusted = new();

    private static bool IsFrameworkAssembly(Assembly assembly) =>
        assembly == typeof(object).Assembly || assembly.GetName().Name is { } name && (name.StartsWith("System.", StringComparison.Ordinal) || name.StartsWith("Microsoft.", StringComparison.Ordinal));

    /// <summary>
    /// Whether two collections that expose a comparer (a dictionary's or set's <c>Comparer</c>) use the same one: a
    /// case-insensitive dictionary read back with the default comparer holds the same items yet behaves otherwise.
    /// </summary>
    private static bool SameComparers(object a, object b)
    {
        var first = ComparerOf(a);
        var second = ComparerOf(b);
        return first is null || second is null || Equals(Plain(first), Plain(second));

        // The ordinal string comparer compares as the default one does.
        static object Plain(object comparer) => ReferenceEquals(comparer, StringComparer.Ordinal) ? EqualityComparer<string>.Default : comparer;
    }

    private static object? ComparerOf(object collection) =>
        collection.GetType().GetProperty("Comparer", BindingFlags.Instance | BindingFlags.Public, null, null, Type.EmptyTypes, null) is { } property
        && property.PropertyType.IsGenericType
        && (property.PropertyType.GetGenericTypeDefinition() == typeof(IEqualityComparer<>) || property.PropertyType.GetGenericTypeDefinition() == typeof(IComparer<>))
            ? property.GetValue(collection)
            : null;

    /// <summary>One comparison's state: the pairs on the path being compared, and whether it is a snapshot's strict one.</summary>
    private sealed class Walk(bool strict)
    {
        public HashSet<(object, object)> Entered { get; } = new(PairComparer.Instance);

        public bool Strict { get; } = strict;
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
