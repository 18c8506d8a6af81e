using GhmGen.Detection;
using GhmGen.Losses;

namespace GhmGen.Runtime.Tests.Losses;

/// <summary>The README usage example, compiled and run on the PyTorch fixture.</summary>
public class UsageExampleTests
{
    // ---- README snippet starts (keep in sync with README.md) ----
    /// <summary>One training step's GHM losses and the gradients to feed the head's backward pass.</summary>
    public static DetectionLossResult GhmTrainingLoss(
        float[] anchors,            // [numAnchors, 4] x1,y1,x2,y2, levels P3..P7 concatenated
        int[] levelAnchorCounts,    // H*W*9 per level
        float[][] classOutputs,     // per level, head output [N, 9*80, H, W]
        float[][] boxOutputs,       // per level, head output [N, 9*4, H, W]
        float[] ghmcAccSum,         // checkpoint buffer bbox_head.loss_cls.acc_sum [30]
        float[] ghmrAccSum)         // checkpoint buffer bbox_head.loss_bbox.acc_sum [10]
    {
        // Two images: boxes [numGt, 4] flattened, labels in [0, 80).
        RetinaTargets targets = RetinaTargets.Build(
            anchors, levelAnchorCounts,
            gtBoxesPerImage: [[10, 20, 120, 200, 90, 40, 210, 170], [20, 100, 300, 108]],
            gtLabelsPerImage: [[0, 17], [45]]);

        // The state is updated in place, so the next checkpoint saves it.
        var ghm = new GhmLosses(classificationAccSum: ghmcAccSum, boxAccSum: ghmrAccSum);
        DetectionLossResult result = ghm.Compute(classOutputs, boxOutputs, targets);

        Console.WriteLine($"loss_cls {result.ClassificationLoss:F4}  loss_bbox {result.BoxLoss:F4}  total {result.TotalLoss:F4}");
        // result.ClassificationGradients[l], result.BoxGradients[l]: d loss / d head outputs, same NCHW layout.
        // Baseline for comparison: new RetinaBaselineLosses().Compute(classOutputs, boxOutputs, targets).
        return result;
    }
    // ---- README snippet ends ----

    [Fact]
    public void ExampleRunsAndUpdatesTheBoundState()
    {
        LossFixture f = LossFixture.Load("retina_two_images");
        int[] counts = [.. f.Meta.GetProperty("level_anchor_counts").EnumerateArray().Select(e => e.GetInt32())];
        int n = 2;
        var cls = counts.Select((c, l) => LossFixture.HashedLogits(n * c * 80, l)).ToArray();
        var box = counts.Select((c, l) => LossFixture.HashedDeltas(n * c * 4, l + 7)).ToArray();
        var ghmcState = new float[30];
        var ghmrState = new float[10];
        DetectionLossResult r = GhmTrainingLoss(f.Floats("anchors"), counts, cls, box, ghmcState, ghmrState);
        Assert.True(r.ClassificationLoss > 0 && r.BoxLoss > 0);
        Assert.Equal(cls[0].Length, r.ClassificationGradients[0].Length);
        Assert.True(ghmcState.Sum() > 0);
        Assert.True(ghmrState.Sum() > 0);
    }
}
