using System.Text.Json;

namespace GhmGen.Runtime.Tests.Detection;

/// <summary>Reads the files tools/reference/postprocess.py wrote.</summary>
internal static class DetectionFixtures
{
    public static string PathOf(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", "Detection", name);

    public static float[] Floats(string name)
    {
        byte[] bytes = File.ReadAllBytes(PathOf(name));
        var values = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, values, 0, values.Length * 4);
        return values;
    }

    public static int[] Ints(string name)
    {
        byte[] bytes = File.ReadAllBytes(PathOf(name));
        var values = new int[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, values, 0, values.Length * 4);
        return values;
    }

    public static JsonElement Manifest()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(PathOf("manifest.json")));
        return doc.RootElement.Clone();
    }
}
