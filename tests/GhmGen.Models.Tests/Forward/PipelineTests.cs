using System.Text.Json;
using GhmGen.Backends.Cpu;
using GhmGen.Detection;
using GhmGen.Imaging;
using GhmGen.Layers;

namespace GhmGen.Models.Tests.Forward;

/// <summary>
/// Image file to detections, end to end, against tools/reference/detect_pipeline.py (OpenCV
/// decode and resize, the seeded R-50 in PyTorch float64, docs/MODEL.md §7 post-processing with
/// torchvision's batched_nms), on two images of different aspect ratios fitted to 200x120.
/// Our forward runs in float32 (head outputs within 1e-4 of max |value|, PyTorchForwardTests), so
/// scores are compared to 2e-4 and boxes to 0.05 px; detections whose scores lie within 2e-4 of
/// a neighbour may trade places, so such runs are compared as sets. The last few ranks are left
/// out: which of two near-equal candidates makes the cut at 100 is decided by float32 noise.
/// </summary>
public class PipelineTests
{
    private const float ScoreTolerance = 2e-4f, BoxTolerance = 0.05f;

    [Fact]
    public void Detections_EqualPyTorchPipeline()
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "Pipeline", "detections.json")));
        int[] fit = doc.RootElement.GetProperty("fit").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var options = new PreprocessOptions(LongEdge: fit[0], ShortEdge: fit[1]);

        ModelInfo model = ModelRegistry.Get("retinanet-ghm-r50-fpn");
        INetwork network = model.Create();
        SeededWeights.Fill(network);
        using var backend = new CpuBackend(2);
        using IPreparedNetwork prepared = model.Prepare(network, backend);

        foreach (JsonElement image in doc.RootElement.GetProperty("images").EnumerateArray())
        {
            string name = image.GetProperty("image").GetString()!;
            PreprocessedImage input = Preprocessor.Run(ImageDecoder.Decode(Path.Combine(AppContext.BaseDirectory, "Fixtures", "Imaging", name)), options);
            int[] padded = image.GetProperty("padded").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            Assert.Equal((padded[0], padded[1]), (input.PaddedHeight, input.PaddedWidth));

            using IForwardSession session = prepared.CreateSession(1, input.PaddedHeight, input.PaddedWidth);
            session.Forward(input.Tensor);
            var levels = new HeadLevelOutput[5];
            for (int l = 0; l < 5; l++)
            {
                float[] cls = Download(session.Outputs[2 * l].Tensor), reg = Download(session.Outputs[2 * l + 1].Tensor);
                levels[l] = new HeadLevelOutput(cls, reg, session.Outputs[2 * l].Tensor.H, session.Outputs[2 * l].Tensor.W);
            }
            DetectedObject[] actual = PostProcessor.Run(levels, input.ResizedHeight, input.ResizedWidth, input.ScaleX, input.ScaleY);
            DetectedObject[] expected = image.GetProperty("detections").EnumerateArray().Select(d =>
            {
                float[] v = d.EnumerateArray().Select(e => (float)e.GetDouble()).ToArray();
                return new DetectedObject(v[0], v[1], v[2], v[3], v[4], (int)v[5]);
            }).ToArray();
            Compare(name, expected, actual);
        }

        float[] Download(GhmGen.Backends.TensorView t)
        {
            float[] values = new float[t.ElementCount];
            backend.Download(t, values);
            return values;
        }
    }

    private static void Compare(string name, DetectedObject[] expected, DetectedObject[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        int compared = expected.Length - 5;
        int start = 0;
        while (start < compared)
        {
            // A run of detections whose consecutive scores are within the tolerance.
            int end = start + 1;
            while (end < expected.Length && expected[end - 1].Score - expected[end].Score < ScoreTolerance) end++;
            var want = expected[start..end].OrderBy(d => d.Label).ThenBy(d => d.X1).ToArray();
            var got = actual[start..Math.Min(end, actual.Length)].OrderBy(d => d.Label).ThenBy(d => d.X1).ToArray();
            for (int i = 0; i < want.Length; i++)
            {
                DetectedObject e = want[i], a = got[i];
                bool same = e.Label == a.Label && Math.Abs(e.Score - a.Score) <= ScoreTolerance
                    && Math.Abs(e.X1 - a.X1) <= BoxTolerance && Math.Abs(e.Y1 - a.Y1) <= BoxTolerance
                    && Math.Abs(e.X2 - a.X2) <= BoxTolerance && Math.Abs(e.Y2 - a.Y2) <= BoxTolerance;
                Assert.True(same, $"{name}, ranks {start}..{end - 1}: expected {e}, got {a}");
            }
            start = end;
        }
    }
}
