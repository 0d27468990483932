using System.Collections.Concurrent;
using Cairn.Envelopes;
using Cairn.EventStore;

namespace Cairn.Tests.EventStore;

public sealed class StreamNameTests
{
    [Theory]
    [InlineData("order-42", "order")]
    [InlineData("order", "order")]
    [InlineData("order-42-line-7", "order")]
    [InlineData("$$order-1", "$$order")]
    [InlineData("Bestellung-ü-🚀", "Bestellung")]
    public void the_category_is_the_part_before_the_first_dash(string name, string category)
    {
        Assert.Equal(category, new StreamName(name).Category);
        Assert.Equal(category, StreamName.CategoryOf(name));
    }

    [Fact]
    public void a_name_is_made_from_a_category_and_an_id()
    {
        Assert.Equal(new StreamName("order-42"), StreamName.For("order", "42"));
        Assert.Equal("order-42-b", StreamName.For("order", "42-b").Value);
        Assert.Throws<InvalidStreamNameException>(() => StreamName.For("or-der", "42"));
        Assert.Throws<InvalidStreamNameException>(() => StreamName.For("", "42"));
        Assert.Throws<InvalidStreamNameException>(() => StreamName.For("order", new string('x', 300)));
    }

    [Fact]
    public void names_starting_with_a_dollar_are_system_names()
    {
        Assert.True(new StreamName("$$order-1").IsSystem);
        Assert.True(new StreamName("$all").IsSystem);
        Assert.False(new StreamName("order-$1").IsSystem);
    }

    [Fact]
    public void the_length_limit_counts_utf16_characters()
    {
        Assert.Equal(256, new StreamName(new string('a', 256)).Value.Length);
        Assert.Throws<InvalidStreamNameException>(() => new StreamName(new string('a', 257)));

        // A surrogate pair is two characters and is welcome; half of one is not.
        Assert.Equal(256, new StreamName(new string('a', 254) + "🚀").Value.Length);
        Assert.Throws<InvalidStreamNameException>(() => new StreamName(new string('a', 255) + "🚀"));
        Assert.Throws<InvalidStreamNameException>(() => new StreamName("order-\udc00"));
        Assert.Throws<InvalidStreamNameException>(() => new StreamName("order-\ud83d-x"));
    }

