// A seeded stand-in for COCO val2017 + a detector's results, for CocoEvalBenchmarks: 640x480 images
// with 0..14 objects (plus 30% one more; ~7.3 on average, val2017 has 7.3) of 1-4 categories per
// image (person in 45% of the images, as in COCO), log-uniform box sizes from ~4 to ~600 px, an area
// field of 50-90% of w * h (a segmentation is smaller than its box), 1% crowd regions. Detections:
// exactly detectionsPerImage per image, 60% jittered copies of the image's boxes (usually of the right
// category, higher scores), 40% random boxes (lower scores); scores rounded to 4 decimals, so there
// are ties. Ids as in COCO: images sparse, categories the 80 COCO ids, annotations 1-based.
using System.Text.Json;
using GhmGen.Detection;
using GhmGen.Evaluation;

namespace GhmGen.Bench;

/// <summary>A seeded synthetic COCO-like ground truth and detections, written as JSON text.</summary>
internal sealed class CocoSyntheticDataset
{
    private readonly List<long> images = [];
    private readonly List<CocoAnnotation> annotations = [];
    private readonly List<CocoDetection> detections = [];

    public static CocoSyntheticDataset Generate(int seed, int imageCount, int detectionsPerImage)
    {
        var random = new Random(seed);
        var d = new CocoSyntheticDataset();
        ReadOnlySpan<int> categoryIds = CocoCategories.CategoryIds;
        long annotationId = 1;
        var present = new List<int>();
        var boxes = new List<(CocoBox Box, int Category)>();
        for (int i = 0; i < imageCount; i++)
        {
            long imageId = 139 + 97L * i + random.Next(97);
            d.images.Add(imageId);
            present.Clear();
            if (random.NextDouble() < 0.45) present.Add(1);
            int extra = 1 + random.Next(present.Count == 0 ? 4 : 3);
            for (int e = 0; e < extra; e++) present.Add(categoryIds[random.Next(CocoCategories.Count)]);

            boxes.Clear();
            int objects = random.Next(15) + (random.NextDouble() < 0.3 ? 1 : 0);
            for (int o = 0; o < objects; o++)
            {
                CocoBox box = RandomBox(random);
                int category = present[random.Next(present.Count)];
                boxes.Add((box, category));
                d.annotations.Add(new CocoAnnotation(annotationId++, imageId, category, box,
                    box.Width * box.Height * (0.5 + 0.4 * random.NextDouble()), random.NextDouble() < 0.01));
            }
            for (int k = 0; k < detectionsPerImage; k++)
            {
                CocoBox box;
                int category;
                double score;
                if (boxes.Count > 0 && random.NextDouble() < 0.6)
                {
                    (CocoBox g, int c) = boxes[random.Next(boxes.Count)];
                    double jitter = 0.25 * random.NextDouble();
                    box = new CocoBox(g.X + g.Width * jitter * (random.NextDouble() - 0.5), g.Y + g.Height * jitter * (random.NextDouble() - 0.5),
                        g.Width * (1 + jitter * (random.NextDouble() - 0.5)), g.Height * (1 + jitter * (random.NextDouble() - 0.5)));
                    category = random.NextDouble() < 0.8 ? c : present[random.Next(present.Count)];
                    score = 0.3 + 0.7 * random.NextDouble();
                }
                else
                {
                    box = RandomBox(random);
                    category = random.NextDouble() < 0.7 ? present[random.Next(present.Count)] : categoryIds[random.Next(CocoCategories.Count)];
                    score = 0.05 + 0.55 * random.NextDouble();
                }
                d.detections.Add(new CocoDetection(imageId, category, box, Math.Round(score, 4)));
            }
        }
        return d;
    }

    private static CocoBox RandomBox(Random random)
    {
        double side = Math.Exp(Math.Log(4) + (Math.Log(600) - Math.Log(4)) * random.NextDouble());
        double aspect = Math.Exp(random.NextDouble() * 2 - 1);
        double w = Math.Min(640, side * aspect), h = Math.Min(480, side / aspect);
        return new CocoBox(Math.Round((640 - w) * random.NextDouble(), 2), Math.Round((480 - h) * random.NextDouble(), 2), Math.Round(w, 2), Math.Round(h, 2));
    }

    public byte[] GroundTruthJson()
    {
        var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream))
        {
            w.WriteStartObject();
            w.WriteStartArray("images");
            foreach (long id in images)
            {
                w.WriteStartObject();
                w.WriteString("file_name", $"{id:D12}.jpg");
                w.WriteNumber("height", 480);
                w.WriteNumber("width", 640);
                w.WriteNumber("id", id);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("annotations");
            foreach (CocoAnnotation a in annotations)
            {
                w.WriteStartObject();
                w.WriteStartArray("segmentation");
                w.WriteStartArray();
                foreach (double v in (ReadOnlySpan<double>)[a.Box.X, a.Box.Y, a.Box.X + a.Box.Width, a.Box.Y, a.Box.X + a.Box.Width, a.Box.Y + a.Box.Height]) w.WriteNumberValue(v);
                w.WriteEndArray();
                w.WriteEndArray();
                w.WriteNumber("area", a.Area);
                w.WriteNumber("iscrowd", a.IsCrowd ? 1 : 0);
                w.WriteNumber("image_id", a.ImageId);
                WriteBox(w, a.Box);
                w.WriteNumber("category_id", a.CategoryId);
                w.WriteNumber("id", a.Id);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("categories");
            for (int k = 0; k < CocoCategories.Count; k++)
            {
                w.WriteStartObject();
                w.WriteString("supercategory", "thing");
                w.WriteNumber("id", CocoCategories.CategoryIds[k]);
                w.WriteString("name", CocoCategories.Names[k]);
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
            foreach (CocoDetection d in detections)
            {
                w.WriteStartObject();
                w.WriteNumber("image_id", d.ImageId);
                WriteBox(w, d.Box);
                w.WriteNumber("score", d.Score);
                w.WriteNumber("category_id", d.CategoryId);
                w.WriteEndObject();
            }
            w.WriteEndArray();
        }
        return stream.ToArray();
    }

    private static void WriteBox(Utf8JsonWriter w, CocoBox box)
    {
        w.WriteStartArray("bbox");
        w.WriteNumberValue(box.X);
        w.WriteNumberValue(box.Y);
        w.WriteNumberValue(box.Width);
        w.WriteNumberValue(box.Height);
        w.WriteEndArray();
    }
}
