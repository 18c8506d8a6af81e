using GhmGen.Backends.Cpu;
using GhmGen.Detection;
using GhmGen.Imaging;
using GhmGen.Layers;

namespace GhmGen.Models.Tests;

/// <summary>
/// <see cref="Detector.DetectAsync"/> and <see cref="Detector.DetectFilesAsync"/> against the
/// synchronous <see cref="Detector.Detect(RgbImage, PostProcessOptions?, bool, CancellationToken)"/>
/// on the same images: same detections, input order, skipped files, progress, cancellation and an
/// early end that leaves no work running. The small demo model keeps each pass short.
/// </summary>
public sealed class DetectorAsyncTests : IDisposable
{
    private static readonly PreprocessOptions SmallScale = new(LongEdge: 160, ShortEdge: 96);
    private static readonly string Fixtures = Path.Combine(AppContext.BaseDirectory, "Fixtures", "Imaging");

    private readonly CpuBackend _cpu = new(threads: 2);
    private readonly string _folder = Path.Combine(Path.GetTempPath(), $"ghm-async-{Guid.NewGuid():N}");
    private readonly INetwork _network;

    public DetectorAsyncTests()
    {
        Directory.CreateDirectory(_folder);
        _network = ModelRegistry.Get("ghm-demo-r18-fpn").Create();
        SeededWeights.Fill(_network);
    }

    public void Dispose()
    {
        Directory.Delete(_folder, recursive: true);
        _cpu.Dispose();
    }

    private Detector NewDetector(Backends.IBackend backend, int maxConcurrentForwards = 2) =>
        new(ModelRegistry.Get("ghm-demo-r18-fpn"), _network, backend, maxConcurrentForwards: maxConcurrentForwards, preprocess: SmallScale);

    /// <summary>Synchronous progress (Progress&lt;T&gt; would post to the thread pool and reorder reports).</summary>
    private sealed class Recorder(Action<DetectionProgress>? also = null) : IProgress<DetectionProgress>
    {
        public List<DetectionProgress> Reports { get; } = [];

        public void Report(DetectionProgress value)
        {
            Reports.Add(value);
            also?.Invoke(value);
        }
    }

    /// <summary>The two fixture PNGs, a missing file and a corrupt one, repeated to <paramref name="count"/> paths.</summary>
    private string[] Paths(int count)
    {
        string corrupt = Path.Combine(_folder, "corrupt.png");
        File.WriteAllBytes(corrupt, [0x89, (byte)'P', (byte)'N', (byte)'G', 13, 10, 26, 10, 0, 0, 0, 13, 1, 2, 3]);
        string[] pattern = [Path.Combine(Fixtures, "img53x37.png"), Path.Combine(_folder, "missing.png"), Path.Combine(Fixtures, "img40x61.png"), corrupt];
        return [.. Enumerable.Range(0, count).Select(i => pattern[i % pattern.Length])];
    }

