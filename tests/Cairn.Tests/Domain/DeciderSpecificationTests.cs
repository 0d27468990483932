using Cairn.Conformance.Support;
using Cairn.Domain;

namespace Cairn.Tests.Domain;

public sealed class DeciderSpecificationTests
{
    private static DeciderSpecification<AccountCommand, AccountState, AccountEvent> Account => DeciderSpecification.For(BankAccount.Decider);

    [Fact]
    public void opening_an_account_opens_it()
    {
        var state = Account.When(new OpenAccount("ada")).Then(new AccountOpened("ada"));
        Assert.Equal(new AccountState("ada", 0m, false), state);
    }

    // A shared opening given once and more history given after it: the second Given adds to the first (it replaced it).
    [Fact]
    public void a_second_given_adds_its_events_after_those_given_before()
    {
        var opened = Account.Given(new AccountOpened("ada"));
        var state = opened.Given(new Deposited(10m)).When(new Deposit(5m)).Then(new Deposited(5m));
        Assert.Equal(new AccountState("ada", 15m, false), state);

        // The first specification is unchanged by the second.
        Assert.Equal(5m, opened.When(new Deposit(5m)).Then(new Deposited(5m)).Balance);
    }

    [Fact]
    public void a_deposit_to_an_open_account_is_recorded()
    {
        var state = Account.Given(new AccountOpened("ada"), new Deposited(10m)).When(new Deposit(5m)).Then(new Deposited(5m));
        Assert.Equal(15m, state.Balance);
    }

    [Fact]
    public void a_withdrawal_within_the_balance_is_recorded()
    {
        var state = Account.Given(new AccountOpened("ada"), new Deposited(10m)).When(new Withdraw(10m)).Then(new Withdrawn(10m));
        Assert.Equal(0m, state.Balance);
    }

    [Fact]
    public void a_withdrawal_over_the_balance_is_refused()
    {
        var ex = Account.Given(new AccountOpened("ada"), new Deposited(10m)).When(new Withdraw(10.01m)).ThenThrows<AccountRuleException>();
        Assert.Equal("Insufficient funds.", ex.Message);
    }

    [Fact]
    public void opening_an_open_account_for_the_same_owner_decides_nothing()
    {
        var state = Account.Given(new AccountOpened("ada")).When(new OpenAccount("ada")).Then();
        Assert.Equal("ada", state.Owner);
    }

    [Fact]
    public void a_closed_account_refuses_deposits()
    {
        Account.Given(new AccountOpened("ada"), new AccountClosed()).When(new Deposit(1m)).ThenThrows<AccountRuleException>();
    }

