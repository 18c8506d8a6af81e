using System.Text.Json;
using GhmGen.Detection;
using GhmGen.Losses;

namespace GhmGen.Runtime.Tests.Losses;

/// <summary>
/// GHM-C, GHM-R, focal and L1 losses against PyTorch (tools/reference/ghm_losses.py): two 256x320
/// images, five levels, two iterations with the GHM state carried over.
/// </summary>
public class GhmFixtureTests
{
    private const string FixtureName = "retina_two_images";
    private static readonly Lazy<(LossFixture Fixture, RetinaTargets Targets)> Shared = new(() =>
    {
        LossFixture f = LossFixture.Load(FixtureName);
        return (f, BuildTargets(f));
    });

    internal static RetinaTargets BuildTargets(LossFixture f)
    {
        int[] counts = [.. f.Meta.GetProperty("level_anchor_counts").EnumerateArray().Select(e => e.GetInt32())];
        var boxes = f.Meta.GetProperty("gt_boxes").EnumerateArray()
            .Select(img => img.EnumerateArray().SelectMany(b => b.EnumerateArray().Select(v => v.GetSingle())).ToArray()).ToList();
        var labels = f.Meta.GetProperty("gt_labels").EnumerateArray()
            .Select(img => img.EnumerateArray().Select(v => v.GetInt32()).ToArray()).ToList();
        return RetinaTargets.Build(f.Floats("anchors"), counts, boxes, labels);
    }

    private static (float[] Cls, float[] Box) HeadOutputs(LossFixture f, RetinaTargets targets, int iteration, int level)
    {
        LevelTargets lt = targets.Levels[level];
        JsonElement rec = f.Meta.GetProperty("iterations")[iteration - 1].GetProperty("levels")[level];
        float[] cls = LossFixture.HashedLogits((int)lt.ClassOutputLength, LossFixture.HeadSeed(iteration, level, false));
        float[] box = LossFixture.HashedDeltas((int)lt.BoxOutputLength, LossFixture.HeadSeed(iteration, level, true));
        LossFixture.ApplyOverrides(cls, rec.GetProperty("overrides_cls"));
        LossFixture.ApplyOverrides(box, rec.GetProperty("overrides_reg"));
        return (cls, box);
    }

    private static void AssertRelative(double expected, double actual, double tolerance, string what)
    {
        double err = Math.Abs(expected - actual);
        Assert.True(err <= tolerance * Math.Max(Math.Abs(expected), 1e-12),
            $"{what}: expected {expected:R}, got {actual:R} (relative error {err / Math.Max(Math.Abs(expected), 1e-30):E2})");
    }

    private static void AssertGradient(LossFixture f, JsonElement summary, string sampleName, string indexName, float[] grad, string what)
    {
        double maxAbs = summary.GetProperty("max_abs").GetDouble();
        double sumAbs = summary.GetProperty("sum_abs").GetDouble();
        int[] index = f.Ints(indexName);
        float[] expected = f.Floats(sampleName);
        double tolerance = 1e-4 * Math.Max(maxAbs, 1e-30);
        for (int i = 0; i < index.Length; i++)
        {
            double err = Math.Abs(expected[i] - grad[index[i]]);
            Assert.True(err <= tolerance, $"{what}: gradient[{index[i]}] expected {expected[i]:R}, got {grad[index[i]]:R}");
        }
        double myMax = 0, mySum = 0;
        foreach (float g in grad)
        {
            myMax = Math.Max(myMax, Math.Abs(g));
            mySum += Math.Abs(g);
        }
        if (maxAbs == 0)
        {
            Assert.Equal(0, myMax);
            return;
        }
        AssertRelative(maxAbs, myMax, 1e-4, what + " max |grad|");
        AssertRelative(sumAbs, mySum, 1e-5, what + " sum |grad|");
    }

