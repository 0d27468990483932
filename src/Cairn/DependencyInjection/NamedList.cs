namespace Cairn.DependencyInjection;

/// <summary>
/// The hosted parts of one kind in the process, each under a name that must be unique because it keys durable state
/// (a checkpoint, an inbox). The monitors of subscriptions, consumers and routes keep theirs here.
/// </summary>
internal sealed class NamedList<T>(Func<T, string> nameOf, string kind, string nameKeys)
    where T : class
{
    private readonly List<T> _items = [];

    public IReadOnlyList<TResult> Select<TResult>(Func<T, TResult> select)
    {
        lock (_items)
        {
            return [.. _items.Select(select)];
        }
    }

    public T? Find(string name)
    {
        lock (_items)
        {
            return _items.FirstOrDefault(item => nameOf(item) == name);
        }
    }

    public void Add(T item)
    {
        var name = nameOf(item);
        lock (_items)
        {
            if (_items.Any(existing => nameOf(existing) == name))
            {
                throw new InvalidOperationException($"Two {kind} are named '{name}'; each needs its own name ({nameKeys}).");
            }

            _items.Add(item);
        }
    }
}