    [Fact]
    public void validation_names_the_rule_that_was_broken()
    {
        Assert.Null(StreamName.Validate("order-1"));
        Assert.Contains("null", StreamName.Validate(null)!, StringComparison.Ordinal);
        Assert.Contains("empty", StreamName.Validate("")!, StringComparison.Ordinal);
        Assert.Contains("257", StreamName.Validate(new string('a', 257))!, StringComparison.Ordinal);
        Assert.Contains("white space", StreamName.Validate(" a")!, StringComparison.Ordinal);
        Assert.Contains("U+0007", StreamName.Validate("a\u0007b")!, StringComparison.Ordinal);
        var ex = Assert.Throws<InvalidStreamNameException>(() => new StreamName("a\u0007b"));
        Assert.Contains("a?b", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void try_create_refuses_without_throwing()
    {
        Assert.True(StreamName.TryCreate("order-1", out var name));
        Assert.Equal("order-1", name.Value);
        Assert.False(StreamName.TryCreate(null, out var missing));
        Assert.Equal(default, missing);
        Assert.False(StreamName.TryCreate("", out _));
    }

    [Fact]
    public void a_default_name_has_no_value()
    {
        StreamName name = default;
        Assert.Throws<InvalidStreamNameException>(() => name.Value);
        Assert.Equal("", name.ToString());
    }

    [Fact]
    public void names_compare_by_value_and_convert_from_strings()
    {
        StreamName fromString = "order-1";
        Assert.Equal(new StreamName("order-1"), fromString);
        Assert.NotEqual(new StreamName("order-1"), new StreamName("Order-1"));
        Assert.Equal("order-1", fromString.ToString());
        Assert.Throws<InvalidStreamNameException>(() =>
        {
            StreamName bad = "";
            return bad;
        });
    }
}

public sealed class ExpectedVersionTests
{
    [Fact]
    public void the_named_expectations_have_stable_values_and_names()
    {
        Assert.Equal((-2L, "Any"), (ExpectedVersion.Any.Value, ExpectedVersion.Any.ToString()));
        Assert.Equal((-1L, "NoStream"), (ExpectedVersion.NoStream.Value, ExpectedVersion.NoStream.ToString()));
        Assert.Equal((-4L, "StreamExists"), (ExpectedVersion.StreamExists.Value, ExpectedVersion.StreamExists.ToString()));
        Assert.Equal((7L, "7"), (ExpectedVersion.Exactly(7).Value, ExpectedVersion.Exactly(7).ToString()));
    }

    [Fact]
    public void the_default_expectation_is_any()
    {
        ExpectedVersion unset = default;
        Assert.Equal(ExpectedVersion.Any, unset);
        Assert.Equal(-2, unset.Value);
        Assert.True(unset.IsSatisfiedBy(null));
        Assert.True(unset.IsSatisfiedBy(12));
    }

    [Fact]
    public void only_exact_expectations_are_exact()
    {
        Assert.True(ExpectedVersion.Exactly(0).IsExact);
        Assert.True(new ExpectedVersion(12).IsExact);
        Assert.False(ExpectedVersion.Any.IsExact);
        Assert.False(ExpectedVersion.NoStream.IsExact);
        Assert.False(ExpectedVersion.StreamExists.IsExact);
    }

    [Theory]
    [InlineData(-2)]
    [InlineData(-1)]
    [InlineData(-4)]
    [InlineData(0)]
    [InlineData(41)]
    [InlineData(long.MaxValue)]
    public void the_raw_value_round_trips(long value) =>
        Assert.Equal(value, ExpectedVersion.FromValue(value).Value);

    [Theory]
    [InlineData(-3)]
    [InlineData(-5)]
    [InlineData(long.MinValue)]
    public void impossible_raw_values_are_refused(long value) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => ExpectedVersion.FromValue(value));

    [Fact]
    public void negative_exact_versions_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => ExpectedVersion.Exactly(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => ExpectedVersion.Exactly(-5));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ExpectedVersion(-2));
    }

    [Fact]
    public void each_expectation_is_satisfied_by_the_right_stream_states()
    {
        Assert.True(ExpectedVersion.Any.IsSatisfiedBy(null));
        Assert.True(ExpectedVersion.Any.IsSatisfiedBy(5));
        Assert.True(ExpectedVersion.NoStream.IsSatisfiedBy(null));
        Assert.False(ExpectedVersion.NoStream.IsSatisfiedBy(0));
        Assert.False(ExpectedVersion.StreamExists.IsSatisfiedBy(null));
        Assert.True(ExpectedVersion.StreamExists.IsSatisfiedBy(0));
        Assert.True(ExpectedVersion.Exactly(3).IsSatisfiedBy(3));
        Assert.False(ExpectedVersion.Exactly(3).IsSatisfiedBy(4));
        Assert.False(ExpectedVersion.Exactly(0).IsSatisfiedBy(null));
    }
}

public sealed class GlobalPositionTests
{
    [Fact]
    public void the_start_is_zero_and_the_default()
    {
        Assert.Equal(0, GlobalPosition.Start.Value);
        Assert.Equal(default, GlobalPosition.Start);
        Assert.Equal(new GlobalPosition(1), GlobalPosition.Start.Next);
    }

    [Fact]
    public void a_negative_position_is_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new GlobalPosition(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() =>
        {
            GlobalPosition p = -7;
            return p;
        });
    }

    [Fact]
    public void positions_compare_by_value()
    {
        GlobalPosition three = 3;
        GlobalPosition five = 5;
        Assert.True(three < five);
        Assert.True(five > three);
        Assert.True(three <= 3);
        Assert.True(five >= 5);
        Assert.False(three > five);
        Assert.Equal(-1, three.CompareTo(five));
        Assert.Equal(0, five.CompareTo(5));
        Assert.Equal([1, 3, 5], new GlobalPosition[] { 5, 1, 3 }.Order().Select(p => p.Value));
        Assert.Equal("5", five.ToString());
        Assert.Equal(new GlobalPosition(long.MaxValue), (GlobalPosition)long.MaxValue);
    }
}

