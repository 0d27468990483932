using Cairn.Schemas;

namespace Cairn.Tests.Schemas.Compatibility;

/// <summary>One exclusive bound written in draft-04 and in a later draft is one bound.</summary>
public sealed class Draft04AcrossDraftsTests
{
    // "> 0" in draft-07 and "> 0" in draft-04: no value is refused by one and read by the other.
    [Fact]
    public void a_draft_07_exclusive_minimum_written_as_a_draft_04_flag_is_backward_compatible()
    {
        var v1 = SchemaCompatibilityTests.J("""{"$schema": "http://json-schema.org/draft-07/schema#", "type": "number", "exclusiveMinimum": 0}""");
        var v2 = SchemaCompatibilityTests.J("""{"$schema": "http://json-schema.org/draft-04/schema#", "type": "number", "minimum": 0, "exclusiveMinimum": true}""");

        var report = SchemaCompatibility.Check([v1], v2, CompatibilityMode.Backward);

        Assert.True(report.IsCompatible, report.ToString());
    }

    [Fact]
    public void a_draft_07_exclusive_maximum_written_as_a_draft_04_flag_is_fully_compatible()
    {
        var v1 = SchemaCompatibilityTests.J("""{"$schema": "http://json-schema.org/draft-07/schema#", "type": "number", "exclusiveMaximum": 5}""");
        var v2 = SchemaCompatibilityTests.J("""{"$schema": "http://json-schema.org/draft-04/schema#", "type": "number", "maximum": 5, "exclusiveMaximum": true}""");

        var report = SchemaCompatibility.Check([v1], v2, CompatibilityMode.Full);

        Assert.True(report.IsCompatible, report.ToString());
    }
}
