using Cairn.EventStore;

namespace Cairn.Conformance;

/// <summary>The checkpoint store of a backend.</summary>
public abstract class CheckpointTests<TFixture>(TFixture fixture) : StoreTests<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    [Fact]
    public async Task a_missing_checkpoint_reads_as_null()
    {
        await using var sut = await CreateAsync();
        Assert.Null(await sut.Checkpoints.GetAsync("projection-a", default));
    }

    [Fact]
    public async Task a_stored_checkpoint_reads_back()
    {
        await using var sut = await CreateAsync();
        await sut.Checkpoints.SetAsync("projection-a", new GlobalPosition(42), default);
        Assert.Equal(new GlobalPosition(42), await sut.Checkpoints.GetAsync("projection-a", default));
    }

    [Fact]
    public async Task a_checkpoint_can_be_overwritten_forwards_and_backwards()
    {
        await using var sut = await CreateAsync();
        await sut.Checkpoints.SetAsync("projection-a", new GlobalPosition(5), default);
        await sut.Checkpoints.SetAsync("projection-a", new GlobalPosition(500), default);
        Assert.Equal(new GlobalPosition(500), await sut.Checkpoints.GetAsync("projection-a", default));

        // Rewinding is how a projection is rebuilt.
        await sut.Checkpoints.SetAsync("projection-a", GlobalPosition.Start, default);
        Assert.Equal(GlobalPosition.Start, await sut.Checkpoints.GetAsync("projection-a", default));
    }

    [Fact]
    public async Task checkpoints_are_kept_per_key()
    {
        await using var sut = await CreateAsync();
        await sut.Checkpoints.SetAsync("projection-a", new GlobalPosition(1), default);
        await sut.Checkpoints.SetAsync("projection-b", new GlobalPosition(2), default);
        await sut.Checkpoints.SetAsync("Projection-A", new GlobalPosition(3), default);
        await sut.Checkpoints.SetAsync("プロジェクション ü", new GlobalPosition(4), default);

        Assert.Equal(new GlobalPosition(1), await sut.Checkpoints.GetAsync("projection-a", default));
        Assert.Equal(new GlobalPosition(2), await sut.Checkpoints.GetAsync("projection-b", default));
        Assert.Equal(new GlobalPosition(3), await sut.Checkpoints.GetAsync("Projection-A", default));
        Assert.Equal(new GlobalPosition(4), await sut.Checkpoints.GetAsync("プロジェクション ü", default));
        Assert.Null(await sut.Checkpoints.GetAsync("projection-c", default));
    }

    [Fact]
    public async Task a_large_position_round_trips()
    {
        await using var sut = await CreateAsync();
        await sut.Checkpoints.SetAsync("projection-a", new GlobalPosition(long.MaxValue), default);
        Assert.Equal(new GlobalPosition(long.MaxValue), await sut.Checkpoints.GetAsync("projection-a", default));
    }

    [Fact]
    public async Task a_key_of_256_characters_is_accepted()
    {
        await using var sut = await CreateAsync();
        var key = new string('k', 256);
        await sut.Checkpoints.SetAsync(key, new GlobalPosition(7), default);
        Assert.Equal(new GlobalPosition(7), await sut.Checkpoints.GetAsync(key, default));
    }

    private static readonly Dictionary<string, string?> InvalidKeyCases = new()
    {
        ["null"] = null,
        ["empty"] = "",
        ["blank"] = "   ",
        ["control-char"] = "projection\u0001a",
        ["line-feed"] = "projection\na",
        ["lone-surrogate"] = "projection\ud800a",
        ["over-long"] = new string('k', 257),
    };

    public static TheoryData<string> InvalidKeys => new(InvalidKeyCases.Keys);

    [Theory]
    [MemberData(nameof(InvalidKeys))]
    public async Task an_invalid_key_is_refused(string @case)
    {
        await using var sut = await CreateAsync();
        var key = InvalidKeyCases[@case]!;

        await Assert.ThrowsAnyAsync<ArgumentException>(async () => await sut.Checkpoints.SetAsync(key, new GlobalPosition(1), default));
        await Assert.ThrowsAnyAsync<ArgumentException>(async () => await sut.Checkpoints.GetAsync(key, default));
    }
}