public sealed class MessageIdTests
{
    [Fact]
    public void the_empty_guid_is_refused()
    {
        Assert.Throws<ArgumentException>(() => new MessageId(Guid.Empty));
        Assert.Throws<ArgumentException>(() =>
        {
            MessageId id = Guid.Empty;
            return id;
        });
        Assert.Throws<ArgumentException>(() => MessageId.Parse("00000000-0000-0000-0000-000000000000"));
    }

    private static long UnixMillisecondsOf(Guid id)
    {
        Span<byte> bytes = stackalloc byte[16];
        Assert.True(id.TryWriteBytes(bytes, bigEndian: true, out _));
        long ms = 0;
        for (var i = 0; i < 6; i++)
        {
            ms = (ms << 8) | bytes[i];
        }

        return ms;
    }

    [Fact]
    public void a_new_id_is_version_7_of_the_rfc_variant_and_carries_the_time_it_was_made()
    {
        var before = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var id = MessageId.New().Value;
        var after = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

        Assert.Equal(7, id.Version);
        Assert.Equal(0b1000, id.Variant & 0b1100);
        Assert.InRange(UnixMillisecondsOf(id), before, after);
    }

    [Fact]
    public void ids_of_a_given_time_lay_it_out_big_endian_and_sort_by_it_as_guids_and_as_text()
    {
        const long Time = 0x0123_4567_89AB;
        var earlier = MessageId.Version7.New(Time);
        var later = MessageId.Version7.New(Time + 1);

        Assert.StartsWith("01234567-89ab-7", earlier.ToString("D"), StringComparison.Ordinal);
        Assert.Equal(Time, UnixMillisecondsOf(earlier));
        Assert.True(earlier.CompareTo(later) < 0);
        Assert.True(string.CompareOrdinal(earlier.ToString("D"), later.ToString("D")) < 0);
    }

    [Fact]
    public void an_id_is_written_as_its_own_text_only()
    {
        var id = MessageId.New();
        Assert.True(id.IsWrittenAs(id.ToString()));
        Assert.False(id.IsWrittenAs(id.ToString().ToUpperInvariant()));
        Assert.False(id.IsWrittenAs(id.Value.ToString("N")));
        Assert.False(id.IsWrittenAs(MessageId.New().ToString()));
        Assert.False(id.IsWrittenAs(null));
        Assert.False(id.IsWrittenAs("order-1"));
    }

    [Fact]
    public void derived_ids_are_the_same_for_a_key_and_time_and_differ_by_key()
    {
        var time = DateTimeOffset.FromUnixTimeMilliseconds(0x0123_4567_89AB);
        var id = MessageId.Derive("wf:a-1@3", time);

        Assert.Equal(id, MessageId.Derive("wf:a-1@3", time));
        Assert.NotEqual(id, MessageId.Derive("wf:a-1@4", time));
        Assert.NotEqual(id, MessageId.Derive("wf:a-1@3", time.AddMilliseconds(1)));
        Assert.Equal(8, id.Value.Version);
        Assert.Equal(0b1000, id.Value.Variant & 0b1100);
        Assert.StartsWith("01234567-89ab-8", id.ToString(), StringComparison.Ordinal);
        Assert.Equal(1_000, Enumerable.Range(0, 1_000).Select(i => MessageId.Derive($"wf:a-1@{i}", time)).Distinct().Count());
    }

