using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Cairn.EventStore;
using Cairn.Schemas;
using Cairn.Serialization;

namespace Cairn.Conformance.Upcasting;

/// <summary>
/// A log written over three versions of <c>customer.registered</c>, kept as a fixture of stored events
/// (<c>Fixtures/customers-2024-2026.jsonl</c>): version 1 before the registry existed (no <c>dataschema</c>), a single
/// name and credit in cents; version 2 with the name split; version 3, today's class, with the credit as money.
/// </summary>
public static class CustomerLog
{
    /// <summary>The events of the fixture, as they were stored: type, data and <c>dataschema</c> byte for byte.</summary>
    public static IReadOnlyList<(StreamName Stream, EventData Event)> Fixture()
    {
        using var stream = typeof(CustomerLog).Assembly.GetManifestResourceStream("Cairn.Conformance.Upcasting.Fixtures.customers-2024-2026.jsonl")
            ?? throw new InvalidOperationException("The customer log fixture is not embedded.");
        using var reader = new StreamReader(stream, Encoding.UTF8);
        var events = new List<(StreamName, EventData)>();
        while (reader.ReadLine() is { } line)
        {
            if (line.Length == 0)
            {
                continue;
            }

            var row = JsonNode.Parse(line)!.AsObject();
            var data = Encoding.UTF8.GetBytes(row["data"]!.ToJsonString());
            events.Add((new StreamName(row["stream"]!.GetValue<string>()), new EventData(row["type"]!.GetValue<string>(), data)
            {
                DataSchema = row["dataschema"]?.GetValue<string>(),
            }));
        }

        return events;
    }

    /// <summary>Today's serializer: the current classes and the upcasters from versions 1 and 2.</summary>
    public static EventSerializer Serializer()
    {
        var types = new EventTypeRegistry().Register<CustomerRegistered>().Register<CustomerCredited>();
        var options = new SchemaOptions()
            .Upcast(CustomerTypes.Registered, 1, 2, json =>
            {
                var name = json["name"]!.GetValue<string>();
                var space = name.IndexOf(' ', StringComparison.Ordinal);
                json.Remove("name");
                json["firstName"] = name[..space];
                json["lastName"] = name[(space + 1)..];
                return json;
            })
            .Upcast<CustomerRegisteredV2, CustomerRegistered>(v2 => new CustomerRegistered(v2.FirstName, v2.LastName, new Money(v2.CreditCents / 100m, "EUR")));
        return new EventSerializer(types, new JsonSerializerOptions(JsonSerializerDefaults.Web), UpcasterChains.Build(types, options.Upcasters));
    }

    /// <summary>Folds a customer's events into its state: what a decider or projection sees.</summary>
    public static CustomerState Fold(IEnumerable<object> events) => events.Aggregate(CustomerState.None, (state, e) => e switch
    {
        CustomerRegistered r => new CustomerState($"{r.FirstName} {r.LastName}", r.Credit),
        CustomerCredited c => state with { Credit = state.Credit with { Amount = state.Credit.Amount + c.Cents / 100m } },
        _ => throw new InvalidOperationException($"A {e.GetType().Name} is not a customer event."),
    });
}

/// <summary>The customer type names.</summary>
public static class CustomerTypes
{
    /// <summary><c>customer.registered</c>.</summary>
    public const string Registered = "customer.registered";
}

/// <summary>Version 2 of <c>customer.registered</c>: kept only for its typed upcaster.</summary>
[EventType(CustomerTypes.Registered, Version = 2)]
public sealed record CustomerRegisteredV2(string FirstName, string LastName, int CreditCents);

/// <summary>Today's <c>customer.registered</c>, version 3.</summary>
[EventType(CustomerTypes.Registered, Version = 3)]
public sealed record CustomerRegistered(string FirstName, string LastName, Money Credit);

/// <summary><c>customer.credited</c>, never changed.</summary>
[EventType("customer.credited")]
public sealed record CustomerCredited(int Cents);

/// <summary>An amount in a currency.</summary>
public sealed record Money(decimal Amount, string Currency);

/// <summary>A customer's state.</summary>
public sealed record CustomerState(string Name, Money Credit)
{
    /// <summary>No customer yet.</summary>
    public static CustomerState None { get; } = new("", new Money(0m, "EUR"));
}
