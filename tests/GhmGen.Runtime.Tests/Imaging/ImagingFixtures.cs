using System.Text.Json;

namespace GhmGen.Runtime.Tests.Imaging;

/// <summary>Locates and reads the files tools/reference/imaging.py wrote.</summary>
internal static class ImagingFixtures
{
    public static string PathOf(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", "Imaging", name);

    public static byte[] Bytes(string name) => File.ReadAllBytes(PathOf(name));

    public static float[] Floats(string name)
    {
        byte[] bytes = Bytes(name);
        var values = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, values, 0, values.Length * 4);
        return values;
    }

    public static JsonElement Manifest(string section)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(PathOf("manifest.json")));
        return doc.RootElement.GetProperty(section).Clone();
    }
}
