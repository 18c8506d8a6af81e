using System.Collections.Immutable;
using GhmGen.Description;
using GhmGen.Generators;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace GhmGen.Generators.Tests;

/// <summary>Runs <see cref="NetworkGenerator"/> over source text, as the compiler would.</summary>
internal static class GeneratorHarness
{
    private static readonly Lazy<ImmutableArray<MetadataReference>> References = new(() =>
    {
        var refs = new List<MetadataReference>();
        string tpa = (string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!;
        foreach (string path in tpa.Split(Path.PathSeparator))
            if (Path.GetFileName(path).StartsWith("System.", StringComparison.Ordinal) || Path.GetFileName(path) is "netstandard.dll" or "mscorlib.dll")
                refs.Add(MetadataReference.CreateFromFile(path));
        refs.Add(MetadataReference.CreateFromFile(typeof(NetworkAttribute).Assembly.Location));
        return [.. refs];
    });

    public static readonly CSharpParseOptions ParseOptions = new(LanguageVersion.Preview);

    public static CSharpCompilation Compile(params string[] sources) => CSharpCompilation.Create(
        "GeneratorTest",
        sources.Select((s, i) => CSharpSyntaxTree.ParseText(s, ParseOptions, path: $"Source{i}.cs")),
        References.Value,
        new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable));

    public static GeneratorDriver CreateDriver() => CSharpGeneratorDriver.Create(
        [new NetworkGenerator().AsSourceGenerator()],
        parseOptions: ParseOptions,
        driverOptions: new GeneratorDriverOptions(IncrementalGeneratorOutputKind.None, trackIncrementalGeneratorSteps: true));

    /// <summary>Generated files, generator diagnostics, and errors of the compilation with the generated code added.</summary>
    public static Result Run(params string[] sources) => Run(Compile(sources));

    /// <summary>Generated files, generator diagnostics, and errors of <paramref name="compilation"/> with the generated code added.</summary>
    public static Result Run(CSharpCompilation compilation)
    {
        GeneratorDriver driver = CreateDriver().RunGeneratorsAndUpdateCompilation(compilation, out Compilation output, out _);
        GeneratorDriverRunResult run = driver.GetRunResult();
        ImmutableArray<Diagnostic> compileErrors = output.GetDiagnostics().Where(d => d.Severity == DiagnosticSeverity.Error).ToImmutableArray();
        return new Result(
            run.GeneratedTrees.ToDictionary(t => Path.GetFileName(t.FilePath), t => t.GetText().ToString()),
            run.Diagnostics,
            compileErrors);
    }

    /// <summary>Asserts that every output of each of <paramref name="steps"/> was cached or unchanged in <paramref name="run"/>.</summary>
    public static void AssertStepsCached(GeneratorRunResult run, params string[] steps)
    {
        foreach (string step in steps)
        {
            Assert.True(run.TrackedSteps.ContainsKey(step), $"step {step} was not tracked");
            foreach (IncrementalGeneratorRunStep s in run.TrackedSteps[step])
                foreach ((object _, IncrementalStepRunReason reason) in s.Outputs)
                    Assert.True(reason is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged, $"step {step} output was {reason}");
        }
    }

    /// <summary>
    /// Every warning and error of the compilation with the generated code added, as a consumer with
    /// <c>GenerateDocumentationFile</c> on compiles it (doc comments parsed and checked: CS1591 for a
    /// public member without one, CS1574 for a cref that does not resolve), in the generated files only.
    /// </summary>
    public static ImmutableArray<Diagnostic> GeneratedCodeWarningsWithDocumentation(params string[] sources)
    {
        CSharpParseOptions options = ParseOptions.WithDocumentationMode(DocumentationMode.Diagnose);
        CSharpCompilation compilation = CSharpCompilation.Create(
            "GeneratorTest",
            sources.Select((s, i) => CSharpSyntaxTree.ParseText(s, options, path: $"Source{i}.cs")),
            References.Value,
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable));
        CSharpGeneratorDriver.Create([new NetworkGenerator().AsSourceGenerator()], parseOptions: options)
            .RunGeneratorsAndUpdateCompilation(compilation, out Compilation output, out _);
        return [.. output.GetDiagnostics().Where(d => d.Severity >= DiagnosticSeverity.Warning
            && d.Location.SourceTree?.FilePath.EndsWith(".g.cs", StringComparison.Ordinal) == true)];
    }

    public sealed record Result(
        IReadOnlyDictionary<string, string> Files,
        ImmutableArray<Diagnostic> GeneratorDiagnostics,
        ImmutableArray<Diagnostic> CompileErrors);

    /// <summary>The repository root (where GhmGen.sln is).</summary>
    public static string RepositoryRoot()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "GhmGen.sln"))) dir = Path.GetDirectoryName(dir);
        return dir ?? throw new InvalidOperationException("GhmGen.sln not found above " + AppContext.BaseDirectory);
    }

    /// <summary>The C# sources of models/GhmGen.Models.</summary>
    public static string[] ModelSources() => Directory
        .GetFiles(Path.Combine(RepositoryRoot(), "models", "GhmGen.Models"), "*.cs", SearchOption.AllDirectories)
        .Where(p => !p.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}") && !p.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}"))
        .OrderBy(p => p, StringComparer.Ordinal)
        .Select(File.ReadAllText)
        .Append(ImplicitUsings)
        .ToArray();

    /// <summary>What the SDK's ImplicitUsings adds to every project here.</summary>
    private const string ImplicitUsings =
        "global using System; global using System.Collections.Generic; global using System.IO; global using System.Linq; " +
        "global using System.Net.Http; global using System.Threading; global using System.Threading.Tasks;";
}
