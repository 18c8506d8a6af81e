using BenchmarkDotNet.Attributes;
using GhmGen.Detection;

namespace GhmGen.Bench;

/// <summary>Class-aware NMS on random boxes over 80 classes (peer: tools/reference/bench_nms.py, torchvision batched_nms).</summary>
[MemoryDiagnoser]
public class NmsBenchmarks
{
    private float[] boxes = [];
    private float[] scores = [];
    private int[] classes = [];
    private int[] keep = [];

    /// <summary>Boxes per call.</summary>
    [Params(1_000, 10_000)]
    public int BoxCount { get; set; }

    /// <summary>Random boxes in a 1216x800 image, sides 10..210 px, scores uniform, classes uniform in [0, 80).</summary>
    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(42);
        boxes = new float[4 * BoxCount];
        scores = new float[BoxCount];
        classes = new int[BoxCount];
        keep = new int[BoxCount];
        for (int i = 0; i < BoxCount; i++)
        {
            float x = random.NextSingle() * 1216, y = random.NextSingle() * 800;
            boxes[4 * i] = x;
            boxes[4 * i + 1] = y;
            boxes[4 * i + 2] = x + 10 + random.NextSingle() * 200;
            boxes[4 * i + 3] = y + 10 + random.NextSingle() * 200;
            scores[i] = random.NextSingle();
            classes[i] = random.Next(80);
        }
    }

    /// <summary>One batched NMS call at IoU 0.5.</summary>
    [Benchmark]
    public int BatchedNmsRun() => BatchedNms.Run(boxes, scores, classes, 0.5f, keep);
}

/// <summary>Whole post-processing of one 800x1216 image from random head outputs (peer: bench_nms.py).</summary>
[MemoryDiagnoser]
public class PostProcessBenchmarks
{
    private HeadLevelOutput[] levels = [];

    /// <summary>
    /// Logits ~ N(-6, 1.2) (about 0.5% of the 14.6 M pairs pass 0.05, so top-1000 is active on P3-P5),
    /// deltas ~ N(0, 0.5), on the five feature maps of an 800x1216 input.
    /// </summary>
    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(7);
        FeatureSize[] sizes = AnchorGenerator.FeatureSizes(800, 1216);
        levels = new HeadLevelOutput[sizes.Length];
        for (int l = 0; l < sizes.Length; l++)
        {
            int cells = sizes[l].Height * sizes[l].Width;
            var cls = new float[720 * cells];
            var reg = new float[36 * cells];
            for (int i = 0; i < cls.Length; i++) cls[i] = -6f + 1.2f * Gaussian(random);
            for (int i = 0; i < reg.Length; i++) reg[i] = 0.5f * Gaussian(random);
            levels[l] = new HeadLevelOutput(cls, reg, sizes[l].Height, sizes[l].Width);
        }
    }

    /// <summary>Scores, top-k, decode, rescale, NMS, top-100 for one image.</summary>
    [Benchmark]
    public int PostProcess800x1216() => PostProcessor.Run(levels, 800, 1199, 1.8734f, 1.8735f).Length;

    private static float Gaussian(Random random)
    {
        double u1 = 1.0 - random.NextDouble(), u2 = random.NextDouble();
        return (float)(Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
    }
}
