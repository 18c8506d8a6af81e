using System.Text;
using System.Text.Json;
using GhmGen.Evaluation;

namespace GhmGen.Runtime.Tests.Evaluation;

/// <summary>
/// A small COCO dataset written in code and turned into real JSON text, so every evaluation test also
/// goes through <see cref="CocoGroundTruth.Parse"/> and <see cref="CocoResults.Parse"/>.
/// Ground-truth area defaults to w * h; annotation ids default to 1, 2, ... in the order added.
/// </summary>
internal sealed class CocoCase
{
    public List<long> Images { get; } = [1];
    public List<(long Id, string Name)> Categories { get; } = [(1, "thing")];
    public List<Annotation> Annotations { get; } = [];
    public List<CocoDetection> Detections { get; } = [];

    public sealed record Annotation(long Id, long ImageId, long CategoryId, double[] Box, double Area, bool Crowd);

    public CocoCase Gt(double x, double y, double w, double h, long image = 1, long category = 1, bool crowd = false, double? area = null, long? id = null)
    {
        Annotations.Add(new Annotation(id ?? Annotations.Count + 1, image, category, [x, y, w, h], area ?? w * h, crowd));
        return this;
    }

    public CocoCase Dt(double x, double y, double w, double h, double score, long image = 1, long category = 1)
    {
        Detections.Add(new CocoDetection(image, category, new CocoBox(x, y, w, h), score));
        return this;
    }

    public byte[] GroundTruthJson()
    {
        var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream))
        {
            w.WriteStartObject();
            w.WriteStartArray("images");
            foreach (long id in Images)
            {
                w.WriteStartObject();
                w.WriteNumber("id", id);
                w.WriteNumber("width", 640);
                w.WriteNumber("height", 480);
                w.WriteString("file_name", $"{id:D12}.jpg");
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("categories");
            foreach ((long id, string name) in Categories)
            {
                w.WriteStartObject();
                w.WriteString("supercategory", "none");
                w.WriteNumber("id", id);
                w.WriteString("name", name);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("annotations");
            foreach (Annotation a in Annotations)
            {
                w.WriteStartObject();
                w.WriteStartArray("segmentation");
                w.WriteStartArray();
                foreach (double v in a.Box) w.WriteNumberValue(v);
                w.WriteEndArray();
                w.WriteEndArray();
                w.WriteNumber("area", a.Area);
                w.WriteNumber("iscrowd", a.Crowd ? 1 : 0);
                w.WriteNumber("image_id", a.ImageId);
                w.WriteStartArray("bbox");
                foreach (double v in a.Box) w.WriteNumberValue(v);
                w.WriteEndArray();
                w.WriteNumber("category_id", a.CategoryId);
                w.WriteNumber("id", a.Id);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return stream.ToArray();
    }

    public byte[] ResultsJson()
    {
        var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream))
        {
            w.WriteStartArray();
            foreach (CocoDetection d in Detections)
            {
                w.WriteStartObject();
                w.WriteNumber("image_id", d.ImageId);
                w.WriteNumber("category_id", d.CategoryId);
                w.WriteStartArray("bbox");
                w.WriteNumberValue(d.Box.X);
                w.WriteNumberValue(d.Box.Y);
                w.WriteNumberValue(d.Box.Width);
                w.WriteNumberValue(d.Box.Height);
                w.WriteEndArray();
                w.WriteNumber("score", d.Score);
                w.WriteEndObject();
            }
            w.WriteEndArray();
        }
        return stream.ToArray();
    }

    public CocoGroundTruth LoadGroundTruth() => CocoGroundTruth.Parse(GroundTruthJson(), "gt.json");

    public CocoResults LoadResults(CocoGroundTruth groundTruth) => CocoResults.Parse(ResultsJson(), "results.json", groundTruth);

    public CocoEvaluation Evaluate(int threads = 0) => CocoEvaluator.Evaluate(LoadResults(LoadGroundTruth()), threads);

    public static string Text(byte[] utf8) => Encoding.UTF8.GetString(utf8);
}
