using GhmGen.Backends;
using GhmGen.Backends.Gpu;
using ILGPU;
using ILGPU.Runtime;

namespace GhmGen.Runtime.Gpu.Tests;

/// <summary>Detection post-processing kernels against naive C# versions written here.</summary>
[Collection(CpuAcceleratorCollection.Name)]
public sealed class DetectionTests(CpuAcceleratorFixture fixture)
{
    private readonly IlgpuBackend _gpu = fixture.Gpu;

    [Theory]
    [InlineData(1)]
    [InlineData(5)]
    [InlineData(64)]
    [InlineData(1000)]
    public void BitonicSortOrdersKeysDescending(int count)
    {
        var random = new Random(count);
        int padded = 1;
        while (padded < count) padded <<= 1;
        var keys = new ulong[padded];
        for (int i = 0; i < count; i++) keys[i] = (ulong)random.NextInt64() >> random.Next(40);  // includes near-duplicates
        if (count > 3) keys[1] = keys[2];  // an exact duplicate
        using MemoryBuffer1D<ulong, Stride1D.Dense> buffer = _gpu.Accelerator.Allocate1D(keys);

        using var detection = new IlgpuDetection(_gpu);
        detection.SortDescending(buffer.View);

        var sorted = new ulong[padded];
        _gpu.Accelerator.Synchronize();
        buffer.View.CopyToCPU(sorted);
        ulong[] expected = [.. keys.OrderByDescending(k => k)];
        Assert.Equal(expected, sorted);
    }

    [Theory]
    [InlineData(1000)]  // every candidate survives top-k
    [InlineData(7)]     // top-k truncates
    public void DecodeLevelMatchesNaivePostProcessing(int topK)
    {
        const int h = 3, w = 4, anchorsPerCell = 3, classes = 4;
        const float threshold = 0.05f, imageWidth = 40f, imageHeight = 28f;
        var random = new Random(topK);
        float[] logits = TestTensors.Random(random, anchorsPerCell * classes * h * w, 4f);  // about half above 0.05
        float[] deltas = TestTensors.Random(random, anchorsPerCell * 4 * h * w, 1f);
        deltas[(0 * 4 + 2) * h * w + 5] = 9f;    // dw beyond the clamp
        deltas[(1 * 4 + 3) * h * w + 2] = -7f;   // dh beyond the clamp
        var anchors = new float[h * w * anchorsPerCell * 4];
        for (int cell = 0; cell < h * w; cell++)
        for (int a = 0; a < anchorsPerCell; a++)
        {
            float cx = cell % w * 8f, cy = cell / w * 8f, half = 4f * (a + 1);
            int at = (cell * anchorsPerCell + a) * 4;
            (anchors[at], anchors[at + 1], anchors[at + 2], anchors[at + 3]) = (cx - half, cy - half * 0.5f, cx + half, cy + half * 0.5f);
        }

        using var detection = new IlgpuDetection(_gpu);
        TensorView logitMap = TestTensors.Put(_gpu, 1, anchorsPerCell * classes, h, w, logits);
        TensorView deltaMap = TestTensors.Put(_gpu, 1, anchorsPerCell * 4, h, w, deltas);
        TensorView anchorList = TestTensors.Put(_gpu, 1, 1, 1, anchors.Length, anchors);
        LevelDetections actual = detection.DecodeLevel(logitMap, deltaMap, anchorList, classes, threshold, topK, imageWidth, imageHeight);
        // A second call reuses the scratch buffers and the counter.
        LevelDetections again = detection.DecodeLevel(logitMap, deltaMap, anchorList, classes, threshold, topK, imageWidth, imageHeight);
        Assert.Equal(actual.Boxes, again.Boxes);
        Assert.Equal(actual.Labels, again.Labels);

        // Naive: every (cell, anchor, class) in order, sort by score (ties: lower pair id), decode.
        var candidates = new List<(float Score, int Pair)>();
        for (int cell = 0; cell < h * w; cell++)
        for (int a = 0; a < anchorsPerCell; a++)
        for (int c = 0; c < classes; c++)
        {
            float score = 1f / (1f + MathF.Exp(-logits[(a * classes + c) * h * w + cell]));
            if (score > threshold) candidates.Add((score, (cell * anchorsPerCell + a) * classes + c));
        }
        var top = candidates.OrderByDescending(p => p.Score).ThenBy(p => p.Pair).Take(topK).ToList();
        Assert.True(candidates.Count > 7, "the test needs candidates to truncate");
        Assert.Equal(top.Count, actual.Count);
        const float clamp = 4.135166556742356f;
        for (int r = 0; r < top.Count; r++)
        {
            int anchor = top[r].Pair / classes, cell = anchor / anchorsPerCell, a = anchor % anchorsPerCell;
            Assert.Equal(top[r].Pair % classes, actual.Labels[r]);
            Assert.Equal(top[r].Score, actual.Scores[r], 1e-6f);
            float Delta(int k) => deltas[(a * 4 + k) * h * w + cell];
            float ax1 = anchors[anchor * 4], ay1 = anchors[anchor * 4 + 1], ax2 = anchors[anchor * 4 + 2], ay2 = anchors[anchor * 4 + 3];
            float pw = ax2 - ax1, ph = ay2 - ay1, px = (ax1 + ax2) / 2, py = (ay1 + ay2) / 2;
            float gw = pw * MathF.Exp(Math.Clamp(Delta(2), -clamp, clamp)), gh = ph * MathF.Exp(Math.Clamp(Delta(3), -clamp, clamp));
            float gx = px + pw * Delta(0), gy = py + ph * Delta(1);
            float[] expected =
            [
                Math.Clamp(gx - gw / 2, 0, imageWidth), Math.Clamp(gy - gh / 2, 0, imageHeight),
                Math.Clamp(gx + gw / 2, 0, imageWidth), Math.Clamp(gy + gh / 2, 0, imageHeight),
            ];
            for (int k = 0; k < 4; k++) Assert.Equal(expected[k], actual.Boxes[r * 4 + k], 1e-3f);
        }
    }

