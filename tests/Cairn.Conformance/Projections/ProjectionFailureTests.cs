using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Projections;

namespace Cairn.Conformance.Projections;

/// <summary>Failing events: retries, the stop and skip policies, unreadable events and documents.</summary>
public abstract class ProjectionFailureTests<TFixture>(TFixture fixture) : ProjectionTestsBase<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    [Fact]
    public async Task A_projection_that_throws_on_one_event_stops_there_by_default_and_says_so()
    {
        await using var sut = await CreateAsync();
        await PlaceAsync(sut, "1");
        await PlaceAsync(sut, "poison");
        await PlaceAsync(sut, "3");
        var attempts = 0;
        var projection = new OrderSummaries { MaxRetries = 2, RetryDelay = TimeSpan.Zero };
        projection.FailWhen = e => e.OrderId == "poison" && ++attempts > 0;
        await using var runner = await StartAsync(sut, projection);
        await Wait.UntilAsync(() => runner.Status.State == ProjectionState.Failed, "the projection stops");

        var status = runner.Status;
        Assert.Equal(new GlobalPosition(2), status.FailedEvent);
        Assert.Equal(new GlobalPosition(1), status.Position);
        Assert.Equal(3, attempts);
        Assert.Equal(3, status.Failures);
        Assert.Contains("Refusing order poison", status.LastError);
        var models = ReadModels(sut, projection);
        Assert.NotNull(await models.LoadAsync<OrderSummary>("1"));
        Assert.Null(await models.LoadAsync<OrderSummary>("3"));

        // A read-your-writes wait fails at once instead of running out its time.
        var wait = await Assert.ThrowsAsync<ProjectionWaitTimeoutException>(() => runner.WaitForPositionAsync(new GlobalPosition(3), TimeSpan.FromMinutes(5)));
        Assert.Contains("failed", wait.Message);

        // Fixed and restarted, it goes on from the event it stopped at.
        await runner.StopAsync(default);
        projection.FailWhen = null;
        await runner.StartAsync(default);
        await runner.WaitForPositionAsync(new GlobalPosition(3), Patience);
        Assert.NotNull(await models.LoadAsync<OrderSummary>("poison"));
        Assert.NotNull(await models.LoadAsync<OrderSummary>("3"));
    }

    [Fact]
    public async Task A_rebuild_that_stops_at_an_event_leaves_the_serving_build_going_on_and_tries_again_when_asked()
    {
        await using var sut = await CreateAsync();
        await PlaceAsync(sut, "1");
        await PlaceAsync(sut, "2");
        var projection = new OrderSummaries { MaxRetries = 0, RetryDelay = TimeSpan.Zero };
        await using var runner = await StartAsync(sut, projection);
        await CaughtUpAsync(sut, runner);

        // The code changed: it now refuses an old event, which the serving build applied long ago.
        projection.FailWhen = e => e.OrderId == "2";
        var stopped = await Assert.ThrowsAsync<ProjectionStoppedException>(() => runner.RebuildAsync().Bounded());
        Assert.True(stopped.Rebuild);
        Assert.Contains("serving build goes on", stopped.Message);
        var status = runner.Status;
        Assert.Equal(ProjectionState.Live, status.State);
        Assert.Equal(new GlobalPosition(2), status.Rebuild?.StoppedAt);
        Assert.Equal(new GlobalPosition(1), status.Rebuild?.Position);
        Assert.Null(status.FailedEvent);
        Assert.Contains("Refusing order 2", status.LastError);

        // The serving build goes on with what is appended meanwhile, and read-your-writes waits are answered.
        var third = await PlaceAsync(sut, "3");
        await runner.WaitForPositionAsync(third, Patience);
        var models = ReadModels(sut, projection);
        Assert.NotNull(await models.LoadAsync<OrderSummary>("2"));
        Assert.NotNull(await models.LoadAsync<OrderSummary>("3"));
        Assert.Equal(new GlobalPosition(2), runner.Status.Rebuild?.StoppedAt);

        // Fixed, and asked again: the rebuild goes on from the event it stopped at, and switches.
        var build = runner.Status.Rebuild!.Build;
        projection.FailWhen = null;
        await runner.RebuildAsync().Bounded();
        Assert.Null(runner.Status.Rebuild);
        var serving = (await sut.Projections.OpenAsync(projection, default)).Serving;
        Assert.Equal(build, serving.Id);
        Assert.Equal(3, await models.Query<OrderSummary>().CountAsync());
    }

    [Fact]
    public async Task Skip_and_dead_letter_records_the_event_and_goes_on()
    {
        await using var sut = await CreateAsync();
        await PlaceAsync(sut, "1");
        await PlaceAsync(sut, "poison");
        await PlaceAsync(sut, "3");
        var projection = new OrderSummaries
        {
            OnFailure = ProjectionFailurePolicy.SkipAndDeadLetter,
            MaxRetries = 1,
            RetryDelay = TimeSpan.Zero,
            FailWhen = e => e.OrderId == "poison",
        };
        await using var runner = await StartAsync(sut, projection);
        await CaughtUpAsync(sut, runner);

        var models = ReadModels(sut, projection);
        Assert.Equal(["1", "3"], (await models.Query<OrderSummary>().OrderBy("customer").ToListAsync()).Select(o => o.Id));
        var deadLetter = Assert.Single(await runner.ListDeadLettersAsync());
        Assert.Equal(new GlobalPosition(2), deadLetter.Position);
        Assert.Equal(Orders.Stream("poison"), deadLetter.Stream);
        Assert.Equal(0, deadLetter.Version);
        Assert.Equal("order.placed", deadLetter.EventType);
        Assert.Equal(2, deadLetter.Attempts);
        Assert.Equal(typeof(InvalidOperationException).FullName, deadLetter.Failure.Type);
        Assert.Contains("Refusing order poison", deadLetter.Failure.Message);
        Assert.Equal(1, runner.Status.DeadLetters);
        Assert.Equal(ProjectionState.Live, runner.Status.State);
    }

    [Fact]
    public async Task A_rebuild_that_skips_the_same_event_again_keeps_one_dead_letter_for_it()
    {
        await using var sut = await CreateAsync();
        await PlaceAsync(sut, "poison");
        await PlaceAsync(sut, "2");
        var projection = SkippingPoison();
        await using var runner = await StartAsync(sut, projection);
        await CaughtUpAsync(sut, runner);
        var first = Assert.Single(await runner.ListDeadLettersAsync());
        await runner.RebuildAsync().Bounded();
        var deadLetter = Assert.Single(await runner.ListDeadLettersAsync());
        Assert.Equal(new GlobalPosition(1), deadLetter.Position);
        Assert.True(deadLetter.Build > first.Build, $"the rebuild's own dead letter (build {deadLetter.Build}, first {first.Build})");
        Assert.Equal(1, await ReadModels(sut, projection).Query<OrderSummary>().CountAsync());
    }

    [Fact]
    public async Task A_rebuild_after_the_cause_is_fixed_applies_the_event_and_leaves_no_dead_letter_for_it()
    {
        await using var sut = await CreateAsync();
        await PlaceAsync(sut, "poison");
        await PlaceAsync(sut, "2");
        var projection = SkippingPoison();
        await using var runner = await StartAsync(sut, projection);
        await CaughtUpAsync(sut, runner);
        Assert.Single(await runner.ListDeadLettersAsync());

        projection.FailWhen = null;
        await runner.RebuildAsync().Bounded();
        Assert.Empty(await runner.ListDeadLettersAsync());
        Assert.NotNull(await ReadModels(sut, projection).LoadAsync<OrderSummary>("poison"));

        // Skipped again later (a new poison event), only the new one is listed.
        projection.FailWhen = e => e.OrderId == "poison-2";
        var late = await PlaceAsync(sut, "poison-2");
        await CaughtUpAsync(sut, runner);
        Assert.Equal(late, Assert.Single(await runner.ListDeadLettersAsync()).Position);
    }

    [Fact]
    public async Task During_a_rebuild_the_serving_and_the_shadow_build_each_list_what_they_skipped()
    {
        await using var sut = await CreateAsync();
        await PlaceAsync(sut, "poison");
        await PlaceAsync(sut, "2");
        var projection = SkippingPoison();
        var serving = (await sut.Projections.OpenAsync(projection, default)).Serving.Id;
        var shadow = await sut.Projections.StartShadowAsync(projection, default);
        var failure = new FailureInfo("System.InvalidOperationException", "Refusing order poison", null);
        var time = DateTimeOffset.UnixEpoch;
        var poison = Assert.Single(await sut.Store.ReadStreamAsync(Orders.Stream("poison")).ToListAsync());
        ProjectionDeadLetter Skip(long build) => new(projection.Name, build, poison.Position, poison.Id, poison.Stream, poison.Version, poison.Type, failure, 1, time);
        static void Nothing(IReadModelTransaction transaction, IReadOnlyList<RecordedEvent> events) { }
        await sut.Projections.ApplyAsync(new ProjectionBatch(projection.Name, serving, GlobalPosition.Start, poison.Position, [], Nothing) { DeadLetters = [Skip(serving)] }, default);
        await sut.Projections.ApplyAsync(new ProjectionBatch(projection.Name, shadow.Id, GlobalPosition.Start, poison.Position, [], Nothing) { DeadLetters = [Skip(shadow.Id)] }, default);

        var listed = await sut.Projections.ListDeadLettersAsync(projection.Name, 10, default);
        Assert.Equal([serving, shadow.Id], listed.Select(d => d.Build));
        Assert.All(listed, d => Assert.Equal(poison.Position, d.Position));

        // A new shadow drops the unfinished one with what it skipped; a switch drops the old serving build's.
        var next = await sut.Projections.StartShadowAsync(projection, default);
        Assert.Equal([serving], (await sut.Projections.ListDeadLettersAsync(projection.Name, 10, default)).Select(d => d.Build));
        await sut.Projections.ApplyAsync(new ProjectionBatch(projection.Name, next.Id, GlobalPosition.Start, poison.Position, [], Nothing) { DeadLetters = [Skip(next.Id)] }, default);
        await sut.Projections.ApplyAsync(new ProjectionBatch(projection.Name, next.Id, poison.Position, poison.Position, [], Nothing) { GoLive = true }, default);
        Assert.Equal([next.Id], (await sut.Projections.ListDeadLettersAsync(projection.Name, 10, default)).Select(d => d.Build));
    }

    [Fact]
    public async Task A_poison_event_in_the_middle_of_a_batch_keeps_the_events_around_it()
    {
        await using var sut = await CreateAsync();
        for (var i = 0; i < 50; i++)
        {
            await PlaceAsync(sut, i == 25 ? "poison" : i.ToString());
        }

        var projection = new OrderSummaries
        {
            OnFailure = ProjectionFailurePolicy.SkipAndDeadLetter,
            MaxRetries = 0,
            RetryDelay = TimeSpan.Zero,
            BatchSize = 100,
            FailWhen = e => e.OrderId == "poison",
        };
        await using var runner = await StartAsync(sut, projection);
        await CaughtUpAsync(sut, runner);
        Assert.Equal(49, await ReadModels(sut, projection).Query<OrderSummary>().CountAsync());
        Assert.Equal(new GlobalPosition(26), Assert.Single(await runner.ListDeadLettersAsync()).Position);
    }

    [Fact]
    public async Task An_event_whose_data_cannot_be_read_meets_the_failure_policy()
    {
        await using var sut = await CreateAsync();
        await PlaceAsync(sut, "1");
        await AppendAsync(sut, "2", TestEvents.Json("{\"orderId\": 42, \"customer\": [1]}", "order.placed"));
        await PlaceAsync(sut, "3");
        var projection = new OrderSummaries { OnFailure = ProjectionFailurePolicy.SkipAndDeadLetter, MaxRetries = 0, RetryDelay = TimeSpan.Zero };
        await using var runner = await StartAsync(sut, projection);
        await CaughtUpAsync(sut, runner);
        var deadLetter = Assert.Single(await runner.ListDeadLettersAsync());
        Assert.Equal(new GlobalPosition(2), deadLetter.Position);
        Assert.Contains("Deserialization", deadLetter.Failure.Type);
        Assert.Equal(2, await ReadModels(sut, projection).Query<OrderSummary>().CountAsync());
    }

    [Fact]
    public async Task A_stored_document_that_cannot_be_read_fails_the_event_that_loads_it_and_the_query()
    {
        await using var sut = await CreateAsync();
        await PlaceAsync(sut, "1");
        var writer = new Shapeshifter(numeric: false);
        await using (var runner = await StartAsync(sut, writer))
        {
            await CaughtUpAsync(sut, runner);
        }

        // The same collection, now read as another shape without a version change: the stored JSON no longer fits.
        await AppendAsync(sut, "1", Orders.Line("1", 1m));
        var reader = new Shapeshifter(numeric: true) { MaxRetries = 0, RetryDelay = TimeSpan.Zero };
        await using var second = await StartAsync(sut, reader);
        await Wait.UntilAsync(() => second.Status.State == ProjectionState.Failed, "the projection stops on the unreadable document");
        Assert.Contains("cannot be read as NumericLabel", second.Status.LastError);
        var error = await Assert.ThrowsAsync<DocumentDeserializationException>(() => ReadModels(sut, reader).LoadAsync<NumericLabel>("1"));
        Assert.Equal("label", error.Collection);
        Assert.Equal("1", error.Id);
    }

    [Fact]
    public async Task A_projection_handling_an_unregistered_event_type_is_refused_at_creation()
    {
        await using var sut = await CreateAsync();
        var error = Assert.Throws<Cairn.Serialization.UnknownEventTypeException>(() => Runner(sut, new Unregistered()));
        Assert.Contains(nameof(NotAnEvent), error.Message);
    }

    [Fact]
    public void Impossible_projection_settings_are_refused_with_the_setting_named()
    {
        Assert.Contains("Version", Assert.Throws<ArgumentOutOfRangeException>(() => new OrderSummaries { Version = 0 }.Validate()).Message);
        Assert.Contains("BatchSize", Assert.Throws<ArgumentOutOfRangeException>(() => new OrderSummaries { BatchSize = 0 }.Validate()).Message);
        Assert.Contains("CatchUpBatchSize", Assert.Throws<ArgumentOutOfRangeException>(() => new OrderSummaries { CatchUpBatchSize = 0 }.Validate()).Message);
        Assert.Contains("CatchUpBatchSize", Assert.Throws<ArgumentOutOfRangeException>(() => new OrderSummaries { CatchUpBatchSize = 100_001 }.Validate()).Message);
        new OrderSummaries { BatchSize = 20_000 }.Validate();
        Assert.Contains("Filter", Assert.Throws<ArgumentException>(() => new OrderSummaries { Filter = EventFilter.ForStream(new StreamName("order-1")) }.Validate()).Message);
        Assert.Contains("projection name", Assert.Throws<ArgumentException>(() => new OrderSummaries("bad name")).Message);
        Assert.Contains("handles no event type", Assert.Throws<ArgumentException>(() => new Empty().Validate()).Message);
    }

    [Fact]
    public async Task Storing_a_document_type_the_projection_did_not_declare_fails_the_event()
    {
        await using var sut = await CreateAsync();
        await PlaceAsync(sut, "1");
        var projection = new Undeclared { MaxRetries = 0 };
        await using var runner = await StartAsync(sut, projection);
        await Wait.UntilAsync(() => runner.Status.State == ProjectionState.Failed, "the projection stops");
        Assert.Contains("declares no documents of type Tally", runner.Status.LastError);
    }

    public sealed record Label(string Id, string Value);

    public sealed record NumericLabel(string Id, int Value);

    public sealed record NotAnEvent(string X);

    /// <summary>Order summaries that fail on order "poison" at once and dead-letter it.</summary>
    private static OrderSummaries SkippingPoison() => new()
    {
        OnFailure = ProjectionFailurePolicy.SkipAndDeadLetter,
        MaxRetries = 0,
        RetryDelay = TimeSpan.Zero,
        FailWhen = e => e.OrderId == "poison",
    };

    private sealed class Shapeshifter : Projection
    {
        public Shapeshifter(bool numeric)
            : base("labels")
        {
            if (numeric)
            {
                Document<NumericLabel>(l => l.Id, "label");
                On<OrderLineAdded>((ctx, e) => ctx.Documents.Store(ctx.Documents.Load<NumericLabel>(e.OrderId)! with { Value = 1 }));
                On<OrderPlaced>((ctx, e) => ctx.Documents.Store(new NumericLabel(e.OrderId, 0)));
            }
            else
            {
                Document<Label>(l => l.Id, "label");
                On<OrderPlaced>((ctx, e) => ctx.Documents.Store(new Label(e.OrderId, "text")));
                On<OrderLineAdded>((_, _) => { });
            }
        }
    }

    private sealed class Unregistered : Projection
    {
        public Unregistered()
            : base("unregistered")
        {
            On<NotAnEvent>((_, _) => { });
        }
    }

    private sealed class Empty() : Projection("empty");

    private sealed class Undeclared : Projection
    {
        public Undeclared()
            : base("undeclared")
        {
            On<OrderPlaced>((ctx, e) => ctx.Documents.Store(e.OrderId, new Tally(e.OrderId, 1, 1)));
        }
    }
}
