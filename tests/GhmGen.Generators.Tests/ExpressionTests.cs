using GhmGen.Generators.Expressions;

namespace GhmGen.Generators.Tests;

/// <summary>The integer expression language of the attributes.</summary>
public class ExpressionTests
{
    private static readonly Dictionary<string, long> Scope = new() { ["planes"] = 64, ["baseWidth"] = 4, ["groups"] = 32 };

    [Theory]
    [InlineData("planes * baseWidth / 64 * groups", 128)] // ResNeXt 32x4d width of layer1
    [InlineData("planes * 4", 256)]
    [InlineData("(planes + 2) % 5", 1)]
    [InlineData("-3 + 10 / 3", 0)]
    [InlineData("  7 ", 7)]
    public void Evaluates(string text, long expected) => Assert.Equal(expected, IntExpression.Evaluate(text, Scope, out _));

    [Theory]
    [InlineData("planes *", "ends too early")]
    [InlineData("plane", "unknown name 'plane'")]
    [InlineData("4 / (planes - 64)", "division by zero")]
    [InlineData("(4", "missing ')'")]
    [InlineData("4 4", "unexpected")]
    public void ReportsErrors(string text, string message)
    {
        Assert.Null(IntExpression.Evaluate(text, Scope, out string? error));
        Assert.Contains(message, error);
    }

    [Fact]
    public void SplitsAssignmentsAndParameters()
    {
        var pairs = IntExpression.SplitAssignments("a = 1, b = (c * 2)", out _)!;
        Assert.Equal([("a", "1"), ("b", "(c * 2)")], pairs.Select(p => (p.Key, p.Value)));
        var parameters = IntExpression.SplitParameters("planes, stride = 1", out _)!;
        Assert.Equal([("planes", (string?)null), ("stride", "1")], parameters.Select(p => (p.Key, p.Value)));
        Assert.Null(IntExpression.SplitAssignments("a 1", out string? error));
        Assert.Contains("name = expression", error);
    }
}
