namespace GhmGen.Generators.Tests;

/// <summary>
/// A small network that uses every construct of the language. One declaration serves both test
/// projects: GhmGen.Models.Tests compiles and runs it; these tests feed its text to the generator.
/// </summary>
internal static class TinyNetSource
{
    public static string Text { get; } = File.ReadAllText(
        Path.Combine(GeneratorHarness.RepositoryRoot(), "tests", "GhmGen.Models.Tests", "Forward", "TinyNet.cs"));
}