    [Fact]
    public void DecodeLevelWithNothingAboveThresholdIsEmpty()
    {
        float[] logits = Enumerable.Repeat(-10f, 2 * 3 * 2 * 2).ToArray();
        using var detection = new IlgpuDetection(_gpu);
        LevelDetections result = detection.DecodeLevel(
            TestTensors.Put(_gpu, 1, 6, 2, 2, logits),
            TestTensors.Put(_gpu, 1, 8, 2, 2, new float[32]),
            TestTensors.Put(_gpu, 1, 1, 1, 32, new float[32]),
            3, 0.05f, 100, 10, 10);
        Assert.Equal(0, result.Count);
    }

    [Theory]
    [InlineData(150, 2, 0.5f)]
    [InlineData(64, 1, 0.5f)]
    [InlineData(200, 3, 0.3f)]
    public void NmsMatchesNaiveGreedyNms(int n, int labelsCount, float iou)
    {
        var random = new Random(n + labelsCount);
        var boxes = new float[n * 4];
        var scores = new float[n];
        var labels = new int[n];
        for (int i = 0; i < n; i++)
        {
            // Crowded: centers in 80x80, sides 10-40, so many pairs overlap.
            float cx = random.NextSingle() * 80, cy = random.NextSingle() * 80;
            float bw = 10 + random.NextSingle() * 30, bh = 10 + random.NextSingle() * 30;
            (boxes[i * 4], boxes[i * 4 + 1], boxes[i * 4 + 2], boxes[i * 4 + 3]) = (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2);
            scores[i] = random.Next(50) / 50f;  // ties on purpose
            labels[i] = random.Next(labelsCount);
        }

        using var detection = new IlgpuDetection(_gpu);
        int[] kept = detection.Nms(boxes, scores, labels, iou, int.MaxValue);

        int[] expected = NaiveNms(boxes, scores, labels, iou);
        Assert.True(expected.Length < n, "the test needs some suppression");
        Assert.Equal(expected, kept);
        int[] firstTen = detection.Nms(boxes, scores, labels, iou, 10);
        Assert.Equal(expected.Take(10), firstTen);
    }

    [Fact]
    public void NmsSuppressesOnlyAboveThreshold()
    {
        // IoU of box 0 and 1 = 50 / 150 = 1/3; of box 0 and 2 = 0.
        float[] boxes = [0, 0, 10, 10, 5, 0, 15, 10, 20, 20, 30, 30];
        float[] scores = [0.9f, 0.8f, 0.7f];
        using var detection = new IlgpuDetection(_gpu);
        Assert.Equal([0, 2], detection.Nms(boxes, scores, [0, 0, 0], 0.3f, 100));
        Assert.Equal([0, 1, 2], detection.Nms(boxes, scores, [0, 0, 0], 0.34f, 100));
        Assert.Equal([0, 1, 2], detection.Nms(boxes, scores, [0, 1, 0], 0.3f, 100));  // other class
    }

    private static int[] NaiveNms(float[] boxes, float[] scores, int[] labels, float threshold)
    {
        int[] order = [.. Enumerable.Range(0, scores.Length).OrderByDescending(i => scores[i]).ThenBy(i => i)];
        var suppressed = new bool[scores.Length];
        var kept = new List<int>();
        for (int a = 0; a < order.Length; a++)
        {
            int i = order[a];
            if (suppressed[i]) continue;
            kept.Add(i);
            for (int b = a + 1; b < order.Length; b++)
            {
                int j = order[b];
                if (labels[j] != labels[i]) continue;
                float iw = MathF.Max(MathF.Min(boxes[i * 4 + 2], boxes[j * 4 + 2]) - MathF.Max(boxes[i * 4], boxes[j * 4]), 0);
                float ih = MathF.Max(MathF.Min(boxes[i * 4 + 3], boxes[j * 4 + 3]) - MathF.Max(boxes[i * 4 + 1], boxes[j * 4 + 1]), 0);
                float inter = iw * ih;
                float union = (boxes[i * 4 + 2] - boxes[i * 4]) * (boxes[i * 4 + 3] - boxes[i * 4 + 1])
                    + (boxes[j * 4 + 2] - boxes[j * 4]) * (boxes[j * 4 + 3] - boxes[j * 4 + 1]) - inter;
                if (inter / union > threshold) suppressed[j] = true;
            }
        }
        return [.. kept];
    }
}
