using GhmGen.Backends.Cpu;
using GhmGen.Detection;
using GhmGen.Imaging;
using GhmGen.Layers;

namespace GhmGen.Models.Tests;

/// <summary>
/// <see cref="Detector.Detect"/> reuses its host buffers (network input, downloaded outputs)
/// across calls: what it allocates per call in steady state, and that reuse changes no result
/// (images of other sizes before, padding of a larger image left in the buffer, raw outputs).
/// </summary>
public sealed class DetectorBufferTests
{
    private static readonly PreprocessOptions SmallScale = new(LongEdge: 160, ShortEdge: 96);

    private static readonly Lazy<INetwork> SeededR50 = new(() =>
    {
        INetwork network = ModelRegistry.Get("retinanet-ghm-r50-fpn").Create();
        SeededWeights.Fill(network);
        return network;
    });

    private static RgbImage Image(int width, int height, int seed)
    {
        var pixels = new byte[width * height * 3];
        for (int p = 0; p < pixels.Length; p++) pixels[p] = (byte)(SeededWeights.Uniform01($"buffers{seed}", p) * 256);
        return new RgbImage(width, height, pixels);
    }

    private static Detector NewDetector(CpuBackend backend) =>
        new(ModelRegistry.Get("retinanet-ghm-r50-fpn"), SeededR50.Value, backend, preprocess: SmallScale);

    [Fact]
    public void SteadyStateCallAllocatesAFractionOfItsInputAndOutputs()
    {
        using var backend = new CpuBackend(2);
        using Detector detector = NewDetector(backend);
        // Already of its target size (160x96), so preprocessing makes no resized copy either.
        RgbImage image = Image(160, 96, 1);
        detector.Detect(image);
        detector.Detect(image);
        DetectionResult raw = detector.Detect(image, keepRaw: true);
        long hostBytes = 4L * (raw.Image.Tensor.Length + raw.Raw!.Values.Sum(v => (long)v.Length));

        const int Calls = 3;
        // This thread's allocations only (other test classes run at the same time): Detect runs
        // here, and the backend's workers allocate nothing in steady state (CpuBackendAllocationTests).
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < Calls; i++) detector.Detect(image);
        long perCall = (GC.GetAllocatedBytesForCurrentThread() - before) / Calls;

        // Fresh arrays for the input and the ten outputs would be hostBytes (~1.2 MB here) per
        // call; what is left is the detections, post-processing's bookkeeping and small arrays.
        Assert.True(perCall < hostBytes / 20, $"a steady-state Detect allocated {perCall} bytes; input and outputs are {hostBytes}");
        Console.WriteLine($"steady-state Detect at 160x96: {perCall} bytes per call (input and outputs {hostBytes})");
    }

    [Fact]
    public void ReusedBuffersGiveTheResultsOfFreshOnes()
    {
        // Larger, smaller, then other shapes: each call's buffers still hold the previous image.
        RgbImage[] images = [Image(160, 96, 2), Image(61, 40, 3), Image(40, 61, 4), Image(90, 90, 5), Image(160, 96, 6)];
        using var backend = new CpuBackend(2);
        using Detector reused = NewDetector(backend);
        var options = new PostProcessOptions(ScoreThreshold: 0.02f);
        foreach (RgbImage image in images)
        {
            DetectionResult got = reused.Detect(image, options, keepRaw: true);
            using Detector fresh = NewDetector(backend);
            DetectionResult expected = fresh.Detect(image, options, keepRaw: true);
            Assert.Equal(expected.Objects, got.Objects);
            Assert.Equal(Preprocessor.Run(image, SmallScale).Tensor, got.Image.Tensor);
            for (int i = 0; i < expected.Raw!.Values.Length; i++) Assert.Equal(expected.Raw.Values[i], got.Raw!.Values[i]);
            Assert.Empty(reused.Detect(image, options).Image.Tensor);
        }
    }
}