    [Fact]
    public async Task DetectAsync_EqualsDetect()
    {
        using Detector detector = NewDetector(_cpu);
        RgbImage image = ImageDecoder.Decode(Path.Combine(Fixtures, "img53x37.png"));
        DetectionResult expected = detector.Detect(image);
        DetectionResult[] got = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => detector.DetectAsync(image)));
        Assert.NotEmpty(expected.Objects);
        foreach (DetectionResult r in got) Assert.Equal(expected.Objects, r.Objects);
    }

    [Fact]
    public async Task DetectAsync_Cancelled_IsCancelled_AndRunsNothing()
    {
        var backend = new CountingBackend(_cpu);
        using Detector detector = NewDetector(backend);
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        RgbImage image = ImageDecoder.Decode(Path.Combine(Fixtures, "img53x37.png"));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => detector.DetectAsync(image, cancellationToken: cancelled.Token));
        Assert.Throws<OperationCanceledException>(() => detector.Detect(image, cancellationToken: cancelled.Token));
        Assert.Equal(0, backend.Allocated); // no session was made: no forward pass started
    }

    [Fact]
    public async Task DetectFilesAsync_YieldsEveryFileInOrder_SkipsBadOnes_AndReportsProgress()
    {
        using Detector detector = NewDetector(_cpu);
        string[] paths = Paths(9);
        var progress = new Recorder();
        var items = new List<ImageDetection>();
        await foreach (ImageDetection item in detector.DetectFilesAsync(paths, maxInFlight: 3, progress: progress))
        {
            // Reported before the image is yielded: the last report is this image's.
            Assert.Equal(item.Path, progress.Reports[^1].Path);
            items.Add(item);
        }

        Assert.Equal(Enumerable.Range(0, 9), items.Select(i => i.Index));
        Assert.Equal(paths, items.Select(i => i.Path));
        for (int i = 0; i < items.Count; i++)
        {
            ImageDetection item = items[i];
            bool bad = i % 4 is 1 or 3;
            Assert.Equal(bad, item.Skipped);
            if (bad)
            {
                Assert.Null(item.Result);
                Assert.Contains(paths[i], item.Error);
            }
            else
            {
                Assert.Null(item.Error);
                Assert.Empty(item.Warnings);
                Assert.Equal(detector.Detect(ImageDecoder.Decode(paths[i])).Objects, item.Result!.Objects);
            }
        }
        Assert.Equal(Enumerable.Range(1, 9), progress.Reports.Select(r => r.Done));
        Assert.All(progress.Reports, r => Assert.Equal(9, r.Total));
        // Skipped so far after each image: paths 1, 3, 5 and 7 are bad.
        Assert.Equal([0, 1, 1, 2, 2, 3, 3, 4, 4], progress.Reports.Select(r => r.Skipped));
    }

    [Fact]
    public async Task DetectFilesAsync_Cancelled_ThrowsAtTheNextImage_AndLeavesNothingRunning()
    {
        var backend = new CountingBackend(_cpu);
        Detector detector = NewDetector(backend);
        using var cancel = new CancellationTokenSource();
        var progress = new Recorder(r => { if (r.Done == 2) cancel.Cancel(); });
        var yielded = new List<int>();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (ImageDetection item in detector.DetectFilesAsync(Paths(40), maxInFlight: 4, progress: progress, cancellationToken: cancel.Token))
                yielded.Add(item.Index);
        });
        Assert.Equal([0, 1], yielded);
        Assert.Equal(2, progress.Reports.Count);
        // Nothing is in flight once the enumeration has ended: disposing releases everything at once.
        detector.Dispose();
        Assert.Equal(0, backend.LiveBuffers);
        Assert.Equal(0, backend.LivePrepared);
    }

    [Fact]
    public async Task DetectFilesAsync_EndedEarly_StopsTheRest_AndLeavesNothingRunning()
    {
        var backend = new CountingBackend(_cpu);
        Detector detector = NewDetector(backend, maxConcurrentForwards: 1);
        int seen = 0;
        await foreach (ImageDetection item in detector.DetectFilesAsync(Paths(40), maxInFlight: 2))
        {
            Assert.Equal(0, item.Index);
            seen++;
            break;
        }
        Assert.Equal(1, seen);
        detector.Dispose();
        Assert.Equal(0, backend.LiveBuffers);
        Assert.Equal(0, backend.LivePrepared);
        Assert.Throws<ObjectDisposedException>(() => detector.Detect(ImageDecoder.Decode(Path.Combine(Fixtures, "img53x37.png"))));
    }

    [Fact]
    public void DetectFilesAsync_NegativeWindow_Throws()
    {
        using Detector detector = NewDetector(_cpu);
        Assert.Throws<ArgumentOutOfRangeException>(() => detector.DetectFilesAsync(["a.png"], maxInFlight: -1));
    }
}