    [Fact]
    public void then_fails_naming_both_expected_and_decided_events_when_they_differ()
    {
        var ex = Assert.Throws<DeciderSpecificationException>(() =>
            Account.Given(new AccountOpened("ada")).When(new Deposit(5m)).Then(new Deposited(6m)));

        Assert.Contains("Deposited { Amount = 6 }", ex.Message, StringComparison.Ordinal);
        Assert.Contains("Deposited { Amount = 5 }", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void then_fails_when_the_decider_decides_more_or_fewer_events()
    {
        Assert.Throws<DeciderSpecificationException>(() => Account.Given(new AccountOpened("ada")).When(new Deposit(5m)).Then());
        Assert.Throws<DeciderSpecificationException>(() => Account.Given(new AccountOpened("ada")).When(new OpenAccount("ada")).Then(new AccountOpened("ada")));
    }

    [Fact]
    public void then_throws_fails_when_the_decider_accepts_the_command()
    {
        var ex = Assert.Throws<DeciderSpecificationException>(() =>
            Account.Given(new AccountOpened("ada")).When(new Deposit(5m)).ThenThrows<AccountRuleException>());

        Assert.Contains(nameof(AccountRuleException), ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void then_throws_of_a_base_exception_type_still_fails_when_the_decider_accepts_the_command()
    {
        Assert.Throws<DeciderSpecificationException>(() =>
            Account.Given(new AccountOpened("ada")).When(new Deposit(5m)).ThenThrows<Exception>());
    }

    // A Decide that returns null, or a null event, breaks the decider's contract: however broad the exception expected,
    // that is no refusal of the command.
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void then_throws_fails_when_the_decider_breaks_its_contract_rather_than_refusing(bool nullSequence)
    {
        var broken = new Decider<AccountCommand, AccountState, AccountEvent>(
            (_, _) => nullSequence ? null! : [null!],
            BankAccount.Decider.Evolve,
            BankAccount.Decider.InitialState);
        var spec = DeciderSpecification.For(broken).When(new Deposit(5m));

        var ex = Assert.Throws<DeciderSpecificationException>(() => spec.ThenThrows<InvalidOperationException>());
        Assert.Contains(nullSequence ? "decided null for the command Deposit" : "decided a null event", ex.Message, StringComparison.Ordinal);
        Assert.Throws<DeciderSpecificationException>(() => spec.ThenThrows<Exception>());
    }

    // A decider whose Decide is a lazy sequence refuses as it is enumerated: still a refusal.
    [Fact]
    public void then_throws_catches_a_refusal_a_lazy_decide_raises_as_it_is_enumerated()
    {
        static IEnumerable<AccountEvent> Refuse(AccountCommand command, AccountState state)
        {
            yield return new Deposited(1m);
            throw new AccountRuleException("Refused half-way.");
        }

        var lazy = new Decider<AccountCommand, AccountState, AccountEvent>(Refuse, BankAccount.Decider.Evolve, BankAccount.Decider.InitialState);

        Assert.Equal("Refused half-way.", DeciderSpecification.For(lazy).When(new Deposit(5m)).ThenThrows<AccountRuleException>().Message);
    }

    [Fact]
    public void then_throws_lets_another_exception_through()
    {
        Assert.Throws<AccountRuleException>(() => Account.When(new Deposit(5m)).ThenThrows<ArgumentException>());
    }

    [Fact]
    public void then_throws_does_not_pass_when_the_given_events_fail_to_fold_and_the_command_is_never_decided()
    {
        // Evolve refuses a history it cannot fold (shipped before placed); Decide alone accepts every command.
        var strict = new Decider<string, int, string>(
            (command, _) => [command],
            (state, e) => e == "shipped" && state == 0 ? throw new InvalidOperationException("shipped before placed") : state + 1,
            0);

        var folding = Assert.Throws<InvalidOperationException>(() => DeciderSpecification.For(strict).Given("shipped").When("cancel").ThenThrows<InvalidOperationException>());
        Assert.Equal("shipped before placed", folding.Message);
    }

    [Fact]
    public void then_without_a_command_is_a_mistake_in_the_specification()
    {
        Assert.Throws<InvalidOperationException>(() => Account.Given(new AccountOpened("ada")).Then());
        Assert.Throws<InvalidOperationException>(() => Account.Given(new AccountOpened("ada")).ThenThrows<InvalidOperationException>());
    }

    [Fact]
    public void a_specification_is_immutable_and_can_be_branched()
    {
        var opened = Account.Given(new AccountOpened("ada"), new Deposited(10m));
        opened.When(new Withdraw(4m)).Then(new Withdrawn(4m));
        opened.When(new Withdraw(11m)).ThenThrows<AccountRuleException>();
        opened.When(new CloseAccount()).ThenThrows<AccountRuleException>();
        Account.Given(new AccountOpened("ada")).When(new CloseAccount()).Then(new AccountClosed());
    }

    // The events' own equality says they differ, and the comparison by value must too: by JSON it saw a value tuple's
    // items (fields) as nothing, so Moved((1, 2)) passed for Moved((3, 4)).
    [Fact]
    public void then_fails_when_the_events_differ_only_in_a_value_tuple()
    {
        var decider = new Decider<Move, int, Moved>((command, _) => [new Moved((command.X, command.Y))], (state, _) => state + 1, 0);

        var ex = Assert.Throws<DeciderSpecificationException>(() => DeciderSpecification.For(decider).When(new Move(1, 2)).Then(new Moved((3, 4))));

        Assert.Contains("\"item1\":3", ex.Message, StringComparison.Ordinal);
        DeciderSpecification.For(decider).When(new Move(1, 2)).Then(new Moved((1, 2)));
    }

    // A record compares its collections by reference; by value, lists compare in order, sets without it, dictionaries by key.
    [Fact]
    public void then_compares_collections_by_value_lists_in_order_and_sets_without()
    {
        var decider = new Decider<Tag, int, Tagged>(
            (command, _) => [new Tagged([.. command.Names], [.. command.Names], command.Names.ToDictionary(n => n, n => new List<int> { n.Length }))],
            (state, _) => state + 1,
            0);
        var spec = DeciderSpecification.For(decider).When(new Tag(["a", "bb"]));

        spec.Then(new Tagged(["a", "bb"], ["bb", "a"], new Dictionary<string, List<int>> { ["bb"] = [2], ["a"] = [1] }));
        Assert.Throws<DeciderSpecificationException>(() => spec.Then(new Tagged(["bb", "a"], ["a", "bb"], new Dictionary<string, List<int>> { ["a"] = [1], ["bb"] = [2] })));
        Assert.Throws<DeciderSpecificationException>(() => spec.Then(new Tagged(["a", "bb"], ["a", "bb"], new Dictionary<string, List<int>> { ["a"] = [1], ["bb"] = [3] })));
        Assert.Throws<DeciderSpecificationException>(() => spec.Then(new Tagged(["a", "bb"], ["a", "c"], new Dictionary<string, List<int>> { ["a"] = [1], ["bb"] = [2] })));
    }

    // Matching a set tries each item against the other set's items; a pair found unequal there was remembered as
    // "entered" (the guard against cycles) and taken as equal when met again, so the list [Item(1)] passed for [Item(2)].
    [Fact]
    public void then_fails_when_a_list_differs_in_items_compared_unequal_while_matching_a_set()
    {
        Item one = new(1), two = new(2);
        var decider = new Decider<Pick, int, Picked>((_, _) => [new Picked([one, two], [one])], (state, _) => state + 1, 0);
        var spec = DeciderSpecification.For(decider).When(new Pick());

        Item otherTwo = new(2), otherOne = new(1);
        Assert.Throws<DeciderSpecificationException>(() => spec.Then(new Picked([otherTwo, otherOne], [otherTwo])));
    }

    // Items equal by their own equality are matched through a hash; the rest (records holding lists) by value, each to
    // a distinct item of the other set.
    [Fact]
    public void then_matches_set_items_by_their_own_equality_and_the_rest_by_value_each_once()
    {
        var names = Enumerable.Range(0, 5_000).Select(i => "name-" + i).ToList();
        var decider = new Decider<Pick, int, Bagged>(
            (_, _) => [new Bagged([new Bag([1]), new Bag([1]), new Bag([2, 3])], [.. names, null])],
            (state, _) => state + 1,
            0);
        var spec = DeciderSpecification.For(decider).When(new Pick());

        spec.Then(new Bagged([new Bag([2, 3]), new Bag([1]), new Bag([1])], [null, .. Enumerable.Reverse(names)]));
        Assert.Throws<DeciderSpecificationException>(() => spec.Then(new Bagged([new Bag([2, 3]), new Bag([1]), new Bag([2])], [null, .. names])));
        Assert.Throws<DeciderSpecificationException>(() => spec.Then(new Bagged([new Bag([1]), new Bag([1]), new Bag([2, 3])], [.. names, "name-x"])));
    }

    public sealed record Bag(List<int> Values);

    public sealed record Bagged(HashSet<Bag> Bags, HashSet<string?> Names);

    public sealed record Item(int V);

    public sealed record Pick;

    public sealed record Picked(HashSet<Item> Options, List<Item> Chosen);

    public sealed record Move(int X, int Y);

    public sealed record Moved((int X, int Y) To);

    public sealed record Tag(List<string> Names);

    public sealed record Tagged(List<string> Ordered, HashSet<string> Unordered, Dictionary<string, List<int>> Lengths);
}
