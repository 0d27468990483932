using Cairn.Schemas;

namespace Cairn.Tests.Schemas.Compatibility;

/// <summary>Draft-04 exclusive flags: a bound whose value stays and whose flag goes is widened, not added.</summary>
public sealed class Draft04BoundTests
{
    // "< 5" becoming "<= 5" reads every value written before: the maximum was there on both sides.
    [Fact]
    public void a_draft_04_exclusive_maximum_made_inclusive_at_the_same_value_is_backward_compatible()
    {
        var v1 = SchemaCompatibilityTests.J("""{"$schema": "http://json-schema.org/draft-04/schema#", "type": "number", "maximum": 5, "exclusiveMaximum": true}""");
        var v2 = SchemaCompatibilityTests.J("""{"$schema": "http://json-schema.org/draft-04/schema#", "type": "number", "maximum": 5}""");

        var report = SchemaCompatibility.Check([v1], v2, CompatibilityMode.Backward);

        Assert.True(report.IsCompatible, report.ToString());
    }

    [Fact]
    public void a_draft_04_exclusive_minimum_made_inclusive_at_the_same_value_is_backward_compatible()
    {
        var v1 = SchemaCompatibilityTests.J("""{"$schema": "http://json-schema.org/draft-04/schema#", "type": "number", "minimum": 0, "exclusiveMinimum": true}""");
        var v2 = SchemaCompatibilityTests.J("""{"$schema": "http://json-schema.org/draft-04/schema#", "type": "number", "minimum": 0}""");

        var report = SchemaCompatibility.Check([v1], v2, CompatibilityMode.Backward);

        Assert.True(report.IsCompatible, report.ToString());
    }
}
