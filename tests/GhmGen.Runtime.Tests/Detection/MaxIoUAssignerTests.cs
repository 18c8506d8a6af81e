using GhmGen.Detection;

namespace GhmGen.Runtime.Tests.Detection;

/// <summary>The MaxIoU rules of docs/MODEL.md §5 on hand-computed cases.</summary>
public class MaxIoUAssignerTests
{
    [Fact]
    public void IouHasNoPlusOneAndAnEpsilonUnion()
    {
        // [0,0,10,10] and [5,0,15,10]: 50 / 150
        Assert.Equal(50f / 150f, MaxIoUAssigner.Iou(0, 0, 10, 10, 5, 0, 15, 10));
        Assert.Equal(0f, MaxIoUAssigner.Iou(0, 0, 10, 10, 20, 20, 30, 30));
        // two degenerate boxes: 0 / max(0, 1e-6) = 0, not NaN
        Assert.Equal(0f, MaxIoUAssigner.Iou(1, 1, 1, 1, 1, 1, 1, 1));
    }

    [Fact]
    public void ThresholdsMakePositiveNegativeAndIgnored()
    {
        float[] gt = [0, 0, 10, 10];
        float[] anchors =
        [
            0, 0, 10, 10,   // IoU 1 -> positive
            0, 0, 10, 5,    // 0.5 -> positive (>= 0.5)
            0, 0, 10, 4.5f, // 0.45 -> ignored
            0, 0, 10, 3.5f, // 0.35 -> negative
            50, 50, 60, 60, // 0 -> negative
        ];
        Assert.Equal([1, 1, -1, 0, 0], new MaxIoUAssigner().Assign(anchors, gt));
    }

    [Fact]
    public void NoGroundTruthMakesEveryAnchorNegative()
    {
        Assert.Equal([0, 0], new MaxIoUAssigner().Assign([0, 0, 4, 4, 1, 1, 5, 5], []));
    }

    [Fact]
    public void LowQualityPassAssignsEveryTiedBestAnchorAndLaterGtsOverwrite()
    {
        // Every best anchor below the negative threshold still becomes positive (min_pos_iou 0).
        // gt 0 = [0,0,10,10]: anchors 0 and 1 tie at its max IoU 25/175 (< 0.4); gt 1: anchor 3, 50/150.
        float[] gts = [0, 0, 10, 10, 100, 100, 110, 110];
        float[] anchors =
        [
            -5, -5, 5, 5,       // IoU with gt0 = 25 / 175
            5, 5, 15, 15,       // 25 / 175 (tie)
            -10, -10, 3, 3,     // 9 / 260
            100, 100, 105, 120, // gt1: 50 / 150 -> its best
        ];
        Assert.Equal([1, 1, 0, 2], new MaxIoUAssigner().Assign(anchors, gts));

        // Two identical gts: the low-quality pass gives the anchor to the later one.
        Assert.Equal([2], new MaxIoUAssigner().Assign([0, 0, 10, 10], [0, 0, 10, 10, 0, 0, 10, 10]));
    }

    [Fact]
    public void ArgmaxTakesTheFirstGtOnTiesAboveThreshold()
    {
        // Anchor 0 matches gt0 and gt1 equally at IoU 1 -> argmax gt0 first, but the
        // low-quality pass (gt1 max IoU 1 at anchor 0) overwrites with gt1, as mmdetection does.
        Assert.Equal([2, 3], new MaxIoUAssigner().Assign([0, 0, 10, 10, 50, 50, 60, 60], [0, 0, 10, 10, 0, 0, 10, 10, 50, 50, 60, 60]));
    }

    [Fact]
    public void MalformedInputNamesTheArgument()
    {
        var e = Assert.Throws<ArgumentException>(() => new MaxIoUAssigner().Assign([0, 0, 1], [0, 0, 1, 1]));
        Assert.Contains("anchors", e.Message);
        e = Assert.Throws<ArgumentException>(() => new MaxIoUAssigner().Assign([0, 0, 1, 1], [0, 0, 1]));
        Assert.Contains("gtBoxes", e.Message);
    }

    [Fact]
    public void RetinaTargetsRejectsInconsistentInput()
    {
        float[] anchors = new float[9 * 4];
        var e = Assert.Throws<ArgumentException>(() => RetinaTargets.Build(anchors, [18], [new float[4]], [new int[1]]));
        Assert.Contains("levelAnchorCounts", e.Message);
        e = Assert.Throws<ArgumentException>(() => RetinaTargets.Build(anchors, [9], [new float[] { 0, 0, 4, 4 }], [new[] { 80 }]));
        Assert.Contains("gtLabelsPerImage[0][0] = 80", e.Message);
        e = Assert.Throws<ArgumentException>(() => RetinaTargets.Build(anchors, [9], [new float[] { 0, 0, 4, 4 }], [new int[2]]));
        Assert.Contains("2 labels for 1 boxes", e.Message);
    }

    [Fact]
    public void ImageWithoutGroundTruthHasOnlyNegatives()
    {
        float[] anchors = new float[9 * 4];
        for (int i = 0; i < 9; i++) { anchors[i * 4 + 2] = 4 + i; anchors[i * 4 + 3] = 4 + i; }
        RetinaTargets t = RetinaTargets.Build(anchors, [9], [new float[] { 0, 0, 5, 5 }, []], [new[] { 7 }, []]);
        Assert.All(t.Images[1].AssignedGt, a => Assert.Equal(0, a));
        Assert.All(t.Images[1].LabelWeights, w => Assert.Equal(1f, w));
        Assert.All(t.Images[1].Labels, l => Assert.Equal(80, l));
        Assert.True(t.Images[0].NumPositives > 0);
        // num_total_samples: max(pos, 1) per image
        Assert.Equal(t.Images[0].NumPositives + 1, t.AverageFactor);
    }
}
