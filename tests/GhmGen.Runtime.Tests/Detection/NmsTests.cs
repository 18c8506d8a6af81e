using GhmGen.Detection;

namespace GhmGen.Runtime.Tests.Detection;

public class NmsTests
{
    /// <summary>The textbook algorithm: walk boxes best-first (stable), keep one unless a kept box of its class overlaps it by IoU > t.</summary>
    private static List<int> NaiveNms(float[] boxes, float[] scores, int[] classes, float threshold)
    {
        var order = Enumerable.Range(0, scores.Length).OrderByDescending(i => scores[i]).ThenBy(i => i).ToList();
        var kept = new List<int>();
        foreach (int i in order)
        {
            bool suppressed = false;
            foreach (int k in kept)
            {
                if (classes[k] != classes[i]) continue;
                float ix1 = Math.Max(boxes[4 * k], boxes[4 * i]), iy1 = Math.Max(boxes[4 * k + 1], boxes[4 * i + 1]);
                float ix2 = Math.Min(boxes[4 * k + 2], boxes[4 * i + 2]), iy2 = Math.Min(boxes[4 * k + 3], boxes[4 * i + 3]);
                float inter = Math.Max(0, ix2 - ix1) * Math.Max(0, iy2 - iy1);
                float areaK = (boxes[4 * k + 2] - boxes[4 * k]) * (boxes[4 * k + 3] - boxes[4 * k + 1]);
                float areaI = (boxes[4 * i + 2] - boxes[4 * i]) * (boxes[4 * i + 3] - boxes[4 * i + 1]);
                if (inter / (areaK + areaI - inter) > threshold) { suppressed = true; break; }
            }
            if (!suppressed) kept.Add(i);
        }
        return kept;
    }

    private static (float[] Boxes, float[] Scores, int[] Classes) RandomBoxes(int seed, int n, int classCount, bool coarseScores)
    {
        var random = new Random(seed);
        var boxes = new float[4 * n];
        var scores = new float[n];
        var classes = new int[n];
        for (int i = 0; i < n; i++)
        {
            float x = random.NextSingle() * 100, y = random.NextSingle() * 100;
            boxes[4 * i] = x; boxes[4 * i + 1] = y;
            boxes[4 * i + 2] = x + 5 + random.NextSingle() * 40; boxes[4 * i + 3] = y + 5 + random.NextSingle() * 40;
            // Coarse scores create many exact ties, which must be ordered by index.
            scores[i] = coarseScores ? random.Next(20) / 20f : random.NextSingle();
            classes[i] = random.Next(classCount);
        }
        return (boxes, scores, classes);
    }

    [Theory]
    [InlineData(1, 50, 1, false)]
    [InlineData(2, 400, 3, false)]
    [InlineData(3, 1000, 80, false)]
    [InlineData(4, 600, 4, true)]
    [InlineData(5, 2000, 10, true)]
    public void Run_MatchesNaiveReference(int seed, int n, int classCount, bool coarseScores)
    {
        var (boxes, scores, classes) = RandomBoxes(seed, n, classCount, coarseScores);
        var keep = new int[n];
        int count = BatchedNms.Run(boxes, scores, classes, 0.5f, keep);
        Assert.Equal(NaiveNms(boxes, scores, classes, 0.5f), keep[..count]);
    }

    [Fact]
    public void Run_MatchesTorchvisionBatchedNms()
    {
        var manifest = DetectionFixtures.Manifest().GetProperty("nms");
        float[] boxes = DetectionFixtures.Floats("nms_boxes.f32");
        float[] scores = DetectionFixtures.Floats("nms_scores.f32");
        int[] classes = DetectionFixtures.Ints("nms_classes.i32");
        int[] expected = manifest.GetProperty("keep").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Assert.Equal(manifest.GetProperty("count").GetInt32(), scores.Length);

        var keep = new int[scores.Length];
        int count = BatchedNms.Run(boxes, scores, classes, (float)manifest.GetProperty("iou_threshold").GetDouble(), keep);
        Assert.Equal(expected, keep[..count]);
    }

    [Fact]
    public void Run_HandComputedCase()
    {
        // Box 1 overlaps box 0 with IoU 81/119 > 0.5 (suppressed); box 2 is the same as box 0 but another class;
        // box 3 overlaps box 0 with IoU exactly 0.5 (kept: suppression needs IoU > 0.5).
        float[] boxes = [0, 0, 10, 10, 1, 1, 11, 11, 0, 0, 10, 10, 0, 0, 10, 5];
        float[] scores = [0.9f, 0.8f, 0.7f, 0.6f];
        int[] classes = [0, 0, 1, 0];
        var keep = new int[4];
        int count = BatchedNms.Run(boxes, scores, classes, 0.5f, keep);
        Assert.Equal([0, 2, 3], keep[..count]);
    }

    [Fact]
    public void Run_EmptyInput_KeepsNothing()
    {
        Assert.Equal(0, BatchedNms.Run([], [], [], 0.5f, []));
    }

    [Fact]
    public void Run_RejectsBadArguments()
    {
        var keep = new int[1];
        Assert.Contains("NaN", Assert.Throws<ArgumentException>(() => BatchedNms.Run([0, 0, 1, 1], [float.NaN], [0], 0.5f, keep)).Message);
        Assert.Contains("-1", Assert.Throws<ArgumentOutOfRangeException>(() => BatchedNms.Run([0, 0, 1, 1], [1f], [-1], 0.5f, keep)).Message);
        Assert.Contains("[n, 4]", Assert.Throws<ArgumentException>(() => BatchedNms.Run([0, 0, 1], [1f], [0], 0.5f, keep)).Message);
        Assert.Contains("keep", Assert.Throws<ArgumentException>(() => BatchedNms.Run([0, 0, 1, 1], [1f], [0], 0.5f, [])).Message);
    }
}
