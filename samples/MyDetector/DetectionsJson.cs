using System.Text.Json;
using GhmGen.Models;

namespace MyApp;

/// <summary>
/// Writes detections as `ghm detect` does: a JSON array of {"image", "bbox": [x, y, w, h], "score",
/// "category_id", "label"}, category_id = label + 1 (the synthetic dataset's ids). Utf8JsonWriter, so
/// it is NativeAOT-safe without a serializer context.
/// </summary>
internal static class DetectionsJson
{
    public static void Write(string path, IEnumerable<(string Image, DetectionResult Result)> images)
    {
        using FileStream file = File.Create(path);
        using var json = new Utf8JsonWriter(file, new JsonWriterOptions { Indented = true });
        json.WriteStartArray();
        foreach ((string image, DetectionResult result) in images)
        {
            foreach (var o in result.Objects)
            {
                json.WriteStartObject();
                json.WriteString("image", image);
                json.WriteStartArray("bbox");
                json.WriteNumberValue(o.X1);
                json.WriteNumberValue(o.Y1);
                json.WriteNumberValue(o.X2 - o.X1);
                json.WriteNumberValue(o.Y2 - o.Y1);
                json.WriteEndArray();
                json.WriteNumber("score", o.Score);
                json.WriteNumber("category_id", o.Label + 1);
                json.WriteNumber("label", o.Label);
                json.WriteEndObject();
            }
        }
        json.WriteEndArray();
    }
}
