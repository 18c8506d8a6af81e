using System.Diagnostics;
using GhmGen.Datasets;

namespace GhmGen.Runtime.Tests.Datasets;

/// <summary>One default-sized synthetic set (400 train + 100 val images, seed 0), written once for the tests that read it.</summary>
public sealed class SyntheticShapesFixture : IDisposable
{
    public SyntheticShapesFixture()
    {
        Directory = SyntheticShapesTests.NewTempDirectory();
        var clock = Stopwatch.StartNew();
        Summary = SyntheticShapes.Write(Directory, Options);
        WriteTime = clock.Elapsed;
    }

    public SyntheticShapesOptions Options { get; } = new();

    public string Directory { get; }

    public SyntheticShapesSummary Summary { get; }

    public TimeSpan WriteTime { get; }

    public void Dispose() => System.IO.Directory.Delete(Directory, recursive: true);
}
