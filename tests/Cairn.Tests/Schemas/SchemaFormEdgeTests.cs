using System.Reflection;
using System.Reflection.Emit;
using System.Text;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Serialization;

namespace Cairn.Tests.Schemas;

/// <summary>Event types registered by assembly, and Cairn's dataschema form written in other cases.</summary>
public sealed class SchemaFormEdgeTests
{
    private static EventSerializer Serializer() => UpcastingTests.Serializer();

    private static RecordedEvent Stored(string json, string? dataSchema) =>
        new(MessageId.New(), "customer-7", 0, new GlobalPosition(1), "customer.registered", "urn:test", DateTimeOffset.UnixEpoch, EventData.JsonContentType, Encoding.UTF8.GetBytes(json))
        {
            DataSchema = dataSchema,
        };

    /// <summary>An assembly of empty classes, each carrying [EventType(name, Version = version)].</summary>
    private static Assembly Classes(params (string Class, string EventType, int Version)[] classes)
    {
        var assembly = AssemblyBuilder.DefineDynamicAssembly(new AssemblyName("Cairn.EdgeClasses" + Guid.NewGuid().ToString("N")), AssemblyBuilderAccess.Run);
        var module = assembly.DefineDynamicModule("Classes");
        var constructor = typeof(EventTypeAttribute).GetConstructor([typeof(string)])!;
        var versionProperty = typeof(EventTypeAttribute).GetProperty(nameof(EventTypeAttribute.Version))!;
        foreach (var (name, eventType, version) in classes)
        {
            var type = module.DefineType(name, TypeAttributes.Public | TypeAttributes.Sealed | TypeAttributes.Class);
            type.SetCustomAttribute(new CustomAttributeBuilder(constructor, [eventType], [versionProperty], [version]));
            type.DefineDefaultConstructor(MethodAttributes.Public);
            type.CreateType();
        }

        return assembly;
    }

    // Two classes of one version are refused when they are the highest two; below the highest, the two are let through
    // silently, and a typed upcaster from either then fails only at start, as a duplicate step.
    [Fact]
    public void an_assembly_with_two_earlier_classes_of_one_version_is_refused()
    {
        var assembly = Classes(("OrderPlacedV3", "edge.order", 3), ("OrderPlacedV2", "edge.order", 2), ("OrderPlacedV2Again", "edge.order", 2));
        var registry = new EventTypeRegistry();

        var error = Assert.Throws<ArgumentException>(() => registry.RegisterAssembly(assembly));

        Assert.Contains("OrderPlacedV2", error.Message, StringComparison.Ordinal);
        Assert.Empty(registry.Registrations);
    }

    // A class marked version 0 (or negative) is refused by Register; kept as an earlier class by RegisterAssembly,
    // it is accepted silently, though no version 0 exists.
    [Fact]
    public void an_assembly_with_an_earlier_class_of_version_zero_is_refused()
    {
        var assembly = Classes(("InvoiceSent", "edge.invoice", 1), ("InvoiceSentV0", "edge.invoice", 0));
        var registry = new EventTypeRegistry();

        Assert.ThrowsAny<ArgumentException>(() => registry.RegisterAssembly(assembly));
        Assert.Empty(registry.Registrations);
    }

    // RFC 8141: "urn" and the namespace identifier are case-insensitive, so this is Cairn's URN naming version 1.
    // It was taken for another producer's URI and read as the current version, past both upcasters.
    [Theory]
    [InlineData("URN:cairn:schema:customer.registered:1")]
    [InlineData("urn:CAIRN:schema:customer.registered:1")]
    public void a_cairn_dataschema_with_another_case_of_urn_or_namespace_is_upcast_from_its_version(string dataSchema)
    {
        var read = Serializer().Deserialize(Stored("""{"name":"Grace Hopper","creditCents":1250}""", dataSchema));

        Assert.Equal(new CustomerRegistered("Grace", "Hopper", new Money(12.5m, "EUR")), read);
    }
}
