using GhmGen.Backends.Cpu;
using GhmGen.Checkpoints;
using GhmGen.Imaging;
using GhmGen.Layers;

namespace GhmGen.Models.Tests;

/// <summary>README.md's detection example, run on a checkpoint of seeded weights; and the README shows exactly this code.</summary>
public class ReadmeDetectExampleTests
{
    private static void Example(string checkpoint, string image, TextWriter console)
    {
        // ---- README snippet starts ----
        using var backend = new CpuBackend();   // all cores; CpuBackend(threads: 2) to limit
        using var detector = Detector.Load("retinanet-ghm-r50-fpn", checkpoint, backend);
        DetectionResult result = detector.Detect(ImageDecoder.Decode(image));
        foreach (var o in result.Objects)
            console.WriteLine($"{detector.ClassNames[o.Label]} {o.Score:F2} [{o.X1:F0}, {o.Y1:F0}, {o.X2:F0}, {o.Y2:F0}]");
        // ---- README snippet ends ----
    }

    [Fact]
    public void Example_RunsAndPrintsDetections()
    {
        string path = Path.Combine(Path.GetTempPath(), $"ghm-readme-{Guid.NewGuid():N}.pth");
        try
        {
            INetwork network = ModelRegistry.Get("retinanet-ghm-r50-fpn").Create();
            SeededWeights.Fill(network);
            TorchCheckpoint.Write(path, network);
            var console = new StringWriter();
            Example(path, Path.Combine(AppContext.BaseDirectory, "Fixtures", "Imaging", "img53x37.png"), console);
            string[] lines = console.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(100, lines.Length);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Readme_ShowsTheTestedSnippet()
    {
        string root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "GhmGen.sln"))) root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException("GhmGen.sln not found");
        string readme = File.ReadAllText(Path.Combine(root, "README.md"));
        int marker = readme.IndexOf("<!-- README example: detect -->", StringComparison.Ordinal);
        int start = readme.IndexOf("```csharp\n", marker, StringComparison.Ordinal) + "```csharp\n".Length;
        string block = readme[start..readme.IndexOf("```", start, StringComparison.Ordinal)];
        string readmeCode = string.Join("\n", block.Split('\n').Where(l => !(l.StartsWith("using ", StringComparison.Ordinal) && !l.Contains('=')) && l.Length > 0)).Trim();

        string test = File.ReadAllText(Path.Combine(root, "tests", "GhmGen.Models.Tests", "ReadmeDetectExampleTests.cs"));
        int a = test.IndexOf('\n', test.IndexOf("// ---- README snippet starts", StringComparison.Ordinal)) + 1;
        int b = test.IndexOf("        // ---- README snippet ends", StringComparison.Ordinal);
        string snippet = string.Join("\n", test[a..b].Split('\n').Where(l => l.Length > 0).Select(l => l.StartsWith("        ", StringComparison.Ordinal) ? l[8..] : l))
            .Replace("\"retinanet_ghm_r50.pth\"", "checkpoint").Replace("ImageDecoder.Decode(\"street.jpg\")", "ImageDecoder.Decode(image)")
            .Replace("Console.WriteLine", "console.WriteLine").Trim();
        string normalizedReadme = readmeCode.Replace("\"retinanet_ghm_r50.pth\"", "checkpoint").Replace("ImageDecoder.Decode(\"street.jpg\")", "ImageDecoder.Decode(image)")
            .Replace("Console.WriteLine", "console.WriteLine");
        Assert.Equal(snippet, normalizedReadme);
    }
}
