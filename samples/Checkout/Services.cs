namespace Checkout;

// The three services' own logic, shared by both styles: what differs between them is only how the services are told
// to act. Each operation is keyed by the order, so a repeated message (at-least-once delivery) does it once. And each
// undo is remembered: a command that arrives after its undo (its delivery held up while the order was cancelled, say)
// does nothing, or the undo would not stick.

/// <summary>Stock on hand and the reservations of orders.</summary>
public sealed class Inventory
{
    private readonly Lock _gate = new();
    private readonly Dictionary<string, int> _onHand = new() { ["lamp"] = 10, ["sofa"] = 3, ["rug"] = 5 };
    private readonly Dictionary<string, Order> _reserved = [];
    private readonly HashSet<string> _released = [];

    /// <summary>Reserves the order's items; false, with the reason, when too few are on hand or the order was released.</summary>
    public bool Reserve(Order order, out string? unavailable)
    {
        lock (_gate)
        {
            unavailable = _reserved.ContainsKey(order.Id) ? null
                : _released.Contains(order.Id) ? "the order was cancelled"
                : _onHand[order.Sku] < order.Quantity ? $"{_onHand[order.Sku]} {order.Sku} on hand, {order.Quantity} ordered"
                : null;
            if (unavailable is null && _reserved.TryAdd(order.Id, order))
            {
                _onHand[order.Sku] -= order.Quantity;
            }

            return unavailable is null;
        }
    }

    public void Release(Order order)
    {
        lock (_gate)
        {
            _released.Add(order.Id);
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

/// <summary>Charges cards; an amount over the card limit is declined, and so is an order already refunded.</summary>
public sealed class Payments
{
    public const decimal CardLimit = 1_000m;

    private readonly Lock _gate = new();
    private readonly Dictionary<string, string> _charged = [];
    private readonly HashSet<string> _refunded = [];

    /// <summary>The payment's id, or null when declined (with the reason).</summary>
    public string? Charge(Order order, out string? declined)
    {
        lock (_gate)
        {
            declined = _charged.ContainsKey(order.Id) ? null
                : _refunded.Contains(order.Id) ? "the order was refunded"
                : order.Amount > CardLimit ? $"{order.Amount} is over the card limit of {CardLimit}"
                : null;
            return declined is not null ? null
                : _charged.TryGetValue(order.Id, out var id) ? id
                : _charged[order.Id] = "pay-" + order.Id;
        }
    }

    public void Refund(Order order)
    {
        lock (_gate)
        {
            _refunded.Add(order.Id);
            _charged.Remove(order.Id);
        }
    }

    public bool IsCharged(string orderId)
    {
        lock (_gate)
        {
            return _charged.ContainsKey(orderId);
        }
    }
}

/// <summary>Books the shipments.</summary>
public sealed class Shipping
{
    private readonly Lock _gate = new();
    private readonly HashSet<string> _booked = [];
    private readonly HashSet<string> _cancelled = [];

    /// <summary>The tracking number, or null for an order whose shipment was cancelled.</summary>
    public string? Arrange(Order order)
    {
        lock (_gate)
        {
            if (_cancelled.Contains(order.Id))
            {
                return null;
            }

            _booked.Add(order.Id);
            return "trk-" + order.Id;
        }
    }

    public void Cancel(Order order)
    {
        lock (_gate)
        {
            _cancelled.Add(order.Id);
            _booked.Remove(order.Id);
        }
    }

    public bool IsBooked(string orderId)
    {
        lock (_gate)
        {
            return _booked.Contains(orderId);
        }
    }
}
