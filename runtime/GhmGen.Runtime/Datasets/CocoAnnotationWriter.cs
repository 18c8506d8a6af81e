using System.Text.Json;

namespace GhmGen.Datasets;

/// <summary>Writes a split's COCO instances json: info, licenses, images, annotations, categories.</summary>
internal static class CocoAnnotationWriter
{
    /// <summary>
    /// Writes <paramref name="images"/> (with file names <paramref name="fileNames"/>) to <paramref name="stream"/>.
    /// Image ids and annotation ids count from 1 in image order, then drawing order; category id k + 1 is class k.
    /// </summary>
    public static void Write(Stream stream, string split, SyntheticShapesOptions options,
        IReadOnlyList<SyntheticImage> images, IReadOnlyList<string> fileNames)
    {
        using var json = new Utf8JsonWriter(stream);
        json.WriteStartObject();

        json.WriteStartObject("info");
        json.WriteString("description", $"GhmGen synthetic shapes, {split} split");
        json.WriteString("version", "1");
        json.WriteNumber("seed", options.Seed);
        json.WriteEndObject();
        json.WriteStartArray("licenses");
        json.WriteEndArray();

        json.WriteStartArray("images");
        for (int i = 0; i < images.Count; i++)
        {
            json.WriteStartObject();
            json.WriteNumber("id", i + 1);
            json.WriteString("file_name", fileNames[i]);
            json.WriteNumber("width", images[i].Width);
            json.WriteNumber("height", images[i].Height);
            json.WriteEndObject();
        }
        json.WriteEndArray();

        json.WriteStartArray("annotations");
        int annotationId = 0;
        for (int i = 0; i < images.Count; i++)
            foreach (SyntheticObject o in images[i].Objects)
            {
                json.WriteStartObject();
                json.WriteNumber("id", ++annotationId);
                json.WriteNumber("image_id", i + 1);
                json.WriteNumber("category_id", o.ClassIndex + 1);
                json.WriteStartArray("bbox");
                json.WriteNumberValue(o.X);
                json.WriteNumberValue(o.Y);
                json.WriteNumberValue(o.BoxWidth);
                json.WriteNumberValue(o.BoxHeight);
                json.WriteEndArray();
                json.WriteNumber("area", o.Area);
                json.WriteNumber("iscrowd", 0);
                json.WriteEndObject();
            }
        json.WriteEndArray();

        json.WriteStartArray("categories");
        for (int k = 0; k < options.Classes.Count; k++)
        {
            json.WriteStartObject();
            json.WriteNumber("id", k + 1);
            json.WriteString("name", SyntheticShapeKinds.Name(options.Classes[k]));
            json.WriteString("supercategory", "shape");
            json.WriteEndObject();
        }
        json.WriteEndArray();

        json.WriteEndObject();
    }
}