    [Fact]
    public void derived_ids_sort_by_their_time_before_their_key_among_new_ids()
    {
        // Whatever the keys hash to, a later time sorts after: so an index keyed by message id takes the ids of work
        // in flight at its right edge, beside the version 7 ids made at the same time.
        var time = DateTimeOffset.FromUnixTimeMilliseconds(0x0123_4567_89AB);
        var ids = new List<Guid>();
        for (var ms = 0; ms < 50; ms++)
        {
            ids.Add(MessageId.Derive($"wf:order-{50 - ms}@1", time.AddMilliseconds(ms)).Value);
            ids.Add(MessageId.Version7.New(time.ToUnixTimeMilliseconds() + ms + 1));
        }

        Assert.Equal(ids, ids.Order());
        Assert.Equal(ids.Select(i => i.ToString("D")), ids.Select(i => i.ToString("D")).Order(StringComparer.Ordinal));
        Assert.Equal(ids.Select(i => Convert.ToHexString(i.ToByteArray(bigEndian: true))), ids.Select(i => Convert.ToHexString(i.ToByteArray(bigEndian: true))).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void ids_made_on_many_threads_past_many_refills_of_the_random_buffer_are_all_different()
    {
        // Eight threads of 5,000 ids each, started together: each thread's buffer is refilled about twenty times.
        var ids = new ConcurrentBag<Guid>();
        using var start = new Barrier(8);
        var threads = Enumerable.Range(0, 8).Select(_ => new Thread(() =>
        {
            start.SignalAndWait();
            for (var i = 0; i < 5_000; i++)
            {
                ids.Add(MessageId.New().Value);
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());

        Assert.Equal(40_000, ids.Count);
        Assert.Equal(40_000, ids.Distinct().Count());

        // The random part must not repeat within one millisecond either: the ids of one time differ in it alone.
        var sameTime = Enumerable.Range(0, 1_000).Select(_ => MessageId.Version7.New(42)).ToList();
        Assert.Equal(1_000, sameTime.Distinct().Count());
        Assert.All(sameTime, id => Assert.Equal(7, id.Version));
    }

    [Fact]
    public void an_id_round_trips_through_its_string_form()
    {
        var id = MessageId.New();
        var text = id.ToString();
        Assert.Equal(36, text.Length);
        Assert.Equal(text.ToLowerInvariant(), text);
        Assert.Equal(id, MessageId.Parse(text));
        Assert.Equal(id, MessageId.Parse(id.Value.ToString("N")));
        Assert.Equal(id, MessageId.Parse(id.Value.ToString("B").ToUpperInvariant()));
        Assert.Throws<FormatException>(() => MessageId.Parse("not-an-id"));
    }

    [Fact]
    public void ids_compare_by_value()
    {
        var guid = Guid.NewGuid();
        MessageId fromGuid = guid;
        Assert.Equal(new MessageId(guid), fromGuid);
        Assert.NotEqual(MessageId.New(), MessageId.New());
    }
}

public sealed class StoredTextTests
{
    [Fact]
    public void the_check_finds_exactly_the_control_characters_and_lone_surrogates_wherever_they_stand()
    {
        // Each code unit alone: refused when char.IsControl names it, or when it is half of a surrogate pair.
        for (var c = char.MinValue; ; c++)
        {
            Assert.Equal(char.IsControl(c) || char.IsSurrogate(c), StoredText.Refuses(new string(c, 1)));
            if (c == char.MaxValue)
            {
                break;
            }
        }

        // Past the vectorised search's first block, and at its end, as well as at the start.
        var text = new string('a', 100);
        Assert.False(StoredText.Refuses(text));
        Assert.True(StoredText.Refuses(text + "\u0085"));
        Assert.True(StoredText.Refuses(text[..40] + "\n" + text[40..]));
        Assert.True(StoredText.Refuses("\u007F" + text));
        Assert.False(StoredText.Refuses(string.Empty));

        // A pair is one character; either half alone, or the halves in the wrong order, is not.
        Assert.False(StoredText.Refuses(text + "\uD83D\uDE00" + text));
        Assert.True(StoredText.Refuses(text + "\uD83D" + text));
        Assert.True(StoredText.Refuses(text + "\uDE00"));
        Assert.True(StoredText.Refuses("\uDE00\uD83D"));
        Assert.True(StoredText.Refuses("\uD83D\uDE00\uD83D"));
    }
}
