using GhmGen.Detection;
using GhmGen.Losses;

namespace GhmGen.Runtime.Tests.Losses;

/// <summary>
/// The losses on outputs and gradient buffers that the caller keeps (the Trainer passes the CPU backend's
/// own buffers, which hold the last step's values) against the array path.
/// </summary>
public class LossInPlaceTests
{
    private static (RetinaTargets Targets, float[][] Cls, float[][] Box) Batch()
    {
        LossFixture f = LossFixture.Load("retina_two_images");
        int[] counts = [.. f.Meta.GetProperty("level_anchor_counts").EnumerateArray().Select(e => e.GetInt32())];
        RetinaTargets targets = RetinaTargets.Build(f.Floats("anchors"), counts,
            gtBoxesPerImage: [[10, 20, 120, 200, 90, 40, 210, 170], [20, 100, 300, 108]],
            gtLabelsPerImage: [[0, 17], [45]]);
        float[][] cls = [.. counts.Select((c, l) => LossFixture.HashedLogits(2 * c * 80, l))];
        float[][] box = [.. counts.Select((c, l) => LossFixture.HashedDeltas(2 * c * 4, l + 7))];
        return (targets, cls, box);
    }

    public static TheoryData<string> Losses => new() { "ghm", "focal" };

    private static IDetectionLoss Create(string kind) => kind == "ghm" ? new GhmLosses() : new RetinaBaselineLosses();

    [Theory]
    [MemberData(nameof(Losses))]
    public void GradientsWrittenIntoStaleCallerMemory_EqualTheArrayPath_Bitwise(string kind)
    {
        (RetinaTargets targets, float[][] cls, float[][] box) = Batch();
        DetectionLossResult expected = Create(kind).Compute(cls, box, targets);

        // The outputs inside one larger buffer, the gradients inside another filled with NaN (a reused buffer's old contents).
        int levels = cls.Length;
        float[] outputs = new float[cls.Sum(a => a.Length) + box.Sum(a => a.Length) + 3];
        float[] gradients = new float[outputs.Length + 5];
        Array.Fill(gradients, float.NaN);
        var clsIn = new ReadOnlyMemory<float>[levels];
        var boxIn = new ReadOnlyMemory<float>[levels];
        var dcls = new Memory<float>[levels];
        var dbox = new Memory<float>[levels];
        int o = 3, g = 5;
        for (int l = 0; l < levels; l++)
        {
            cls[l].CopyTo(outputs, o);
            clsIn[l] = outputs.AsMemory(o, cls[l].Length);
            dcls[l] = gradients.AsMemory(g, cls[l].Length);
            o += cls[l].Length;
            g += cls[l].Length;
            box[l].CopyTo(outputs, o);
            boxIn[l] = outputs.AsMemory(o, box[l].Length);
            dbox[l] = gradients.AsMemory(g, box[l].Length);
            o += box[l].Length;
            g += box[l].Length;
        }
        var result = new DetectionLossResult(dcls, dbox);
        Create(kind).Compute(clsIn, boxIn, targets, result);

        Assert.Equal(expected.ClassificationLoss, result.ClassificationLoss);
        Assert.Equal(expected.BoxLoss, result.BoxLoss);
        Assert.Equal(expected.ClassificationLossPerLevel, result.ClassificationLossPerLevel);
        for (int l = 0; l < levels; l++)
        {
            Assert.Equal(expected.ClassificationGradients[l].ToArray(), result.ClassificationGradients[l].ToArray());
            Assert.Equal(expected.BoxGradients[l].ToArray(), result.BoxGradients[l].ToArray());
        }
    }

    [Fact]
    public void GradientsOverlappingAnOutput_AreRefused()
    {
        (RetinaTargets targets, float[][] cls, float[][] box) = Batch();
        // Level 0's class gradient written over level 1's class output.
        var dcls = cls.Select(a => (Memory<float>)new float[a.Length]).ToArray();
        var dbox = box.Select(a => (Memory<float>)new float[a.Length]).ToArray();
        float[] shared = new float[Math.Max(cls[0].Length, cls[1].Length)];
        cls[1].CopyTo(shared, 0);
        dcls[0] = shared.AsMemory(0, cls[0].Length);
        ReadOnlyMemory<float>[] clsIn = [.. cls.Select(a => (ReadOnlyMemory<float>)a)];
        clsIn[1] = shared.AsMemory(0, cls[1].Length);
        ReadOnlyMemory<float>[] boxIn = [.. box.Select(a => (ReadOnlyMemory<float>)a)];

        var e = Assert.Throws<ArgumentException>(() => new GhmLosses().Compute(clsIn, boxIn, targets, new DetectionLossResult(dcls, dbox)));
        Assert.Contains("outputs of level 1 overlap the result's gradient buffers of level 0", e.Message);
    }
}
