using Cairn.Conformance.Support;
using Cairn.Serialization;

namespace Cairn.Tests.Serialization;

public sealed class EventTypeRegistryTests
{
    private sealed record Plain(int N);

    private sealed record Other(int N);

    [EventType("test.attributed")]
    private sealed record Attributed(string Text);

    [EventType("test.versioned", Version = 2)]
    private sealed record Versioned(int N);

    // The class says it is version 2 of its type; registered by name (the overload's version defaulting to 1), it was
    // registered silently as version 1: its writes named version 1, and events of version 2 were refused as newer.
    [Fact]
    public void a_class_registered_by_name_keeps_the_version_its_attribute_declares()
    {
        Assert.Equal(2, new EventTypeRegistry().Register<Versioned>("test.versioned").GetVersion("test.versioned"));
        Assert.Equal(2, new EventTypeRegistry().Register(typeof(Versioned), "test.versioned").GetVersion("test.versioned"));
    }

    // The attribute's version 2 was taken for another name too: that name's first version was written as 2, a version
    // that skips, which the schema check refuses.
    [Fact]
    public void a_class_registered_under_another_name_than_its_attributes_starts_at_version_1()
    {
        Assert.Equal(1, new EventTypeRegistry().Register<Versioned>("test.renamed").GetVersion("test.renamed"));
    }

    [Fact]
    public void a_version_given_explicitly_wins_over_the_attributes()
    {
        Assert.Equal(3, new EventTypeRegistry().Register<Versioned>("test.versioned", version: 3).GetVersion("test.versioned"));
    }

    [Fact]
    public void a_type_registered_by_name_maps_both_ways()
    {
        var registry = new EventTypeRegistry().Register<Plain>("test.plain");

        Assert.Equal("test.plain", registry.GetName(typeof(Plain)));
        Assert.Equal(typeof(Plain), registry.GetType("test.plain"));
        Assert.True(registry.TryGetType("test.plain", out var type));
        Assert.Equal(typeof(Plain), type);
        Assert.True(registry.TryGetName(typeof(Plain), out var name));
        Assert.Equal("test.plain", name);
        Assert.Equal(typeof(Plain), Assert.Single(registry.Registrations).Value);
    }

    [Fact]
    public void a_type_registers_under_the_name_of_its_attribute()
    {
        var registry = new EventTypeRegistry().Register<Attributed>();
        Assert.Equal("test.attributed", registry.GetName(typeof(Attributed)));

        var byType = new EventTypeRegistry().Register(typeof(Attributed));
        Assert.Equal(typeof(Attributed), byType.GetType("test.attributed"));
    }

    [Fact]
    public void a_type_without_the_attribute_cannot_register_by_attribute()
    {
        var ex = Assert.Throws<ArgumentException>(() => new EventTypeRegistry().Register<Plain>());
        Assert.Contains("[EventType]", ex.Message, StringComparison.Ordinal);
    }

    // One of an assembly's names already taken by another class: nothing of the assembly is registered, where the
    // names grouped before the conflict were registered and those after were not.
    [Fact]
    public void an_assembly_with_a_name_registered_otherwise_already_registers_none_of_its_types()
    {
        var registry = new EventTypeRegistry().Register<Plain>("checkout.requested");

        var refused = Assert.Throws<ArgumentException>(() => registry.RegisterAssembly(typeof(BankAccount).Assembly));

        Assert.Contains("checkout.requested", refused.Message, StringComparison.Ordinal);
        Assert.Equal(["checkout.requested"], registry.Registrations.Keys);
    }

    [Fact]
    public void an_assembly_registers_every_attributed_type_in_it()
    {
        var registry = new EventTypeRegistry().RegisterAssembly(typeof(BankAccount).Assembly);

        Assert.Equal(typeof(AccountOpened), registry.GetType("account.opened"));
        Assert.Equal(typeof(Deposited), registry.GetType("account.deposited"));
        Assert.Equal(typeof(Withdrawn), registry.GetType("account.withdrawn"));
        Assert.Equal(typeof(AccountClosed), registry.GetType("account.closed"));
        // One registration per name: where classes of several versions share a name, the highest version's.
        var attributed = typeof(BankAccount).Assembly.GetTypes()
            .Select(t => t.GetCustomAttributes(typeof(EventTypeAttribute), false).OfType<EventTypeAttribute>().SingleOrDefault()?.Name)
            .OfType<string>()
            .Distinct(StringComparer.Ordinal)
            .Count();
        Assert.Equal(attributed, registry.Registrations.Count);
        Assert.Equal(4, registry.Registrations.Keys.Count(name => name.StartsWith("account.", StringComparison.Ordinal)));
    }

