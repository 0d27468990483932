using System.Reflection;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;

namespace Cairn.Serialization;

/// <summary>Whether an object comes back whole from the JSON its contract writes.</summary>
internal static class JsonRoundTrip
{
    /// <summary>
    /// The type's members its JSON contract writes or holds but would not read back: public fields the options leave
    /// out (a value tuple's items), auto-properties left out for not being public, and stored properties with neither a setter the contract uses nor a constructor
    /// parameter (a getter-only auto-property, one with a private setter, a collection with no setter). Computed
    /// properties (no backing field) are derived again and lose nothing; a collection or object the options fill in
    /// place (<see cref="JsonObjectCreationHandling.Populate"/>) comes back through its getter; the members' own types
    /// are not looked into.
    /// </summary>
    public static List<string> LostMembers(JsonTypeInfo info)
    {
        var lost = new List<string>();
        if (info.Kind != JsonTypeInfoKind.Object)
        {
            return lost;
        }

        const BindingFlags Instance = BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic;
        var written = new HashSet<string>(StringComparer.Ordinal);
        foreach (var property in info.Properties)
        {
            if (property.AttributeProvider is MemberInfo member)
            {
                written.Add(member.Name);
                var stored = member is FieldInfo || member.DeclaringType?.GetField($"<{member.Name}>k__BackingField", Instance) is not null;
                var populated = !property.PropertyType.IsValueType
                    && (property.ObjectCreationHandling ?? info.PreferredPropertyObjectCreationHandling ?? info.Options.PreferredObjectCreationHandling) == JsonObjectCreationHandling.Populate;
                if (property.Get is not null && property.Set is null && property.AssociatedParameter is null && stored && !populated)
                {
                    lost.Add(member.Name);
                }
            }
        }

        foreach (var field in info.Type.GetFields(BindingFlags.Instance | BindingFlags.Public))
        {
            if (!written.Contains(field.Name) && !field.IsDefined(typeof(JsonIgnoreAttribute), inherit: true))
            {
                lost.Add(field.Name);
            }
        }

        // Auto-properties the contract leaves out for not being public (internal, private, protected): they hold state
        // no JSON carries, so a read-back comparison cannot see it go.
        for (var type = info.Type; type is not null && type != typeof(object); type = type.BaseType)
        {
            foreach (var property in type.GetProperties(Instance | BindingFlags.DeclaredOnly))
            {
                if (!written.Contains(property.Name) && property.GetIndexParameters().Length == 0
                    && type.GetField($"<{property.Name}>k__BackingField", Instance | BindingFlags.DeclaredOnly) is not null
                    && property.GetMethod is { IsPublic: false } && !property.IsDefined(typeof(JsonIgnoreAttribute), inherit: true))
                {
                    lost.Add(property.Name);
                }
            }
        }

        return lost;
    }
}
