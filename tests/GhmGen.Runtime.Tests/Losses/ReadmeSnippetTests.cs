namespace GhmGen.Runtime.Tests.Losses;

/// <summary>README.md's GHM-loss example is the code that <see cref="UsageExampleTests"/> compiles and runs.</summary>
public class ReadmeSnippetTests
{
    [Fact]
    public void ReadmeExample_IsTheTestedSnippet()
    {
        string root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "GhmGen.sln"))) root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException("GhmGen.sln not found");
        string readme = File.ReadAllText(Path.Combine(root, "README.md"));
        int marker = readme.IndexOf("<!-- README example: ghm-losses -->", StringComparison.Ordinal);
        Assert.True(marker >= 0, "README marker missing");
        int start = readme.IndexOf("```csharp\n", marker, StringComparison.Ordinal) + "```csharp\n".Length;
        string block = readme[start..readme.IndexOf("```", start, StringComparison.Ordinal)];

        string test = File.ReadAllText(Path.Combine(root, "tests", "GhmGen.Runtime.Tests", "Losses", "UsageExampleTests.cs"));
        int a = test.IndexOf("// ---- README snippet starts", StringComparison.Ordinal);
        a = test.IndexOf('\n', a) + 1;
        int b = test.IndexOf("    // ---- README snippet ends", StringComparison.Ordinal);
        string snippet = string.Join("\n", test[a..b].Split('\n').Select(l => l.StartsWith("    ", StringComparison.Ordinal) ? l[4..] : l)).Trim();

        string readmeCode = string.Join("\n", block.Split('\n').Where(l => !l.StartsWith("using ", StringComparison.Ordinal))).Trim();
        Assert.Equal(snippet, readmeCode);
    }
}
