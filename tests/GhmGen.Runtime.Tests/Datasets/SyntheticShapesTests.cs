using System.Diagnostics;
using System.Text.Json;
using GhmGen.Datasets;
using GhmGen.Imaging;
using Xunit.Abstractions;

namespace GhmGen.Runtime.Tests.Datasets;

public class SyntheticShapesTests(SyntheticShapesFixture set, ITestOutputHelper output) : IClassFixture<SyntheticShapesFixture>
{
    private static readonly SyntheticShapesOptions Small = new() { TrainImages = 12, ValImages = 4 };

    internal static string NewTempDirectory()
    {
        string path = Path.Combine(Path.GetTempPath(), "ghmgen-synth-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(path);
        return path;
    }

    [Fact]
    public void Write_SameSeed_GivesByteIdenticalFiles_WhateverTheParallelism()
    {
        string a = NewTempDirectory(), b = NewTempDirectory(), c = NewTempDirectory();
        try
        {
            SyntheticShapes.Write(a, Small with { MaxDegreeOfParallelism = 1 });
            SyntheticShapes.Write(b, Small with { MaxDegreeOfParallelism = 4 });
            SyntheticShapes.Write(c, Small with { Seed = 1 });
            string[] files = RelativeFiles(a);
            Assert.Equal(2 + 12 + 4, files.Length);
            Assert.Equal(files, RelativeFiles(b));
            foreach (string f in files)
                Assert.True(File.ReadAllBytes(Path.Combine(a, f)).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(b, f))), $"{f} differs");
            string first = Path.Combine("train", "000001.png");
            Assert.False(File.ReadAllBytes(Path.Combine(a, first)).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(c, first))),
                "seed 1 drew the same first image as seed 0");
        }
        finally
        {
            foreach (string d in (string[])[a, b, c]) Directory.Delete(d, recursive: true);
        }
    }

    [Fact]
    public void Write_ValImagesDoNotDependOnTheTrainCount()
    {
        string a = NewTempDirectory(), b = NewTempDirectory();
        try
        {
            SyntheticShapes.Write(a, Small);
            SyntheticShapes.Write(b, Small with { TrainImages = 3 });
            foreach (string f in RelativeFiles(Path.Combine(a, "val")))
                Assert.True(File.ReadAllBytes(Path.Combine(a, "val", f)).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(b, "val", f))), $"val/{f} differs");
        }
        finally
        {
            Directory.Delete(a, recursive: true);
            Directory.Delete(b, recursive: true);
        }
    }

    [Fact]
    public void Annotations_MatchThePixels_BoxesTightAndAreasExact()
    {
        // For each object, the pixels within ShapeNoise of its fill colour are exactly its visible
        // pixels (colours are kept far from the background and from each other), so their count
        // must equal the area and their tight box the bbox. Every image of the default set is
        // checked; the first ones are also decoded from their PNG, which must hold the same pixels.
        foreach ((string split, int splitIndex, int images) in (ReadOnlySpan<(string, int, int)>)[("train", 0, 400), ("val", 1, 100)])
        {
            using JsonDocument doc = ReadJson(split);
            ILookup<int, JsonElement> annotations = doc.RootElement.GetProperty("annotations").EnumerateArray()
                .ToLookup(a => a.GetProperty("image_id").GetInt32());
            for (int i = 0; i < images; i++)
            {
                SyntheticImage rendered = SyntheticImageRenderer.Render(set.Options, splitIndex, i);
                var image = new RgbImage(rendered.Width, rendered.Height, rendered.Rgb);
                if (i < 20)
                {
                    RgbImage decoded = ImageDecoder.Decode(Path.Combine(set.Directory, split, $"{i + 1:D6}.png"));
                    Assert.Equal((image.Width, image.Height), (decoded.Width, decoded.Height));
                    Assert.Equal(image.Rgb, decoded.Rgb);
                }
                JsonElement[] mine = [.. annotations[i + 1]];
                Assert.Equal(rendered.Objects.Length, mine.Length);
                for (int k = 0; k < mine.Length; k++)
                {
                    (int x, int y, int w, int h, int area) = ColouredPixels(image, rendered.Objects[k].Color);
                    int[] bbox = [.. mine[k].GetProperty("bbox").EnumerateArray().Select(v => v.GetInt32())];
                    string what = $"{split} image {i + 1} object {k + 1}";
                    Assert.True(area > 0, $"{what}: no pixel of its colour");
                    Assert.True(bbox.SequenceEqual([x, y, w, h]), $"{what}: bbox [{string.Join(", ", bbox)}], pixels span [{x}, {y}, {w}, {h}]");
                    Assert.True(area == mine[k].GetProperty("area").GetInt32(), $"{what}: area {mine[k].GetProperty("area")}, {area} pixels");
                    Assert.Equal(rendered.Objects[k].ClassIndex + 1, mine[k].GetProperty("category_id").GetInt32());
                }
            }
        }
    }

    [Fact]
    public void Render_UnoccludedShapes_BoxIsTightToTheExactOutline()
    {
        // A pixel is the shape's when its centre is inside, so on each side the pixel box lies
        // within half a pixel of the outline, plus what a corner can miss between pixel centres:
        // under 1 px for circles and squares; a triangle's or star's sharp tips can miss more
        // (measured over these 200 images: triangle 2.05, star 2.51 px).
        var worst = new double[4];
        for (int i = 0; i < 200; i++)
            foreach (SyntheticObject o in SyntheticImageRenderer.Render(set.Options, 0, i).Objects)
            {
                if (o.Area != o.FullArea) continue;
                double[] gaps = [o.X - o.Outline.Left, o.Y - o.Outline.Top, o.Outline.Right - (o.X + o.BoxWidth), o.Outline.Bottom - (o.Y + o.BoxHeight)];
                int kind = (int)set.Options.Classes[o.ClassIndex];
                foreach (double g in gaps)
                {
                    Assert.True(g >= -0.5, $"image {i + 1}: pixels reach {-g} px beyond the outline");
                    worst[kind] = Math.Max(worst[kind], g);
                }
            }
        output.WriteLine($"largest gap outline -> pixel box: circle {worst[0]:F2}, square {worst[1]:F2}, triangle {worst[2]:F2}, star {worst[3]:F2} px");
        Assert.True(worst[0] <= 1 && worst[1] <= 1, $"circle {worst[0]}, square {worst[1]} px");
        Assert.True(worst[2] <= 3 && worst[3] <= 3, $"triangle {worst[2]}, star {worst[3]} px");
    }

    [Fact]
    public void Render_NoObjectIsHiddenBeyondTheOcclusionLimit()
    {
        int occluded = 0;
        for (int i = 0; i < 200; i++)
            foreach (SyntheticObject o in SyntheticImageRenderer.Render(set.Options, 0, i).Objects)
            {
                Assert.True(o.Area >= (1 - set.Options.MaxOccludedFraction) * o.FullArea,
                    $"image {i + 1}: {o.Area} of {o.FullArea} pixels visible");
                if (o.Area < o.FullArea) occluded++;
            }
        Assert.True(occluded > 0, "no object in 200 images is partly occluded");
    }

    [Fact]
    public void DefaultSet_CoversSmallMediumAndLarge_InBothSplits()
    {
        foreach (SyntheticSplitSummary split in (SyntheticSplitSummary[])[set.Summary.Train, set.Summary.Val])
        {
            output.WriteLine($"{split.Name}: {split.Images} images, {split.Objects} objects, small {split.Small}, medium {split.Medium}, large {split.Large}");
            foreach (SyntheticCategoryCount c in split.Categories)
                output.WriteLine($"  {c.CategoryId} {c.Name}: small {c.Small}, medium {c.Medium}, large {c.Large}");
            Assert.True(split.Small > 0 && split.Medium > 0 && split.Large > 0, $"{split.Name}: {split.Small}/{split.Medium}/{split.Large}");
        }
    }

    [Fact]
    public void DefaultSet_HasEveryClass_InBothSplits()
    {
        foreach (SyntheticSplitSummary split in (SyntheticSplitSummary[])[set.Summary.Train, set.Summary.Val])
        {
            Assert.Equal(["circle", "square", "triangle", "star"], split.Categories.Select(c => c.Name));
            Assert.Equal([1, 2, 3, 4], split.Categories.Select(c => c.CategoryId));
            Assert.All(split.Categories, c => Assert.True(c.Total > 0, $"{split.Name}: no {c.Name}"));
        }
    }

    [Fact]
    public void Json_HasTheCocoFields_AndAgreesWithTheSummaryAndTheImages()
    {
        foreach (SyntheticSplitSummary split in (SyntheticSplitSummary[])[set.Summary.Train, set.Summary.Val])
        {
            Assert.Equal(Path.Combine(set.Directory, "annotations", $"instances_{split.Name}.json"), split.AnnotationFile);
            Assert.Equal(Path.Combine(set.Directory, split.Name), split.ImageDirectory);
            using JsonDocument doc = ReadJson(split.Name);
            JsonElement root = doc.RootElement;

            JsonElement[] categories = [.. root.GetProperty("categories").EnumerateArray()];
            Assert.Equal([1, 2, 3, 4], categories.Select(c => c.GetProperty("id").GetInt32()));
            Assert.Equal(["circle", "square", "triangle", "star"], categories.Select(c => c.GetProperty("name").GetString()));

            JsonElement[] images = [.. root.GetProperty("images").EnumerateArray()];
            Assert.Equal(split.Images, images.Length);
            var sizes = new Dictionary<int, (int W, int H)>();
            for (int i = 0; i < images.Length; i++)
            {
                Assert.Equal(i + 1, images[i].GetProperty("id").GetInt32());
                string file = images[i].GetProperty("file_name").GetString()!;
                Assert.Equal($"{i + 1:D6}.png", file);
                (int w, int h) = (images[i].GetProperty("width").GetInt32(), images[i].GetProperty("height").GetInt32());
                Assert.InRange(w, set.Options.MinImageSide, set.Options.MaxImageSide);
                Assert.InRange(h, set.Options.MinImageSide, set.Options.MaxImageSide);
                if (i % 25 == 0)
                {
                    RgbImage png = ImageDecoder.Decode(Path.Combine(split.ImageDirectory, file));
                    Assert.Equal((w, h), (png.Width, png.Height));
                }
                else
                {
                    Assert.True(File.Exists(Path.Combine(split.ImageDirectory, file)), file);
                }
                sizes[i + 1] = (w, h);
            }

            JsonElement[] annotations = [.. root.GetProperty("annotations").EnumerateArray()];
            Assert.Equal(split.Objects, annotations.Length);
            var perCategory = new int[4];
            for (int a = 0; a < annotations.Length; a++)
            {
                JsonElement ann = annotations[a];
                Assert.Equal(a + 1, ann.GetProperty("id").GetInt32());
                (int w, int h) = sizes[ann.GetProperty("image_id").GetInt32()];
                int category = ann.GetProperty("category_id").GetInt32();
                Assert.InRange(category, 1, 4);
                perCategory[category - 1]++;
                double[] box = [.. ann.GetProperty("bbox").EnumerateArray().Select(v => v.GetDouble())];
                Assert.Equal(4, box.Length);
                Assert.True(box[0] >= 0 && box[1] >= 0 && box[2] >= 1 && box[3] >= 1 && box[0] + box[2] <= w && box[1] + box[3] <= h,
                    $"annotation {a + 1}: box [{string.Join(", ", box)}] in a {w}x{h} image");
                double area = ann.GetProperty("area").GetDouble();
                Assert.InRange(area, 1, box[2] * box[3]);
                Assert.Equal(0, ann.GetProperty("iscrowd").GetInt32());
            }
            Assert.Equal(split.Categories.Select(c => c.Total), perCategory);
        }
    }

    [Fact]
    public void Write_ReportsProgressOncePerImage_InOrder()
    {
        string dir = NewTempDirectory();
        try
        {
            var seen = new List<int>();
            SyntheticShapes.Write(dir, Small with { MaxDegreeOfParallelism = 3 }, new SyncProgress(seen.Add));
            Assert.Equal(Enumerable.Range(1, 16), seen);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Write_ReportsARecordPerImage_WithTheTotalAndTheSplit()
    {
        string dir = NewTempDirectory();
        try
        {
            var seen = new List<SyntheticShapesProgress>();
            SyntheticShapes.Write(dir, Small with { MaxDegreeOfParallelism = 3 }, new SyncRecordProgress(seen.Add));
            Assert.Equal(Enumerable.Range(1, 16), seen.Select(p => p.Written));
            Assert.All(seen, p => Assert.Equal(16, p.Total));
            Assert.Equal(Enumerable.Repeat("train", 12).Concat(Enumerable.Repeat("val", 4)), seen.Select(p => p.Split));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Write_Cancelled_StopsPromptly_AndLeavesNoJson()
    {
        string dir = NewTempDirectory();
        try
        {
            // A json from an earlier run must not survive to name images this run is overwriting.
            string stale = Path.Combine(dir, "annotations", "instances_train.json");
            Directory.CreateDirectory(Path.GetDirectoryName(stale)!);
            File.WriteAllText(stale, "{}");
            using var cts = new CancellationTokenSource();
            var clock = Stopwatch.StartNew();
            var options = new SyntheticShapesOptions { TrainImages = 100_000, ValImages = 100_000, MaxDegreeOfParallelism = 2 };
            Assert.ThrowsAny<OperationCanceledException>(() =>
                SyntheticShapes.Write(dir, options, new SyncProgress(n => { if (n == 5) cts.Cancel(); }), cts.Token));
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"cancellation took {clock.Elapsed}");
            Assert.False(File.Exists(stale));
            Assert.False(File.Exists(Path.Combine(dir, "annotations", "instances_val.json")));
            int written = Directory.GetFiles(Path.Combine(dir, "train")).Length;
            Assert.InRange(written, 5, 20);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Options_OutOfRange_AreRejectedBeforeAnythingIsWritten()
    {
        string dir = Path.Combine(Path.GetTempPath(), "ghmgen-synth-never-" + Guid.NewGuid().ToString("N"));
        SyntheticShapesOptions[] bad =
        [
            new() { TrainImages = -1 },
            new() { MinImageSide = 16 },
            new() { MinImageSide = 200, MaxImageSide = 100 },
            new() { MinShapesPerImage = 0 },
            new() { Classes = [] },
            new() { Classes = [SyntheticShapeKind.Star, SyntheticShapeKind.Star] },
            new() { Classes = [(SyntheticShapeKind)9] },
            new() { MaxAspectRatio = 0.5 },
            new() { MaxOccludedFraction = 1 },
            new() { MinObjectArea = 4096 },
            new() { SizeMix = new SyntheticSizeMix(0, 0, 0) },
            new() { SizeMix = new SyntheticSizeMix(double.NaN, 1, 1) },
            new() { MaxDegreeOfParallelism = 0 },
        ];
        foreach (SyntheticShapesOptions options in bad)
            Assert.Throws<ArgumentException>(() => SyntheticShapes.Write(dir, options));
        Assert.False(Directory.Exists(dir));
    }

    [Fact]
    public void Write_ClassSubset_NumbersCategoriesInTheGivenOrder()
    {
        string dir = NewTempDirectory();
        try
        {
            SyntheticShapesSummary summary = SyntheticShapes.Write(dir,
                Small with { Classes = [SyntheticShapeKind.Star, SyntheticShapeKind.Circle] });
            Assert.Equal(["star", "circle"], summary.Train.Categories.Select(c => c.Name));
            using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(summary.Train.AnnotationFile));
            Assert.Equal(["star", "circle"], doc.RootElement.GetProperty("categories").EnumerateArray().Select(c => c.GetProperty("name").GetString()));
            Assert.All(doc.RootElement.GetProperty("annotations").EnumerateArray(), a => Assert.InRange(a.GetProperty("category_id").GetInt32(), 1, 2));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void DefaultSet_WriteTime_IsReported()
    {
        long bytes = Directory.GetFiles(set.Directory, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
        output.WriteLine($"default set ({set.Summary.Train.Images} + {set.Summary.Val.Images} images, {bytes / 1e6:F1} MB) "
            + $"written in {set.WriteTime.TotalSeconds:F2} s on {Environment.ProcessorCount} processors");
        Assert.True(set.WriteTime < TimeSpan.FromMinutes(2), $"took {set.WriteTime}");
    }

    private JsonDocument ReadJson(string split) =>
        JsonDocument.Parse(File.ReadAllBytes(Path.Combine(set.Directory, "annotations", $"instances_{split}.json")));

    private static (int X, int Y, int W, int H, int Area) ColouredPixels(RgbImage image, (byte R, byte G, byte B) color)
    {
        int minX = int.MaxValue, minY = int.MaxValue, maxX = -1, maxY = -1, area = 0;
        const int tolerance = SyntheticImageRenderer.ShapeNoise;
        for (int y = 0; y < image.Height; y++)
            for (int x = 0; x < image.Width; x++)
            {
                int p = 3 * (y * image.Width + x);
                if (Math.Abs(image.Rgb[p] - color.R) > tolerance || Math.Abs(image.Rgb[p + 1] - color.G) > tolerance
                    || Math.Abs(image.Rgb[p + 2] - color.B) > tolerance)
                    continue;
                area++;
                minX = Math.Min(minX, x); maxX = Math.Max(maxX, x);
                minY = Math.Min(minY, y); maxY = Math.Max(maxY, y);
            }
        return (minX, minY, maxX - minX + 1, maxY - minY + 1, area);
    }

    private static string[] RelativeFiles(string root) =>
        [.. Directory.GetFiles(root, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(root, f)).Order(StringComparer.Ordinal)];

    private sealed class SyncProgress(Action<int> report) : IProgress<int>
    {
        public void Report(int value) => report(value);
    }

    private sealed class SyncRecordProgress(Action<SyntheticShapesProgress> report) : IProgress<SyntheticShapesProgress>
    {
        public void Report(SyntheticShapesProgress value) => report(value);
    }
}
