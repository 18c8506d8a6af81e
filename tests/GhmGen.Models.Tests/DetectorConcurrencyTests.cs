using GhmGen.Backends;
using GhmGen.Backends.Cpu;
using GhmGen.Detection;
using GhmGen.Imaging;
using GhmGen.Layers;

namespace GhmGen.Models.Tests;

/// <summary>
/// <see cref="Detector"/> and <see cref="CpuBackend"/> under concurrent callers: every call from
/// 8 threads must equal, bit for bit, what one thread gets for the same image. Images of six
/// sizes (more than the detector keeps idle sessions for) make calls lease, create and evict
/// sessions while others run. A small inference scale keeps each R-50 forward short.
/// </summary>
public sealed class DetectorConcurrencyTests
{
    private static readonly PreprocessOptions SmallScale = new(LongEdge: 160, ShortEdge: 96);

    private static readonly Lazy<INetwork> SeededR50 = new(() =>
    {
        INetwork network = ModelRegistry.Get("retinanet-ghm-r50-fpn").Create();
        SeededWeights.Fill(network);
        return network;
    });

    /// <summary>Six images of different sizes and contents (padded sizes differ too).</summary>
    private static RgbImage[] Images()
    {
        (int W, int H)[] sizes = [(61, 40), (40, 61), (100, 50), (37, 53), (90, 90), (120, 33)];
        var images = new RgbImage[sizes.Length];
        for (int i = 0; i < sizes.Length; i++)
        {
            (int w, int h) = sizes[i];
            var pixels = new byte[w * h * 3];
            for (int p = 0; p < pixels.Length; p++) pixels[p] = (byte)(SeededWeights.Uniform01($"image{i}", p) * 256);
            images[i] = new RgbImage(w, h, pixels);
        }
        return images;
    }

    private static Detector NewDetector(IBackend backend) =>
        new(ModelRegistry.Get("retinanet-ghm-r50-fpn"), SeededR50.Value, backend, preprocess: SmallScale);

    private static void AssertSame(DetectedObject[] expected, DetectedObject[] actual, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: {actual.Length} detections, single-threaded gave {expected.Length}");
        for (int i = 0; i < expected.Length; i++)
            Assert.True(expected[i] == actual[i], $"{what}: detection {i} is {actual[i]}, single-threaded gave {expected[i]}");
    }

    // Each of `threads` threads runs `calls` detections over the images in its own order and
    // compares each with the single-threaded answer.
    private static void Hammer(Func<int, Detector> detectorOf, RgbImage[] images, DetectedObject[][] expected, int threads, int calls)
    {
        using var start = new Barrier(threads);
        var failures = new System.Collections.Concurrent.ConcurrentQueue<Exception>();
        var workers = new Thread[threads];
        for (int t = 0; t < threads; t++)
        {
            int thread = t;
            workers[t] = new Thread(() =>
            {
                try
                {
                    start.SignalAndWait();
                    for (int c = 0; c < calls; c++)
                    {
                        int image = (thread * 5 + c * 7) % images.Length;
                        DetectedObject[] got = detectorOf(thread).Detect(images[image]).Objects;
                        AssertSame(expected[image], got, $"thread {thread}, call {c}, image {image}");
                    }
                }
                catch (Exception e)
                {
                    failures.Enqueue(e);
                }
            });
            workers[t].Start();
        }
        foreach (Thread w in workers) w.Join();
        if (!failures.IsEmpty) throw new AggregateException(failures);
    }

    [Fact]
    public void One_detector_called_from_8_threads_gives_the_single_threaded_detections()
    {
        RgbImage[] images = Images();
        using var backend = new CpuBackend(threads: 2);
        using Detector detector = NewDetector(backend);
        DetectedObject[][] expected = images.Select(i => detector.Detect(i).Objects).ToArray();
        Assert.All(expected, e => Assert.NotEmpty(e));

        for (int round = 0; round < 2; round++) Hammer(_ => detector, images, expected, threads: 8, calls: 6);
    }

    [Fact]
    public void Several_detectors_on_one_backend_called_at_once_give_the_single_threaded_detections()
    {
        RgbImage[] images = Images();
        using var backend = new CpuBackend(threads: 2);
        using Detector first = NewDetector(backend), second = NewDetector(backend), third = NewDetector(backend);
        Detector[] detectors = [first, second, third];
        DetectedObject[][] expected = images.Select(i => first.Detect(i).Objects).ToArray();

        for (int round = 0; round < 2; round++) Hammer(t => detectors[t % 3], images, expected, threads: 8, calls: 4);
    }

    [Fact]
    public void A_one_thread_backend_serves_concurrent_sessions()
    {
        // With one worker every op runs on its caller's thread: ops of two sessions must still
        // never interleave inside the backend's shared scratch.
        RgbImage[] images = Images();
        using var backend = new CpuBackend(threads: 1);
        using Detector detector = NewDetector(backend);
        DetectedObject[][] expected = images.Select(i => detector.Detect(i).Objects).ToArray();

        Hammer(_ => detector, images, expected, threads: 4, calls: 4);
    }

    [Fact]
    public void Use_after_dispose_throws_ObjectDisposedException()
    {
        RgbImage image = Images()[0];
        var backend = new CpuBackend(threads: 2);
        Detector detector = NewDetector(backend);
        Assert.NotEmpty(detector.Detect(image).Objects);
        detector.Dispose();
        detector.Dispose(); // twice is fine
        Assert.Throws<ObjectDisposedException>(() => detector.Detect(image));

        backend.Dispose();
        Assert.Throws<ObjectDisposedException>(() => backend.Allocate(16));
        Assert.Throws<ObjectDisposedException>(() => NewDetector(backend));
    }

    [Fact]
    public void A_session_throws_after_dispose_and_below_the_minimum_input_size()
    {
        var network = (RetinaNetGhmR50Fpn)SeededR50.Value;
        using var backend = new CpuBackend(threads: 1);
        using RetinaNetGhmR50Fpn.Prepared prepared = network.Prepare(backend);

        var tooSmall = Assert.Throws<ArgumentOutOfRangeException>(() => prepared.CreateSession(1, 16, 64));
        Assert.Contains("below retinanet-ghm-r50-fpn's minimum of 32x32", tooSmall.Message);

        RetinaNetGhmR50Fpn.Session session = prepared.CreateSession(1, 32, 32);
        var input = new float[3 * 32 * 32];
        session.Forward(input);
        session.Dispose();
        Assert.Throws<ObjectDisposedException>(() => session.Forward(input));

        RetinaNetGhmR50Fpn.Session other = prepared.CreateSession(1, 32, 32);
        prepared.Dispose();
        Assert.Throws<ObjectDisposedException>(() => other.Forward(input));
        Assert.Throws<ObjectDisposedException>(() => prepared.CreateSession(1, 32, 32));
        other.Dispose();
    }
}