    [Fact]
    public void GhmLevelByLevelMatchesPyTorchOverTwoIterations()
    {
        var (f, targets) = Shared.Value;
        var ghmc = new GhmcLoss();
        var ghmr = new GhmrLoss();
        for (int it = 1; it <= 2; it++)
        {
            for (int l = 0; l < targets.Levels.Count; l++)
            {
                JsonElement rec = f.Meta.GetProperty("iterations")[it - 1].GetProperty("levels")[l];
                var (cls, box) = HeadOutputs(f, targets, it, l);
                var clsGrad = new float[cls.Length];
                var boxGrad = new float[box.Length];
                string where = $"iteration {it} P{l + 3}";
                AssertRelative(rec.GetProperty("ghmc_loss").GetDouble(), ghmc.ComputeLevel(cls, targets.Levels[l], clsGrad), 1e-5, where + " GHM-C loss");
                AssertRelative(rec.GetProperty("ghmr_loss").GetDouble(), ghmr.ComputeLevel(box, targets.Levels[l], boxGrad), 1e-5, where + " GHM-R loss");
                float[] accC = [.. rec.GetProperty("ghmc_acc_sum_after").EnumerateArray().Select(e => e.GetSingle())];
                float[] accR = [.. rec.GetProperty("ghmr_acc_sum_after").EnumerateArray().Select(e => e.GetSingle())];
                for (int b = 0; b < accC.Length; b++) AssertRelative(accC[b], ghmc.AccSum[b], 1e-6, $"{where} GHM-C acc_sum[{b}]");
                for (int b = 0; b < accR.Length; b++) AssertRelative(accR[b], ghmr.AccSum[b], 1e-6, $"{where} GHM-R acc_sum[{b}]");
                AssertGradient(f, rec.GetProperty("ghmc_grad"), $"ghmc_grad_it{it}_p{l + 3}", $"cls_index_p{l + 3}", clsGrad, where + " GHM-C");
                AssertGradient(f, rec.GetProperty("ghmr_grad"), $"ghmr_grad_it{it}_p{l + 3}", $"reg_index_p{l + 3}", boxGrad, where + " GHM-R");
            }
        }
    }

    [Fact]
    public void GhmLossesTotalsMatchPyTorchAndUpdateBoundBuffers()
    {
        var (f, targets) = Shared.Value;
        var clsState = new float[30];
        var boxState = new float[10];
        var losses = new GhmLosses(clsState, boxState);
        DetectionLossResult? result = null;
        for (int it = 1; it <= 2; it++)
        {
            var outputs = Enumerable.Range(0, targets.Levels.Count).Select(l => HeadOutputs(f, targets, it, l)).ToList();
            if (result is null) result = losses.Compute([.. outputs.Select(o => o.Cls)], [.. outputs.Select(o => o.Box)], targets);
            else losses.Compute([.. outputs.Select(o => o.Cls)], [.. outputs.Select(o => o.Box)], targets, result);
            JsonElement rec = f.Meta.GetProperty("iterations")[it - 1];
            AssertRelative(rec.GetProperty("ghmc_total").GetDouble(), result.ClassificationLoss, 1e-5, $"iteration {it} GHM-C total");
            AssertRelative(rec.GetProperty("ghmr_total").GetDouble(), result.BoxLoss, 1e-5, $"iteration {it} GHM-R total");
            Assert.Equal(result.ClassificationLoss + result.BoxLoss, result.TotalLoss);
            JsonElement last = rec.GetProperty("levels")[targets.Levels.Count - 1];
            float[] accC = [.. last.GetProperty("ghmc_acc_sum_after").EnumerateArray().Select(e => e.GetSingle())];
            for (int b = 0; b < 30; b++) AssertRelative(accC[b], clsState[b], 1e-6, $"GHM-C acc_sum[{b}] after iteration {it}");
        }
    }

    [Fact]
    public void FocalAndL1BaselineMatchPyTorch()
    {
        var (f, targets) = Shared.Value;
        var outputs = Enumerable.Range(0, targets.Levels.Count).Select(l => HeadOutputs(f, targets, 1, l)).ToList();
        DetectionLossResult result = new RetinaBaselineLosses().Compute([.. outputs.Select(o => o.Cls)], [.. outputs.Select(o => o.Box)], targets);
        Assert.Equal(f.Meta.GetProperty("avg_factor").GetSingle(), targets.AverageFactor);
        for (int l = 0; l < targets.Levels.Count; l++)
        {
            JsonElement rec = f.Meta.GetProperty("iterations")[0].GetProperty("levels")[l];
            string where = $"P{l + 3}";
            AssertRelative(rec.GetProperty("focal_loss").GetDouble(), result.ClassificationLossPerLevel[l], 1e-5, where + " focal loss");
            AssertRelative(rec.GetProperty("l1_loss").GetDouble(), result.BoxLossPerLevel[l], 1e-5, where + " L1 loss");
            AssertGradient(f, rec.GetProperty("focal_grad"), $"focal_grad_it1_p{l + 3}", $"cls_index_p{l + 3}", result.ClassificationGradients[l].ToArray(), where + " focal");
            AssertGradient(f, rec.GetProperty("l1_grad"), $"l1_grad_it1_p{l + 3}", $"reg_index_p{l + 3}", result.BoxGradients[l].ToArray(), where + " L1");
        }
    }
}
