using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.Json;
using GhmGen.Layers;

namespace GhmGen.Runtime.Tests.Training;

/// <summary>The torch-made fixtures of tools/reference/train_optim.py.</summary>
internal static partial class TrainingFixtures
{
    public static string Directory => Path.Combine(AppContext.BaseDirectory, "Fixtures", "Training");

    public static string PathOf(string fileName) => Path.Combine(Directory, fileName);

    public static JsonElement Json(string fileName) => JsonDocument.Parse(File.ReadAllBytes(PathOf(fileName))).RootElement;

    /// <summary>SHA-256 of the little-endian float32 bytes, lower-case hex, as the script's sha().</summary>
    public static string Sha(ReadOnlySpan<float> values) =>
        Convert.ToHexStringLower(SHA256.HashData(MemoryMarshal.AsBytes(values)));

    /// <summary>seeded_weights.uniform(key, n, low, high): the script's inputs.</summary>
    public static float[] Uniform(string key, long count, double low, double high)
    {
        var values = new float[count];
        SeededWeights.FillUniform(key, values, low, high);
        return values;
    }

    public static float Bits(JsonElement bits) => BitConverter.UInt32BitsToSingle(bits.GetUInt32());
}
