using System.Text.Json;

namespace GhmGen.Runtime.Tests.Losses;

/// <summary>Reads a fixture written by tools/reference/ghm_losses.py: a JSON manifest plus a .bin of arrays.</summary>
internal sealed class LossFixture
{
    private readonly byte[] _data;
    private readonly Dictionary<string, (string Dtype, int Count, int Offset)> _arrays = [];

    private LossFixture(string prefix)
    {
        Meta = JsonDocument.Parse(File.ReadAllBytes(prefix + ".json")).RootElement;
        _data = File.ReadAllBytes(prefix + ".bin");
        foreach (JsonElement a in Meta.GetProperty("arrays").EnumerateArray())
        {
            int count = 1;
            foreach (JsonElement d in a.GetProperty("shape").EnumerateArray()) count *= d.GetInt32();
            _arrays[a.GetProperty("name").GetString()!] = (a.GetProperty("dtype").GetString()!, count, a.GetProperty("offset").GetInt32());
        }
    }

    public JsonElement Meta { get; }

    public static LossFixture Load(string name) => new(Path.Combine(FixtureDirectory(), name));

    public float[] Floats(string name)
    {
        var (dtype, count, offset) = _arrays[name];
        Assert.Equal("float32", dtype);
        return System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(_data.AsSpan(offset, count * 4)).ToArray();
    }

    public int[] Ints(string name)
    {
        var (dtype, count, offset) = _arrays[name];
        Assert.Equal("int32", dtype);
        return System.Runtime.InteropServices.MemoryMarshal.Cast<byte, int>(_data.AsSpan(offset, count * 4)).ToArray();
    }

    /// <summary>The source folder of the fixtures, found by walking up from the test binaries.</summary>
    private static string FixtureDirectory()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "tests", "GhmGen.Runtime.Tests", "Fixtures", "Losses");
            if (Directory.Exists(candidate)) return candidate;
            candidate = Path.Combine(dir.FullName, "Fixtures", "Losses");
            if (Directory.Exists(candidate)) return candidate;
        }
        throw new DirectoryNotFoundException($"Fixtures/Losses not found above {AppContext.BaseDirectory}.");
    }

    // ---- the head outputs the reference script hashed (lowbias32), reproduced bit for bit

    private static uint LowBias32(uint x)
    {
        x ^= x >> 16;
        x *= 0x7FEB352Du;
        x ^= x >> 15;
        x *= 0x846CA68Bu;
        x ^= x >> 16;
        return x;
    }

    public static float[] HashedLogits(int count, int seed)
    {
        uint mix = unchecked((uint)seed * 0x9E3779B9u);
        var values = new float[count];
        for (int i = 0; i < count; i++)
            values[i] = (float)(LowBias32(unchecked((uint)i + mix)) >> 8) * (1f / (1 << 21)) - 6f;
        return values;
    }

    public static float[] HashedDeltas(int count, int seed)
    {
        uint mix = unchecked((uint)seed * 0x9E3779B9u);
        var values = new float[count];
        for (int i = 0; i < count; i++)
            values[i] = (float)(LowBias32(unchecked((uint)i + mix)) >> 8) * (1f / (1 << 23)) - 1f;
        return values;
    }

    public static int HeadSeed(int iteration, int level, bool box) => iteration * 1000 + level * 10 + (box ? 1 : 0);

    public static void ApplyOverrides(float[] values, JsonElement overrides)
    {
        foreach (JsonElement pair in overrides.EnumerateArray())
            values[pair[0].GetInt32()] = pair[1].GetSingle();
    }
}
