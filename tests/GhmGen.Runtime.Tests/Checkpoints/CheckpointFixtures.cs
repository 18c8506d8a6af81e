using System.Globalization;
using System.Numerics;
using System.Text.Json;
using GhmGen.Checkpoints;
using GhmGen.Layers;

namespace GhmGen.Runtime.Tests.Checkpoints;

/// <summary>The PyTorch-made fixtures of tools/reference/checkpoints.py and their expected values.</summary>
internal static class CheckpointFixtures
{
    public static string Directory => Path.Combine(AppContext.BaseDirectory, "Fixtures", "Checkpoints");

    public static string PathOf(string fileName) => Path.Combine(Directory, fileName);

    public static readonly string[] AllPth =
    [
        "mixed_zip.pth", "mixed_legacy.pth", "mmdet_like_zip.pth", "mmdet_like_legacy.pth", "bare_zip.pth", "bare_legacy.pth",
    ];

    public static JsonElement Expected(string name) =>
        JsonDocument.Parse(File.ReadAllBytes(PathOf(name + ".expected.json"))).RootElement;

    public sealed record ExpectedTensor(string Key, string DType, int[] Shape, JsonElement Values);

    public static List<ExpectedTensor> ExpectedTensors(JsonElement expected) =>
        expected.GetProperty("tensors").EnumerateArray().Select(t => new ExpectedTensor(
            t.GetProperty("key").GetString()!,
            t.GetProperty("dtype").GetString()!,
            t.GetProperty("shape").EnumerateArray().Select(d => d.GetInt32()).ToArray(),
            t.GetProperty("values"))).ToList();

    /// <summary>Float values are written by Python as repr() of the float32 value, so parsing them is exact.</summary>
    public static float[] FloatValues(JsonElement values) =>
        values.EnumerateArray().Select(v => (float)double.Parse(v.GetString()!, CultureInfo.InvariantCulture)).ToArray();

    public static long[] IntValues(JsonElement values) => values.EnumerateArray().Select(v => v.GetInt64()).ToArray();

    /// <summary>Asserts a value tree equals Python's tagged JSON (see json_value in checkpoints.py).</summary>
    public static void AssertMetaEqual(JsonElement expected, PickleValue actual, string path = "meta")
    {
        switch (expected.ValueKind)
        {
            case JsonValueKind.Null:
                Assert.True(actual.Kind == PickleValueKind.None, $"{path}: expected None, got {actual}");
                break;
            case JsonValueKind.True:
            case JsonValueKind.False:
                Assert.True(actual.Kind == PickleValueKind.Bool, $"{path}: expected bool, got {actual}");
                Assert.Equal(expected.GetBoolean(), actual.AsBool);
                break;
            case JsonValueKind.Number:
                Assert.True(actual.Kind is PickleValueKind.Int or PickleValueKind.BigInt, $"{path}: expected int, got {actual}");
                Assert.Equal(BigInteger.Parse(expected.GetRawText(), CultureInfo.InvariantCulture), actual.AsBigInteger);
                break;
            case JsonValueKind.String:
                Assert.True(actual.Kind == PickleValueKind.String, $"{path}: expected str, got {actual}");
                Assert.Equal(expected.GetString(), actual.AsString);
                break;
            case JsonValueKind.Array:
                Assert.True(actual.Kind == PickleValueKind.List, $"{path}: expected list, got {actual}");
                AssertItems(expected, actual, path);
                break;
            default:
                if (expected.TryGetProperty("float", out JsonElement f))
                {
                    Assert.True(actual.Kind == PickleValueKind.Float, $"{path}: expected float, got {actual}");
                    Assert.Equal(double.Parse(f.GetString()!, CultureInfo.InvariantCulture), actual.AsDouble);
                }
                else if (expected.TryGetProperty("tuple", out JsonElement items))
                {
                    Assert.True(actual.Kind == PickleValueKind.Tuple, $"{path}: expected tuple, got {actual}");
                    AssertItems(items, actual, path);
                }
                else
                {
                    JsonElement[] entries = expected.GetProperty("dict").EnumerateArray().ToArray();
                    Assert.True(actual.Kind == PickleValueKind.Dict, $"{path}: expected dict, got {actual}");
                    Assert.Equal(entries.Length, actual.Entries.Count);
                    for (int i = 0; i < entries.Length; i++)
                    {
                        AssertMetaEqual(entries[i][0], actual.Entries[i].Key, $"{path}.key{i}");
                        AssertMetaEqual(entries[i][1], actual.Entries[i].Value, $"{path}[{entries[i][0]}]");
                    }
                }
                break;
        }
    }

