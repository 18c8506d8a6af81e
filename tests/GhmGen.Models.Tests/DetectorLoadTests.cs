using GhmGen.Backends.Cpu;
using GhmGen.Checkpoints;
using GhmGen.Detection;
using GhmGen.Imaging;
using GhmGen.Layers;

namespace GhmGen.Models.Tests;

/// <summary>
/// <see cref="Detector.Load"/> and construction that fail leave nothing behind: no prepared
/// convolution or buffer alive on the backend (counted by <see cref="CountingBackend"/>) and the
/// checkpoint file closed. The small demo model keeps each load short.
/// </summary>
public sealed class DetectorLoadTests : IDisposable
{
    private const string Demo = "ghm-demo-r18-fpn";
    private static readonly PreprocessOptions SmallScale = new(LongEdge: 160, ShortEdge: 96);

    private readonly CpuBackend _cpu = new(threads: 1);
    private readonly string _checkpoint = Path.Combine(Path.GetTempPath(), $"ghm-load-{Guid.NewGuid():N}.pth");

    public DetectorLoadTests()
    {
        INetwork network = ModelRegistry.Get(Demo).Create();
        SeededWeights.Fill(network);
        TorchCheckpoint.Write(_checkpoint, network);
    }

    public void Dispose()
    {
        File.Delete(_checkpoint);
        _cpu.Dispose();
    }

    private static RgbImage Image()
    {
        var pixels = new byte[61 * 40 * 3];
        for (int p = 0; p < pixels.Length; p++) pixels[p] = (byte)(SeededWeights.Uniform01("load-image", p) * 256);
        return new RgbImage(61, 40, pixels);
    }

    /// <summary>Whether the file can be opened for exclusive use (no handle of this process holds it open).</summary>
    private static bool IsClosed(string path)
    {
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.None);
            return true;
        }
        catch (IOException)
        {
            return false;
        }
    }

    [Fact]
    public void ExclusiveOpen_SeesAnOpenCheckpoint()
    {
        // The observation the tests below rely on: a checkpoint still open is seen as open.
        using (TorchCheckpoint.Read(_checkpoint))
            Assert.False(IsClosed(_checkpoint));
        Assert.True(IsClosed(_checkpoint));
    }

    [Fact]
    public void Load_Succeeds_AndDisposeReleasesEverythingItPrepared()
    {
        var backend = new CountingBackend(_cpu);
        DetectedObject[] expected;
        using (Detector plain = Detector.Load(Demo, _checkpoint, _cpu, SmallScale))
            expected = plain.Detect(Image()).Objects;
        using (Detector detector = Detector.Load(Demo, _checkpoint, backend, SmallScale))
        {
            Assert.True(IsClosed(_checkpoint));
            Assert.True(backend.LivePrepared > 10, $"{backend.LivePrepared} convolutions prepared");
            Assert.Equal(expected, detector.Detect(Image()).Objects);
            Assert.True(backend.LiveBuffers > 0);
        }
        Assert.Equal(0, backend.LivePrepared);
        Assert.Equal(0, backend.LiveBuffers);
    }

    [Fact]
    public void Load_UnknownModel_ThrowsNamingTheKnownOnes_AndTouchesNothing()
    {
        var backend = new CountingBackend(_cpu);
        var e = Assert.Throws<ArgumentException>(() => Detector.Load("retinanet-ghm-r5O-fpn", _checkpoint, backend));
        Assert.Contains("retinanet-ghm-r5O-fpn", e.Message);
        Assert.Contains(Demo, e.Message);
        Assert.Equal(0, backend.Prepared);
        Assert.Equal(0, backend.Allocated);
        Assert.True(IsClosed(_checkpoint));
    }

    [Fact]
    public void Load_MissingFile_ThrowsNamingIt_AndPreparesNothing()
    {
        var backend = new CountingBackend(_cpu);
        string missing = _checkpoint + ".missing";
        var e = Assert.Throws<CheckpointFormatException>(() => Detector.Load(Demo, missing, backend));
        Assert.Contains(missing, e.Message);
        Assert.Equal(0, backend.Prepared);
    }

    [Fact]
    public void Load_CheckpointOfAnotherModel_ThrowsMismatch_ClosesTheFile_AndPreparesNothing()
    {
        var backend = new CountingBackend(_cpu);
        Assert.Throws<CheckpointMismatchException>(() => Detector.Load("retinanet-ghm-r50-fpn", _checkpoint, backend));
        Assert.True(IsClosed(_checkpoint));
        Assert.Equal(0, backend.Prepared);
    }

    [Fact]
    public void Load_NotACheckpoint_ThrowsFormat_AndClosesTheFile()
    {
        var backend = new CountingBackend(_cpu);
        File.WriteAllBytes(_checkpoint, [0x50, 0x4b, 0x03, 0x04, 1, 2, 3, 4, 5, 6, 7, 8]);
        Assert.Throws<CheckpointFormatException>(() => Detector.Load(Demo, _checkpoint, backend));
        Assert.True(IsClosed(_checkpoint));
        Assert.Equal(0, backend.Prepared);
    }

    [Fact]
    public void Load_PreparationFailingPartWay_ReleasesTheConvolutionsAlreadyPrepared()
    {
        var backend = new CountingBackend(_cpu) { FailPreparation = 5 };
        var e = Assert.Throws<InsufficientMemoryException>(() => Detector.Load(Demo, _checkpoint, backend, SmallScale));
        Assert.Contains("injected", e.Message);
        Assert.Equal(5, backend.Prepared); // four made before the failure ...
        Assert.Equal(0, backend.LivePrepared); // ... and all released
        Assert.True(IsClosed(_checkpoint));
    }

    [Fact]
    public void Detect_SessionAllocationFailingPartWay_ReleasesItsBuffers_AndTheDetectorStillWorks()
    {
        var backend = new CountingBackend(_cpu) { FailAllocation = 2 };
        using Detector detector = Detector.Load(Demo, _checkpoint, backend, SmallScale);
        Assert.Throws<InsufficientMemoryException>(() => detector.Detect(Image()));
        Assert.Equal(0, backend.LiveBuffers);
        using (Detector plain = Detector.Load(Demo, _checkpoint, _cpu, SmallScale))
            Assert.Equal(plain.Detect(Image()).Objects, detector.Detect(Image()).Objects);
        detector.Dispose();
        Assert.Equal(0, backend.LiveBuffers);
        Assert.Equal(0, backend.LivePrepared);
    }

    [Fact]
    public void CreateSession_BelowTheMinimumSize_ReleasesTheWeightsItPrepared()
    {
        var backend = new CountingBackend(_cpu);
        var network = (GhmDemoR18Fpn)ModelRegistry.Get(Demo).Create();
        Assert.Throws<ArgumentOutOfRangeException>(() => network.CreateSession(backend, 1, 8, 8));
        Assert.True(backend.Prepared > 10);
        Assert.Equal(0, backend.LivePrepared);
    }
}
