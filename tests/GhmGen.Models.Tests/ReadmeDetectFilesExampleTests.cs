using GhmGen.Backends.Cpu;
using GhmGen.Checkpoints;
using GhmGen.Layers;

namespace GhmGen.Models.Tests;

/// <summary>README.md's many-images example (<see cref="Detector.DetectFilesAsync"/>), run on seeded weights; and the README shows exactly this code.</summary>
public sealed class ReadmeDetectFilesExampleTests
{
    private static async Task Example(string checkpoint, string folder, TextWriter console, CancellationToken token)
    {
        // ---- README snippet starts ----
        using var backend = new CpuBackend();
        using var detector = Detector.Load("ghm-demo-r18-fpn", checkpoint, backend);
        string[] files = Directory.GetFiles(folder);
        await foreach (ImageDetection item in detector.DetectFilesAsync(files, cancellationToken: token))
            console.WriteLine(item.Skipped ? $"skipped {item.Error}" : $"{item.Path}: {item.Result!.Objects.Length} objects");
        // ---- README snippet ends ----
    }

    [Fact]
    public async Task Example_RunsAndPrintsALinePerFile()
    {
        string folder = Path.Combine(Path.GetTempPath(), $"ghm-readme-files-{Guid.NewGuid():N}");
        Directory.CreateDirectory(folder);
        try
        {
            string checkpoint = Path.Combine(folder, "demo.pth");
            INetwork network = ModelRegistry.Get("ghm-demo-r18-fpn").Create();
            SeededWeights.Fill(network);
            TorchCheckpoint.Write(checkpoint, network);
            string photos = Path.Combine(folder, "photos");
            Directory.CreateDirectory(photos);
            foreach (string name in (string[])["img53x37.png", "img40x61.png"])
                File.Copy(Path.Combine(AppContext.BaseDirectory, "Fixtures", "Imaging", name), Path.Combine(photos, name));
            File.WriteAllText(Path.Combine(photos, "notes.txt"), "not an image");

            var console = new StringWriter();
            await Example(checkpoint, photos, console, CancellationToken.None);
            string[] lines = console.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(3, lines.Length);
            Assert.Single(lines, l => l.StartsWith("skipped", StringComparison.Ordinal) && l.Contains("notes.txt", StringComparison.Ordinal));
            Assert.Equal(2, lines.Count(l => l.EndsWith(" objects", StringComparison.Ordinal)));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void Readme_ShowsTheTestedSnippet()
    {
        string root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "GhmGen.sln"))) root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException("GhmGen.sln not found");
        string readme = File.ReadAllText(Path.Combine(root, "README.md"));
        int marker = readme.IndexOf("<!-- README example: detect-files -->", StringComparison.Ordinal);
        Assert.True(marker >= 0, "README.md has no detect-files example");
        int start = readme.IndexOf("```csharp\n", marker, StringComparison.Ordinal) + "```csharp\n".Length;
        string block = readme[start..readme.IndexOf("```", start, StringComparison.Ordinal)];
        string readmeCode = string.Join("\n", block.Split('\n').Where(l => !(l.StartsWith("using ", StringComparison.Ordinal) && !l.Contains('=')) && l.Length > 0)).Trim()
            .Replace("\"demo.pth\"", "checkpoint").Replace("\"photos\"", "folder").Replace("Console.WriteLine", "console.WriteLine");

        string test = File.ReadAllText(Path.Combine(root, "tests", "GhmGen.Models.Tests", "ReadmeDetectFilesExampleTests.cs"));
        int a = test.IndexOf('\n', test.IndexOf("// ---- README snippet starts", StringComparison.Ordinal)) + 1;
        int b = test.IndexOf("        // ---- README snippet ends", StringComparison.Ordinal);
        string snippet = string.Join("\n", test[a..b].Split('\n').Where(l => l.Length > 0).Select(l => l.StartsWith("        ", StringComparison.Ordinal) ? l[8..] : l)).Trim();
        Assert.Equal(snippet, readmeCode);
    }
}