    private static void AssertItems(JsonElement expected, PickleValue actual, string path)
    {
        JsonElement[] items = expected.EnumerateArray().ToArray();
        Assert.Equal(items.Length, actual.Items.Count);
        for (int i = 0; i < items.Length; i++) AssertMetaEqual(items[i], actual.Items[i], $"{path}[{i}]");
    }

    /// <summary>Python's tagged JSON for a value tree (the inverse of <see cref="AssertMetaEqual"/>).</summary>
    public static void WriteTagged(Utf8JsonWriter writer, PickleValue value)
    {
        switch (value.Kind)
        {
            case PickleValueKind.None: writer.WriteNullValue(); break;
            case PickleValueKind.Bool: writer.WriteBooleanValue(value.AsBool); break;
            case PickleValueKind.Int: writer.WriteNumberValue(value.AsInt64); break;
            case PickleValueKind.BigInt: writer.WriteRawValue(value.AsBigInteger.ToString(CultureInfo.InvariantCulture)); break;
            case PickleValueKind.String: writer.WriteStringValue(value.AsString); break;
            case PickleValueKind.Float:
                writer.WriteStartObject();
                writer.WriteString("float", value.AsDouble.ToString("R", CultureInfo.InvariantCulture));
                writer.WriteEndObject();
                break;
            case PickleValueKind.List:
                writer.WriteStartArray();
                foreach (PickleValue item in value.Items) WriteTagged(writer, item);
                writer.WriteEndArray();
                break;
            case PickleValueKind.Tuple:
                writer.WriteStartObject();
                writer.WriteStartArray("tuple");
                foreach (PickleValue item in value.Items) WriteTagged(writer, item);
                writer.WriteEndArray();
                writer.WriteEndObject();
                break;
            case PickleValueKind.Dict:
                writer.WriteStartObject();
                writer.WriteStartArray("dict");
                foreach (KeyValuePair<PickleValue, PickleValue> e in value.Entries)
                {
                    writer.WriteStartArray();
                    WriteTagged(writer, e.Key);
                    WriteTagged(writer, e.Value);
                    writer.WriteEndArray();
                }
                writer.WriteEndArray();
                writer.WriteEndObject();
                break;
            default:
                throw new InvalidOperationException(value.Kind.ToString());
        }
    }
}

/// <summary>A hand-made network for load tests: a fixed list of state tensors.</summary>
internal sealed class TestNetwork(string name, params StateTensor[] state) : INetwork
{
    public string Name { get; } = name;

    public IReadOnlyList<StateTensor> State { get; } = state;

    public long ParameterCount => State.Where(s => s.Kind == StateKind.Parameter).Sum(s => s.ElementCount);

    /// <summary>The network whose keys and shapes are exactly those of mmdet_like.expected.json.</summary>
    public static TestNetwork MmdetLike(string name = "tiny_retinanet_ghm")
    {
        JsonElement expected = CheckpointFixtures.Expected("mmdet_like");
        return new TestNetwork(name, CheckpointFixtures.ExpectedTensors(expected).Select(t => new StateTensor(
            t.Key, t.Shape,
            t.Key.Contains("running_") || t.Key.Contains("num_batches") || t.Key.Contains("loss_") ? StateKind.Buffer : StateKind.Parameter,
            t.DType == "int64" ? StateElementType.Int64 : StateElementType.Float32)).ToArray());
    }
}
