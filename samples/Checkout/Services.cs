namespace Checkout;

// The three services' own logic, shared by both styles: what differs between them is only how the services are told
// to act. Each operation is keyed by the order, so a repeated message (at-least-once delivery) does it once.

/// <summary>Stock on hand and the reservations of orders.</summary>
public sealed class Inventory
{
    private readonly Lock _gate = new();
    private readonly Dictionary<string, int> _onHand = new() { ["lamp"] = 10, ["sofa"] = 3, ["rug"] = 5 };
    private readonly Dictionary<string, Order> _reserved = [];

    public void Reserve(Order order)
    {
        lock (_gate)
        {
            if (_reserved.TryAdd(order.Id, order))
            {
                _onHand[order.Sku] -= order.Quantity;
            }
        }
    }

    public void Release(Order order)
    {
        lock (_gate)
        {
            if (_reserved.Remove(order.Id))
            {
                _onHand[order.Sku] += order.Quantity;
            }
        }
    }

    public bool IsReserved(string orderId)
    {
        lock (_gate)
        {
            return _reserved.ContainsKey(orderId);
        }
    }

    public int OnHand(string sku)
    {
        lock (_gate)
        {
            return _onHand[sku];
        }
    }
}

/// <summary>Charges cards; an amount over the card limit is declined.</summary>
public sealed class Payments
{
    public const decimal CardLimit = 1_000m;

    private readonly Lock _gate = new();
    private readonly Dictionary<string, string> _charged = [];

    /// <summary>The payment's id, or null when declined (with the reason).</summary>
    public string? Charge(Order order, out string? declined)
    {
        declined = order.Amount > CardLimit ? $"{order.Amount} is over the card limit of {CardLimit}" : null;
        if (declined is not null)
        {
            return null;
        }

        lock (_gate)
        {
            return _charged.TryGetValue(order.Id, out var id) ? id : _charged[order.Id] = "pay-" + order.Id;
        }
    }

    public void Refund(Order order)
    {
        lock (_gate)
        {
            _charged.Remove(order.Id);
        }
    }
}

/// <summary>Books the shipments.</summary>
public sealed class Shipping
{
    private readonly Lock _gate = new();
    private readonly HashSet<string> _booked = [];

    public string Arrange(Order order)
    {
        lock (_gate)
        {
            _booked.Add(order.Id);
        }

        return "trk-" + order.Id;
    }

    public void Cancel(Order order)
    {
        lock (_gate)
        {
            _booked.Remove(order.Id);
        }
    }
}