    [Fact]
    public void registering_the_same_pair_again_is_harmless()
    {
        var registry = new EventTypeRegistry().Register<Plain>("test.plain").Register<Plain>("test.plain");
        Assert.Single(registry.Registrations);
    }

    [Fact]
    public void a_name_taken_by_another_type_is_refused()
    {
        var registry = new EventTypeRegistry().Register<Plain>("test.plain");

        var ex = Assert.Throws<ArgumentException>(() => registry.Register<Other>("test.plain"));

        Assert.Contains("already registered", ex.Message, StringComparison.Ordinal);
        Assert.Equal(typeof(Plain), registry.GetType("test.plain"));
        Assert.False(registry.TryGetName(typeof(Other), out _));
    }

    [Fact]
    public void a_second_name_for_a_type_is_refused()
    {
        var registry = new EventTypeRegistry().Register<Plain>("test.plain");

        Assert.Throws<ArgumentException>(() => registry.Register<Plain>("test.plain.v2"));

        Assert.False(registry.TryGetType("test.plain.v2", out _));
        Assert.Equal("test.plain", registry.GetName(typeof(Plain)));
    }

    [Fact]
    public void of_two_types_racing_for_one_name_exactly_one_wins()
    {
        for (var round = 0; round < 50; round++)
        {
            var registry = new EventTypeRegistry();
            var wins = 0;
            Parallel.Invoke(
                () => Try(() => registry.Register<Plain>("test.contested")),
                () => Try(() => registry.Register<Other>("test.contested")));
            Assert.Equal(1, wins);
            Assert.Single(registry.Registrations);

            void Try(Action register)
            {
                try
                {
                    register();
                    Interlocked.Increment(ref wins);
                }
                catch (ArgumentException)
                {
                }
            }
        }
    }

    [Theory]
    [InlineData("")]
    [InlineData("order placed")]
    [InlineData("$reserved")]
    public void an_invalid_name_is_refused(string name) =>
        Assert.Throws<ArgumentException>(() => new EventTypeRegistry().Register<Plain>(name));

    // Cairn's own types (a workflow's history) are versioned with Cairn, and skipped by the schema registry: an
    // application's type named so was never registered nor validated.
    [Fact]
    public void a_name_starting_with_cairn_dot_is_refused_for_an_applications_type()
    {
        var refused = Assert.Throws<ArgumentException>(() => new EventTypeRegistry().Register<Plain>("cairn.deposit"));
        Assert.Contains("reserved for Cairn's own types", refused.Message, StringComparison.Ordinal);
        Cairn.Workflows.WorkflowEventTypes.Register(new EventTypeRegistry());
        new EventTypeRegistry().Register<Plain>("cairnish.deposit");
    }

    // An open generic type has no instances: registered, every read of its name failed with a raw ArgumentException.
    [Fact]
    public void an_open_generic_type_is_refused()
    {
        var refused = Assert.Throws<ArgumentException>(() => new EventTypeRegistry().Register(typeof(List<>), "test.list"));
        Assert.Contains("open generic", refused.Message, StringComparison.Ordinal);
        new EventTypeRegistry().Register(typeof(List<int>), "test.list");
    }

    [Fact]
    public void an_over_long_name_is_refused() =>
        Assert.Throws<ArgumentException>(() => new EventTypeRegistry().Register<Plain>(new string('n', 257)));

    [Fact]
    public void an_unknown_name_fails_with_unknown_event_type()
    {
        var ex = Assert.Throws<UnknownEventTypeException>(() => new EventTypeRegistry().GetType("test.nowhere"));
        Assert.Equal("test.nowhere", ex.EventType);
        Assert.False(new EventTypeRegistry().TryGetType("test.nowhere", out _));
    }

    [Fact]
    public void an_unknown_type_fails_with_unknown_event_type()
    {
        var ex = Assert.Throws<UnknownEventTypeException>(() => new EventTypeRegistry().GetName(typeof(Plain)));
        Assert.Contains(nameof(Plain), ex.EventType, StringComparison.Ordinal);
    }
}
