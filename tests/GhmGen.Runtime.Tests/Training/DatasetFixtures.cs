using System.Text;
using System.Text.Json;
using GhmGen.Imaging;
using StbImageWriteSharp;

namespace GhmGen.Runtime.Tests.Training;

/// <summary>One COCO image entry of a test annotation file.</summary>
internal sealed record TestImage(long Id, string FileName, int Width, int Height);

/// <summary>One COCO annotation of a test file; <c>Extra</c> is raw JSON appended to the object.</summary>
internal sealed record TestAnnotation(long Id, long ImageId, long CategoryId, double[] Box, double? Area = null, int IsCrowd = 0, string? Extra = null);

/// <summary>Builds COCO annotation files and PNG images for the training tests.</summary>
internal static partial class TrainingFixtures
{
    public static (long Id, string Name)[] CocoFirstCategories => [(1, "person"), (2, "bicycle"), (3, "car")];

    public static byte[] CocoJson(IEnumerable<TestImage> images, IEnumerable<TestAnnotation> annotations, IEnumerable<(long Id, string Name)> categories)
    {
        var text = new StringBuilder();
        text.Append("{\"info\": {\"description\": \"test\", \"year\": 2017},\n\"images\": [");
        text.AppendJoin(",\n", images.Select(i =>
            $"{{\"license\": 1, \"file_name\": {JsonString(i.FileName)}, \"height\": {i.Height}, \"width\": {i.Width}, \"id\": {i.Id}}}"));
        text.Append("],\n\"annotations\": [");
        text.AppendJoin(",\n", annotations.Select(a =>
            $"{{\"segmentation\": [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]], \"area\": {Number(a.Area ?? a.Box[2] * a.Box[3])}, \"iscrowd\": {a.IsCrowd}, " +
            $"\"image_id\": {a.ImageId}, \"bbox\": [{string.Join(", ", a.Box.Select(Number))}], \"category_id\": {a.CategoryId}, \"id\": {a.Id}{a.Extra}}}"));
        text.Append("],\n\"categories\": [");
        text.AppendJoin(",\n", categories.Select(c => $"{{\"supercategory\": \"thing\", \"id\": {c.Id}, \"name\": {JsonString(c.Name)}}}"));
        text.Append("]}\n");
        return Encoding.UTF8.GetBytes(text.ToString());
    }

    /// <summary>A PNG of <paramref name="width"/> x <paramref name="height"/> whose pixels depend on (x, y, seed).</summary>
    public static byte[] Png(int width, int height, int seed) => Png(Pattern(width, height, seed));

    public static byte[] Png(RgbImage image)
    {
        using var stream = new MemoryStream();
        new ImageWriter().WritePng(image.Rgb, image.Width, image.Height, ColorComponents.RedGreenBlue, stream);
        return stream.ToArray();
    }

    public static RgbImage Pattern(int width, int height, int seed)
    {
        var rgb = new byte[width * height * 3];
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
            {
                int i = (y * width + x) * 3;
                rgb[i] = (byte)(x * 7 + seed * 31);
                rgb[i + 1] = (byte)(y * 5 + seed * 17);
                rgb[i + 2] = (byte)(x * y + seed);
            }
        return new RgbImage(width, height, rgb);
    }

    private static string JsonString(string value)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream)) writer.WriteStringValue(value);
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private static string Number(double value) => value.ToString("R", System.Globalization.CultureInfo.InvariantCulture);
}

/// <summary>A temporary folder of PNG images and a COCO annotation file, deleted on Dispose.</summary>
internal sealed class TempDataset : IDisposable
{
    public TempDataset()
    {
        Root = Path.Combine(Path.GetTempPath(), "ghmgen-train-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Root);
    }

    public string Root { get; }

    public string AnnotationFile => Path.Combine(Root, "train.json");

    public void WriteImage(string fileName, byte[] bytes) => File.WriteAllBytes(Path.Combine(Root, fileName), bytes);

    public void WriteAnnotations(byte[] json) => File.WriteAllBytes(AnnotationFile, json);

    /// <summary>
    /// Writes <paramref name="count"/> images alternating between wide (w x h = 48x36 + i) and tall
    /// (36 x 44 + i) with two annotations each, and the annotation file.
    /// </summary>
    public static TempDataset WithImages(int count)
    {
        var dataset = new TempDataset();
        var images = new List<TestImage>();
        var annotations = new List<TestAnnotation>();
        for (int i = 0; i < count; i++)
        {
            bool wide = i % 3 != 1;
            int width = wide ? 48 + i : 36, height = wide ? 36 : 44 + i;
            string name = $"img{i:D3}.png";
            dataset.WriteImage(name, TrainingFixtures.Png(width, height, i));
            images.Add(new TestImage(100 + i, name, width, height));
            annotations.Add(new TestAnnotation(1000 + 2 * i, 100 + i, 1 + i % 3, [2 + i % 5, 3, 20, 15]));
            annotations.Add(new TestAnnotation(1001 + 2 * i, 100 + i, 1, [10, 8 + i % 4, 12.5, 20]));
        }
        dataset.WriteAnnotations(TrainingFixtures.CocoJson(images, annotations, TrainingFixtures.CocoFirstCategories));
        return dataset;
    }

    public void Dispose()
    {
        try { Directory.Delete(Root, recursive: true); }
        catch (IOException) { }
    }
}
