using GhmGen.Detection;
using GhmGen.Runtime.Tests.Losses;

namespace GhmGen.Runtime.Tests.Detection;

/// <summary>Assignment and targets against PyTorch (tools/reference/ghm_losses.py, mmdetection's MaxIoUAssigner and bbox2delta).</summary>
public class RetinaTargetsFixtureTests
{
    private static readonly Lazy<(LossFixture Fixture, RetinaTargets Targets)> Shared = new(() =>
    {
        LossFixture f = LossFixture.Load("retina_two_images");
        return (f, GhmFixtureTests.BuildTargets(f));
    });

    [Fact]
    public void AssignedGtIndicesMatchPyTorchForEveryAnchor()
    {
        var (f, targets) = Shared.Value;
        int[] expected = f.Ints("assigned_gt");
        int numAnchors = expected.Length / targets.NumImages;
        for (int n = 0; n < targets.NumImages; n++)
        {
            int[] actual = targets.Images[n].AssignedGt;
            Assert.Equal(numAnchors, actual.Length);
            for (int i = 0; i < numAnchors; i++)
                Assert.True(expected[n * numAnchors + i] == actual[i], $"image {n} anchor {i}: expected {expected[n * numAnchors + i]}, got {actual[i]}");
        }
        int[] positives = [.. f.Meta.GetProperty("num_positives").EnumerateArray().Select(e => e.GetInt32())];
        int[] negatives = [.. f.Meta.GetProperty("num_negatives").EnumerateArray().Select(e => e.GetInt32())];
        for (int n = 0; n < targets.NumImages; n++)
        {
            Assert.Equal(positives[n], targets.Images[n].NumPositives);
            Assert.Equal(negatives[n], targets.Images[n].NumNegatives);
        }
    }

    [Fact]
    public void ScenePinsTheEdgeCasesItWasBuiltFor()
    {
        var (_, targets) = Shared.Value;
        // Image 1, gt 0 (280x8) has no anchor at IoU >= 0.5: all its positives are low-quality matches.
        int[] assigned = targets.Images[1].AssignedGt;
        Assert.Contains(1, assigned);
        // Image 0, gt 2 (5x4 tiny box) has several tied best anchors, all assigned.
        Assert.True(targets.Images[0].AssignedGt.Count(a => a == 3) > 1);
    }

    [Fact]
    public void BoxTargetsOfPositivesMatchPyTorch()
    {
        var (f, targets) = Shared.Value;
        for (int n = 0; n < targets.NumImages; n++)
        {
            ImageTargets image = targets.Images[n];
            float[] expected = f.Floats($"pos_box_targets_{n}");
            int p = 0;
            for (int i = 0; i < image.AssignedGt.Length; i++)
            {
                if (image.AssignedGt[i] <= 0)
                {
                    for (int k = 0; k < 4; k++)
                    {
                        Assert.Equal(0f, image.BoxTargets[i * 4 + k]);
                        Assert.Equal(0f, image.BoxWeights[i * 4 + k]);
                    }
                    continue;
                }
                for (int k = 0; k < 4; k++)
                {
                    Assert.Equal(expected[p * 4 + k], image.BoxTargets[i * 4 + k], 1e-6);
                    Assert.Equal(1f, image.BoxWeights[i * 4 + k]);
                }
                p++;
            }
            Assert.Equal(expected.Length / 4, p);
        }
    }

    [Fact]
    public void LevelLayoutFollowsTheHeadOutputChannels()
    {
        var (_, targets) = Shared.Value;
        int levelStart = 0;
        int a = targets.AnchorsPerCell;
        for (int l = 0; l < targets.Levels.Count; l++)
        {
            LevelTargets level = targets.Levels[l];
            int hw = level.CellCount;
            Assert.Equal(targets.LevelAnchorCounts[l], hw * a);
            int positives = 0;
            for (int n = 0; n < targets.NumImages; n++)
            {
                ImageTargets image = targets.Images[n];
                for (int cell = 0; cell < hw; cell++)
                {
                    for (int j = 0; j < a; j++)
                    {
                        int anchor = levelStart + cell * a + j;      // (y*W + x)*A + a
                        int code = level.LabelCodes[(n * a + j) * hw + cell];
                        int expected = image.LabelWeights[anchor] == 0f ? -1 : image.Labels[anchor];
                        Assert.Equal(expected, code);
                        if (code >= 0 && code < targets.NumClasses) positives++;
                        for (int k = 0; k < 4; k++)
                        {
                            int planar = ((n * a + j) * 4 + k) * hw + cell; // channel j*4 + k
                            Assert.Equal(image.BoxTargets[anchor * 4 + k], level.BoxTargets[planar]);
                            Assert.Equal(image.BoxWeights[anchor * 4 + k], level.BoxWeights[planar]);
                        }
                    }
                }
            }
            Assert.Equal(positives, level.NumPositives);
            levelStart += targets.LevelAnchorCounts[l];
        }
        Assert.Equal(224f, targets.AverageFactor);
    }
}
