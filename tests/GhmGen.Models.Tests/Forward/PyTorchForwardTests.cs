using System.Text.Json;
using GhmGen.Backends;
using GhmGen.Layers;

namespace GhmGen.Models.Tests.Forward;

/// <summary>
/// The generated Forward of the four detectors against PyTorch (tools/reference/make_fixtures.py):
/// seeded weights and input on both sides, head outputs computed by PyTorch in float64.
/// Tolerance: 1e-4 x the output's max |value|. PyTorch's own float32 run differs from its float64
/// run by at most 3.4e-6 x max |value| on these cases (recorded in the fixture JSON), float32
/// summation-order differences over K <= 2304 terms are of that order, and a wrong layer (a
/// missing bias, a wrong stride or upsampling index) moves outputs by far more than 1e-4 x max.
/// </summary>
public class PyTorchForwardTests
{
    public static TheoryData<string, string> ReferenceCases => new() { { "retinanet-ghm-r50-fpn", "72x100" } };

    public static TheoryData<string, string> AllCases => new()
    {
        { "retinanet-ghm-r50-fpn", "96x128" },
        { "retinanet-ghm-r50-fpn", "64x160" },
        { "retinanet-ghm-r50-fpn", "72x100" },
        { "retinanet-ghm-r101-fpn", "96x128" },
        { "retinanet-ghm-x101-32x4d-fpn", "96x128" },
        { "retinanet-ghm-x101-64x4d-fpn", "96x128" },
    };

    [Theory]
    [MemberData(nameof(AllCases))]
    public void CpuBackend_EqualsPyTorch(string model, string size)
    {
        using var backend = new GhmGen.Backends.Cpu.CpuBackend();
        Check(model, size, backend);
    }

    [Theory]
    [MemberData(nameof(ReferenceCases))]
    public void ReferenceBackend_EqualsPyTorch(string model, string size)
    {
        using var backend = new ReferenceBackend();
        Check(model, size, backend);
    }

    internal static void Check(string modelName, string size, IBackend backend)
    {
        string stem = Path.Combine(AppContext.BaseDirectory, "Fixtures", "Forward", $"{modelName}-{size}");
        using JsonDocument meta = JsonDocument.Parse(File.ReadAllText(stem + ".json"));
        int[] inputShape = meta.RootElement.GetProperty("input_shape").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        byte[] raw = File.ReadAllBytes(stem + ".bin");
        float[] expected = new float[raw.Length / 4];
        Buffer.BlockCopy(raw, 0, expected, 0, raw.Length);

        ModelInfo info = ModelRegistry.Get(modelName);
        INetwork network = info.Create();
        SeededWeights.Fill(network);
        float[] input = new float[inputShape.Aggregate(1, (a, b) => a * b)];
        SeededWeights.FillInput(input);

        using IForwardSession session = info.CreateSession(network, backend, inputShape[0], inputShape[2], inputShape[3]);
        session.Forward(input);

        foreach (JsonElement output in meta.RootElement.GetProperty("outputs").EnumerateArray())
        {
            string name = output.GetProperty("name").GetString()!;
            int offset = output.GetProperty("offset_floats").GetInt32(), count = output.GetProperty("count").GetInt32();
            double maxAbs = output.GetProperty("max_abs").GetDouble();
            TensorView tensor = session.Outputs.Single(o => o.Name == name).Tensor;
            Assert.Equal(output.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()), new[] { tensor.N, tensor.C, tensor.H, tensor.W });
            float[] actual = new float[count];
            backend.Download(tensor, actual);
            double worst = 0;
            int at = 0;
            for (int i = 0; i < count; i++)
            {
                double d = Math.Abs(actual[i] - expected[offset + i]);
                if (d > worst) (worst, at) = (d, i);
            }
            Assert.True(worst <= 1e-4 * maxAbs,
                $"{modelName} {size} {name}: max |diff| {worst:G4} at {at} ({actual[at]} vs {expected[offset + at]}) exceeds 1e-4 x max |value| {maxAbs:G4}");
        }
    }
}
