using System.Text;
using System.Text.Json;
using Cairn.EventStore;
using Cairn.Messaging.Filtering;

namespace Cairn.Tests.Messaging;

public sealed class FilterRuleTests
{
    public static TheoryData<string, string, bool> Cases => new()
    {
        // exact values, lists, nesting
        { """{"source":["orders"]}""", """{"source":"orders"}""", true },
        { """{"source":["orders"]}""", """{"source":"billing"}""", false },
        { """{"source":["orders","billing"]}""", """{"source":"billing"}""", true },
        { """{"source":["orders"]}""", """{"type":"x"}""", false },
        { """{"data":{"state":["open"]}}""", """{"data":{"state":"open"}}""", true },
        { """{"data":{"state":["open"]}}""", """{"data":{"state":"closed"}}""", false },
        { """{"data":{"state":["open"]}}""", """{"state":"open"}""", false },
        { """{"data":{"a":{"b":["x"]}}}""", """{"data":{"a":{"b":"x"}}}""", true },
        { """{"a":["x"],"b":["y"]}""", """{"a":"x","b":"z"}""", false },
        { """{}""", """{"a":1}""", true },
        // strings are not numbers, numbers compare numerically
        { """{"n":[300]}""", """{"n":300.0}""", true },
        { """{"n":[300]}""", """{"n":3e2}""", true },
        { """{"n":[300]}""", """{"n":"300"}""", false },
        { """{"n":["300"]}""", """{"n":300}""", false },
        { """{"b":[true]}""", """{"b":true}""", true },
        { """{"b":[true]}""", """{"b":"true"}""", false },
        // null and empty string
        { """{"v":[null]}""", """{"v":null}""", true },
        { """{"v":[null]}""", """{}""", false },
        { """{"v":[null]}""", """{"v":""}""", false },
        { """{"v":[""]}""", """{"v":""}""", true },
        { """{"v":[""]}""", """{"v":null}""", false },
        // arrays in the event
        { """{"tags":["b"]}""", """{"tags":["a","b","c"]}""", true },
        { """{"tags":["z"]}""", """{"tags":["a","b","c"]}""", false },
        { """{"items":{"sku":["x2"]}}""", """{"items":[{"sku":"x1"},{"sku":"x2"}]}""", true },
        { """{"items":{"sku":["x3"]}}""", """{"items":[{"sku":"x1"},{"sku":"x2"}]}""", false },
        { """{"items":{"sku":["x1"],"qty":[2]}}""", """{"items":[{"sku":"x1","qty":1},{"sku":"x2","qty":2}]}""", false },
        // prefix
        { """{"r":[{"prefix":"eu-"}]}""", """{"r":"eu-west-1"}""", true },
        { """{"r":[{"prefix":"eu-"}]}""", """{"r":"us-east-1"}""", false },
        { """{"r":[{"prefix":"EU-"}]}""", """{"r":"eu-west-1"}""", false },
        { """{"r":[{"prefix":{"equals-ignore-case":"EU-"}}]}""", """{"r":"eu-west-1"}""", true },
        { """{"r":[{"prefix":{"equals-ignore-case":"US-"}}]}""", """{"r":"eu-west-1"}""", false },
        { """{"n":[{"prefix":"1"}]}""", """{"n":123}""", false },
        // suffix
        { """{"f":[{"suffix":".png"}]}""", """{"f":"cat.png"}""", true },
        { """{"f":[{"suffix":".png"}]}""", """{"f":"cat.jpg"}""", false },
        { """{"f":[{"suffix":{"equals-ignore-case":".PNG"}}]}""", """{"f":"cat.png"}""", true },
        { """{"f":[{"suffix":{"equals-ignore-case":".PNG"}}]}""", """{"f":"cat.gif"}""", false },
        // equals-ignore-case
        { """{"s":[{"equals-ignore-case":"ALICE"}]}""", """{"s":"alice"}""", true },
        { """{"s":[{"equals-ignore-case":"ALICE"}]}""", """{"s":"bob"}""", false },
        // wildcard
        { """{"k":[{"wildcard":"dir/*.png"}]}""", """{"k":"dir/a/b.png"}""", true },
        { """{"k":[{"wildcard":"dir/*.png"}]}""", """{"k":"dir/a/b.jpg"}""", false },
        { """{"k":[{"wildcard":"*a*b*"}]}""", """{"k":"xaybz"}""", true },
        { """{"k":[{"wildcard":"*a*b*"}]}""", """{"k":"xbya"}""", false },
        { """{"k":[{"wildcard":"a\\*b"}]}""", """{"k":"a*b"}""", true },
        { """{"k":[{"wildcard":"a\\*b"}]}""", """{"k":"axb"}""", false },
        // anything-but
        { """{"s":[{"anything-but":"x"}]}""", """{"s":"y"}""", true },
        { """{"s":[{"anything-but":"x"}]}""", """{"s":"x"}""", false },
        { """{"s":[{"anything-but":"x"}]}""", """{}""", false },
        { """{"s":[{"anything-but":["x","y"]}]}""", """{"s":"z"}""", true },
        { """{"s":[{"anything-but":["x","y"]}]}""", """{"s":"y"}""", false },
        { """{"n":[{"anything-but":[100,200]}]}""", """{"n":100.0}""", false },
        { """{"n":[{"anything-but":[100,200]}]}""", """{"n":150}""", true },
        { """{"s":[{"anything-but":{"prefix":"init"}}]}""", """{"s":"running"}""", true },
        { """{"s":[{"anything-but":{"prefix":"init"}}]}""", """{"s":"initializing"}""", false },
        { """{"s":[{"anything-but":{"suffix":".tmp"}}]}""", """{"s":"a.txt"}""", true },
        { """{"s":[{"anything-but":{"suffix":".tmp"}}]}""", """{"s":"a.tmp"}""", false },
        { """{"s":[{"anything-but":{"wildcard":"*/lib/*"}}]}""", """{"s":"/usr/bin/x"}""", true },
        { """{"s":[{"anything-but":{"wildcard":"*/lib/*"}}]}""", """{"s":"/usr/lib/x"}""", false },
        { """{"s":[{"anything-but":{"equals-ignore-case":["A","B"]}}]}""", """{"s":"c"}""", true },
        { """{"s":[{"anything-but":{"equals-ignore-case":["A","B"]}}]}""", """{"s":"b"}""", false },
        { """{"s":[{"anything-but":"x"}]}""", """{"s":["x","y"]}""", true },
        { """{"s":[{"anything-but":"x"}]}""", """{"s":["x"]}""", false },
        // numeric
        { """{"p":[{"numeric":[">",0,"<=",5]}]}""", """{"p":5}""", true },
        { """{"p":[{"numeric":[">",0,"<=",5]}]}""", """{"p":0}""", false },
        { """{"p":[{"numeric":[">",0,"<=",5]}]}""", """{"p":5.5}""", false },
        { """{"p":[{"numeric":["=",3]}]}""", """{"p":3.0}""", true },
        { """{"p":[{"numeric":["=",3]}]}""", """{"p":4}""", false },
        { """{"p":[{"numeric":[">=",1]}]}""", """{"p":"7"}""", false },
        { """{"p":[{"numeric":["<",10]}]}""", """{"p":[20,3]}""", true },
        // numeric bounds compare exactly too: large integer ids either side of a bound that doubles round together
        { """{"id":[{"numeric":[">",9007199254740992]}]}""", """{"id":9007199254740993}""", true },
        { """{"id":[{"numeric":["<=",9007199254740992]}]}""", """{"id":9007199254740993}""", false },
        { """{"id":[{"numeric":[">=",9007199254740993]}]}""", """{"id":9007199254740992}""", false },
        { """{"id":[{"numeric":["<",9007199254740993]}]}""", """{"id":9007199254740992}""", true },
        { """{"id":[{"numeric":["=",9007199254740993]}]}""", """{"id":9007199254740992}""", false },
        { """{"id":[{"numeric":["=",9007199254740993]}]}""", """{"id":9007199254740993}""", true },
        { """{"id":[{"numeric":[">",9007199254740992,"<",9007199254740994]}]}""", """{"id":9007199254740993}""", true },
        // and amounts with more digits than a double keeps
        { """{"amount":[{"numeric":[">",791155395471134.61]}]}""", """{"amount":791155395471134.62}""", true },
        { """{"amount":[{"numeric":["<=",425315371697.101910]}]}""", """{"amount":425315371697.101911}""", false },
        { """{"amount":[{"numeric":[">=",791155395471134.61,"<",791155395471134.62]}]}""", """{"amount":791155395471134.610}""", true },
        // numbers a decimal would round to 0 still compare as doubles
        { """{"n":[{"numeric":[">",0]}]}""", """{"n":1e-30}""", true },
        { """{"n":[{"numeric":["=",0]}]}""", """{"n":1e-30}""", false },
        { """{"n":[{"numeric":["<",1e-30]}]}""", """{"n":0}""", true },
        { """{"n":[{"numeric":[">",1e-30]}]}""", """{"n":2e-30}""", true },
        { """{"n":[{"numeric":["<",-1e-30]}]}""", """{"n":-2e-30}""", true },
        // as do numbers past a decimal's range, and non-integers compare by value
        { """{"n":[{"numeric":[">",9007199254740992]}]}""", """{"n":1e300}""", true },
        { """{"n":[{"numeric":["<",1e300]}]}""", """{"n":1e299}""", true },
        { """{"p":[{"numeric":[">",0.1]}]}""", """{"p":0.10}""", false },
        { """{"p":[{"numeric":[">",0.1]}]}""", """{"p":0.11}""", true },
        { """{"p":[{"numeric":["<",2.5]}]}""", """{"p":2.4999}""", true },
        { """{"p":[{"numeric":["<=",-0.5]}]}""", """{"p":-5e-1}""", true },
        // exists
        { """{"c":[{"exists":true}]}""", """{"c":"x"}""", true },
        { """{"c":[{"exists":true}]}""", """{"c":null}""", true },
        { """{"c":[{"exists":true}]}""", """{"d":"x"}""", false },
        { """{"c":[{"exists":false}]}""", """{"d":"x"}""", true },
        { """{"c":[{"exists":false}]}""", """{"c":null}""", false },
        { """{"c":[{"exists":false}]}""", """{"c":"x"}""", false },
        { """{"data":{"c":[{"exists":false}]}}""", """{"other":1}""", true },
        { """{"data":{"c":[{"exists":true}]}}""", """{"data":{"c":{"nested":1}}}""", false },
        // cidr
        { """{"ip":[{"cidr":"10.0.0.0/24"}]}""", """{"ip":"10.0.0.255"}""", true },
        { """{"ip":[{"cidr":"10.0.0.0/24"}]}""", """{"ip":"10.0.1.1"}""", false },
        { """{"ip":[{"cidr":"10.0.0.0/24"}]}""", """{"ip":"not an ip"}""", false },
        { """{"ip":[{"cidr":"2001:db8::/32"}]}""", """{"ip":"2001:db8:1::5"}""", true },
        { """{"ip":[{"cidr":"2001:db8::/32"}]}""", """{"ip":"2001:db9::5"}""", false },
        // old IPv4 shorthands are not addresses
        { """{"ip":[{"cidr":"10.0.0.0/24"}]}""", """{"ip":"10.1"}""", false },
        { """{"ip":[{"cidr":"10.0.0.0/24"}]}""", """{"ip":"10.0.1"}""", false },
        { """{"ip":[{"cidr":"10.0.0.0/24"}]}""", """{"ip":"167772161"}""", false },
        { """{"ip":[{"cidr":"10.0.0.0/24"}]}""", """{"ip":"0xA.0.0.1"}""", false },
        { """{"ip":[{"cidr":"10.0.0.0/24"}]}""", """{"ip":"10.0.0.256"}""", false },
        { """{"ip":[{"cidr":"8.0.0.0/24"}]}""", """{"ip":"010.0.0.1"}""", false },
        { """{"ip":[{"cidr":"10.0.0.0/24"}]}""", """{"ip":"010.0.0.1"}""", false },
        { """{"ip":[{"cidr":"10.0.0.0/24"}]}""", """{"ip":"10.0.0.0"}""", true },
        { """{"ip":[{"cidr":"2001:db8::/32"}]}""", """{"ip":"[2001:db8::5]:443"}""", false },
        { """{"ip":[{"cidr":"2001:db8::/32"}]}""", """{"ip":"[2001:db8::5]"}""", false },
        { """{"ip":[{"cidr":"fe80::/10"}]}""", """{"ip":"fe80::1%eth0"}""", false },
        { """{"ip":[{"cidr":"2001:db8::/32"}]}""", """{"ip":"2001:db8::10.0.0.1"}""", true },
        // exact numbers: large integers told apart, equal values in any notation alike
        { """{"account":[9007199254740993]}""", """{"account":9007199254740992}""", false },
        { """{"account":[9007199254740993]}""", """{"account":9007199254740993}""", true },
        { """{"n":[3e2]}""", """{"n":300}""", true },
        { """{"n":[1]}""", """{"n":1.0}""", true },
        { """{"n":[1e300]}""", """{"n":1e300}""", true },
        { """{"n":[{"anything-but":[9007199254740993]}]}""", """{"n":9007199254740992}""", true },
        // numbers a decimal would round to 0 are not 0
        { """{"n":[0]}""", """{"n":1e-30}""", false },
        { """{"n":[1e-30]}""", """{"n":0}""", false },
        { """{"n":[1e-30]}""", """{"n":1E-30}""", true },
        { """{"n":[{"anything-but":[0]}]}""", """{"n":1e-30}""", true },
        { """{"n":[0.1]}""", """{"n":0.10}""", true },
        // amounts with more digits than a double keeps are told apart
        { """{"amount":[791155395471134.61]}""", """{"amount":791155395471134.62}""", false },
        { """{"amount":[425315371697.101910]}""", """{"amount":425315371697.101911}""", false },
        { """{"amount":[{"anything-but":[791155395471134.61]}]}""", """{"amount":791155395471134.62}""", true },
        { """{"amount":[791155395471134.61]}""", """{"amount":791155395471134.610}""", true },
        // 29 digits a decimal holds exactly (10m / 3m is written so) are told apart; past its mantissa they are doubles
        { """{"n":[79228162514264337593543950335]}""", """{"n":79228162514264337593543950334}""", false },
        { """{"n":[3.3333333333333333333333333334]}""", """{"n":3.3333333333333333333333333333}""", false },
        { """{"n":[3.3333333333333333333333333333]}""", """{"n":3.33333333333333333333333333330}""", true },
        { """{"n":[{"numeric":["<",79228162514264337593543950335]}]}""", """{"n":79228162514264337593543950334}""", true },
        { """{"n":[7922816251426433759354395033.5]}""", """{"n":7922816251426433759354395033.4}""", false },
        { """{"n":[79228162514264337593543950336]}""", """{"n":79228162514264337593543950336}""", true },
        { """{"n":[99999999999999999999999999999]}""", """{"n":1e29}""", true },
        // $or
        { """{"$or":[{"a":["x"]},{"b":["y"]}]}""", """{"b":"y"}""", true },
        { """{"$or":[{"a":["x"]},{"b":["y"]}]}""", """{"a":"y","b":"x"}""", false },
        { """{"t":["order"],"$or":[{"n":[{"numeric":[">",10]}]},{"vip":[true]}]}""", """{"t":"order","n":1,"vip":true}""", true },
        { """{"t":["order"],"$or":[{"n":[{"numeric":[">",10]}]},{"vip":[true]}]}""", """{"t":"refund","n":20}""", false },
        { """{"data":{"$or":[{"a":["x"]},{"b":{"c":["y"]}}]}}""", """{"data":{"b":{"c":"y"}}}""", true },
        { """{"data":{"$or":[{"a":["x"]},{"b":{"c":["y"]}}]}}""", """{"data":{"b":{"c":"z"}}}""", false },
        // several operators in one leaf list are OR
        { """{"v":[{"prefix":"a"},{"numeric":[">",5]},null]}""", """{"v":9}""", true },
        { """{"v":[{"prefix":"a"},{"numeric":[">",5]},null]}""", """{"v":"b"}""", false },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void a_rule_matches_the_event_as_eventbridge_does(string rule, string json, bool expected)
    {
        var compiled = FilterRule.Parse(rule);
        using var document = JsonDocument.Parse(json);

        Assert.Equal(expected, compiled.Matches(document.RootElement));
        Assert.Equal(expected, compiled.Matches(Encoding.UTF8.GetBytes(json)));
    }

    public static TheoryData<string, string> Malformed => new()
    {
        { """["a"]""", "$" },
        { """{"a":""", "$" },
        { """{"a":"x"}""", "$.a" },
        { """{"a":5}""", "$.a" },
        { """{"a":[]}""", "$.a" },
        { """{"a":{}}""", "$.a" },
        { """{"a":{"b":[]}}""", "$.a.b" },
        { """{"a":[["x"]]}""", "$.a[0]" },
        { """{"a":[{}]}""", "$.a[0]" },
        { """{"a":[{"prefix":"x","suffix":"y"}]}""", "$.a[0].suffix" },
        { """{"a":[{"bogus":1}]}""", "$.a[0].bogus" },
        { """{"detail":{"price":[{"numeric":[">",0,"<"]}]}}""", "$.detail.price[0].numeric" },
        { """{"detail":{"price":[{"numeric":[]}]}}""", "$.detail.price[0].numeric" },
        { """{"detail":{"price":[{"numeric":">"}]}}""", "$.detail.price[0].numeric" },
        { """{"detail":{"price":[{"numeric":[">","5"]}]}}""", "$.detail.price[0].numeric[1]" },
        { """{"detail":{"price":[{"numeric":["!=",5]}]}}""", "$.detail.price[0].numeric[0]" },
        { """{"a":[{"prefix":5}]}""", "$.a[0].prefix" },
        { """{"a":[{"prefix":{"bogus":"x"}}]}""", "$.a[0].prefix" },
        { """{"a":[{"suffix":{"equals-ignore-case":1}}]}""", "$.a[0].suffix.equals-ignore-case" },
        { """{"a":[{"equals-ignore-case":["x"]}]}""", "$.a[0].equals-ignore-case" },
        { """{"a":[{"cidr":"10.0.0.0/33"}]}""", "$.a[0].cidr" },
        { """{"a":[{"cidr":"10.0.0.1"}]}""", "$.a[0].cidr" },
        { """{"a":[{"cidr":"2001:db8::/129"}]}""", "$.a[0].cidr" },
        { """{"a":[{"cidr":"nonsense/8"}]}""", "$.a[0].cidr" },
        { """{"a":[{"cidr":"10/8"}]}""", "$.a[0].cidr" },
        { """{"a":[{"cidr":"010.0.0.0/8"}]}""", "$.a[0].cidr" },
        { """{"a":[{"cidr":"[2001:db8::]/32"}]}""", "$.a[0].cidr" },
        { """{"a":[{"exists":"true"}]}""", "$.a[0].exists" },
        { """{"a":[{"wildcard":"a**b"}]}""", "$.a[0].wildcard" },
        { """{"a":[{"wildcard":5}]}""", "$.a[0].wildcard" },
        { """{"a":[{"anything-but":[]}]}""", "$.a[0].anything-but" },
        { """{"a":[{"anything-but":["x",true]}]}""", "$.a[0].anything-but[1]" },
        { """{"a":[{"anything-but":{"numeric":[">",1]}}]}""", "$.a[0].anything-but.numeric" },
        { """{"a":[{"anything-but":{"wildcard":"x**"}}]}""", "$.a[0].anything-but.wildcard" },
        { """{"a":[{"anything-but":null}]}""", "$.a[0].anything-but" },
        { """{"$or":{"a":["x"]}}""", "$.$or" },
        { """{"$or":[]}""", "$.$or" },
        { """{"$or":[{"a":["x"]},"b"]}""", "$.$or[1]" },
        { """{"$or":[{"a":["x"]},{}]}""", "$.$or[1]" },
        { """{"x":{"$or":[{"a":[]}]}}""", "$.x.$or[0].a" },
        { """{"a b":"x"}""", "$['a b']" },
    };

    [Theory]
    [MemberData(nameof(Malformed))]
    public void a_malformed_rule_is_refused_with_the_path_of_the_fault(string rule, string path)
    {
        var error = Assert.Throws<InvalidFilterRuleException>(() => FilterRule.Parse(rule));

        Assert.Equal(path, error.Path);
        Assert.Contains(path, error.Message, StringComparison.Ordinal);
        Assert.IsAssignableFrom<CairnException>(error);
    }

    [Fact]
    public void a_rule_reaches_the_deepest_value_data_may_hold_and_one_deeper_is_refused_for_its_depth()
    {
        static string Nested(int depth, string leaf) => string.Concat(Enumerable.Repeat("{\"a\":", depth)) + leaf + new string('}', depth);

        // Data nests 64 levels, as an append accepts it; the rule's leaf list is one level below the value it tests.
        var envelope = "{\"specversion\":\"1.0\",\"type\":\"deep.event\",\"data\":" + Nested(JsonPayload.MaxDepth, "\"x\"") + "}";
        var rule = FilterRule.Parse("{\"data\":" + Nested(JsonPayload.MaxDepth, "[\"x\"]") + "}");
        Assert.True(rule.Matches(Encoding.UTF8.GetBytes(envelope)));

        var tooDeep = Assert.Throws<InvalidFilterRuleException>(() => FilterRule.Parse("{\"data\":" + Nested(JsonPayload.MaxDepth + 1, "[\"x\"]") + "}"));
        Assert.Contains("nests deeper than 66 levels", tooDeep.Reason, StringComparison.Ordinal);
        var broken = Assert.Throws<InvalidFilterRuleException>(() => FilterRule.Parse("{\"data\":" + Nested(3, "[\"x\"") + "}"));
        Assert.Equal("the rule is not valid JSON", broken.Reason);
    }

    [Fact]
    public void a_document_that_is_not_an_object_never_matches()
    {
        var rule = FilterRule.Parse("""{"a":[{"exists":false}]}""");
        using var document = JsonDocument.Parse("[1]");

        Assert.False(rule.Matches(document.RootElement));
        Assert.True(rule.Matches("{}"u8.ToArray()));
    }

    [Fact]
    public void the_rule_keeps_its_source_text()
    {
        const string json = """{"a":["x"]}""";

        Assert.Equal(json, FilterRule.Parse(json).ToString());
    }
}
