// Renders one synthetic image: a textured background (two octaves of value noise blending two
// muted colours, plus per-pixel luminance noise), then shapes placed one by one, each later shape
// drawn over the earlier ones. A placement is rejected when it would leave an earlier shape with
// more than MaxOccludedFraction of its pixels hidden, or would move it into a smaller COCO size
// range. Shape colours keep MinBackgroundDistance from the background and MinShapeDistance from
// each other, so every object's visible pixels are exactly those within ShapeNoise of its colour
// (what the tests check). Everything comes from one SplitMix64 stream per image, so images can be
// rendered in any order or in parallel.
// Tests: tests/GhmGen.Runtime.Tests/Datasets/SyntheticShapesTests.cs.
namespace GhmGen.Datasets;

/// <summary>Draws the images of a synthetic shapes dataset.</summary>
internal static class SyntheticImageRenderer
{
    /// <summary>Largest per-pixel change (each channel, same for all three) of a shape's fill colour.</summary>
    public const int ShapeNoise = 6;

    /// <summary>Least RGB distance from a shape colour to any colour on the background's blend line.</summary>
    public const double MinBackgroundDistance = 100;

    /// <summary>Least RGB distance between the colours of two shapes in one image.</summary>
    public const double MinShapeDistance = 72;

    private const int MaxBackgroundNoise = 12;
    private const int PlacementTries = 24;
    private const int ColorTries = 256;

    /// <summary>Renders image <paramref name="index"/> of split <paramref name="split"/> (0 train, 1 val).</summary>
    public static SyntheticImage Render(SyntheticShapesOptions options, int split, int index)
    {
        SplitMix64 rng = SplitMix64.ForImage(options.Seed, split, index);
        int width = rng.NextInt(options.MinImageSide, options.MaxImageSide);
        int height = rng.NextInt(options.MinImageSide, options.MaxImageSide);
        var rgb = new byte[width * height * 3];

        (Rgb c0, Rgb c1) = BackgroundColors(ref rng);
        PaintBackground(rgb, width, height, c0, c1, ref rng);

        // owner[p] = index of the shape drawn last over pixel p, -1 for background.
        var owner = new int[width * height];
        Array.Fill(owner, -1);
        var shapes = new List<PlacedShape>();
        int wanted = rng.NextInt(options.MinShapesPerImage, options.MaxShapesPerImage);
        var hidden = new int[wanted];
        foreach (ShapePlan plan in PlanShapes(options, wanted, width, height, ref rng))
        {
            ShapeOutline outline = plan.Outline;
            List<int>? pixels = null;
            double cx = 0, cy = 0;
            // A shape with no room left is drawn again (same class, new size) a few times, then left out.
            for (int redraw = 0; redraw < 3 && pixels is null; redraw++)
            {
                if (redraw > 0) outline = SampleOutline(options, options.Classes[plan.ClassIndex], width, height, ref rng).Outline;
                (pixels, cx, cy) = TryPlace(outline, width, height, owner, shapes, hidden, ref rng);
            }
            if (pixels is null) continue;
            Rgb color = ShapeColor(c0, c1, shapes, ref rng);
            foreach (int p in pixels) owner[p] = shapes.Count;
            var extent = new OutlineBox(cx + outline.MinX, cy + outline.MinY, cx + outline.MaxX, cy + outline.MaxY);
            shapes.Add(new PlacedShape(plan.ClassIndex, color, pixels.Count, MinVisible(pixels.Count, options.MaxOccludedFraction), extent)
            {
                Visible = pixels.Count,
            });
        }

        PaintShapes(rgb, owner, shapes, ref rng);
        return new SyntheticImage(width, height, rgb, Annotate(owner, width, height, shapes));
    }

    private static (Rgb, Rgb) BackgroundColors(ref SplitMix64 rng)
    {
        // Muted (low saturation) colours over a wide range of brightness; the second hue near the first.
        double hue = rng.NextDouble(0, 360);
        Rgb c0 = Rgb.FromHsv(hue, rng.NextDouble(0.03, 0.35), rng.NextDouble(0.2, 0.8));
        Rgb c1 = Rgb.FromHsv(hue + rng.NextDouble(-90, 90), rng.NextDouble(0.03, 0.35), rng.NextDouble(0.2, 0.8));
        return (c0, c1);
    }

    private static void PaintBackground(byte[] rgb, int width, int height, Rgb c0, Rgb c1, ref SplitMix64 rng)
    {
        float[] coarse = ValueNoise(width, height, rng.NextDouble(24, 56), ref rng);
        float[] fine = ValueNoise(width, height, rng.NextDouble(4, 10), ref rng);
        double fineWeight = rng.NextDouble(0.15, 0.45);
        int noise = rng.NextInt(3, MaxBackgroundNoise);
        for (int p = 0; p < width * height; p++)
        {
            double t = (1 - fineWeight) * coarse[p] + fineWeight * fine[p];
            int n = rng.NextInt(-noise, noise);
            rgb[3 * p] = Clamp(c0.R + t * (c1.R - c0.R) + n);
            rgb[3 * p + 1] = Clamp(c0.G + t * (c1.G - c0.G) + n);
            rgb[3 * p + 2] = Clamp(c0.B + t * (c1.B - c0.B) + n);
        }
    }

    // Value noise in [0, 1]: random values on a grid of the given cell size, smoothstep-interpolated.
    private static float[] ValueNoise(int width, int height, double cell, ref SplitMix64 rng)
    {
        int gw = (int)(width / cell) + 2, gh = (int)(height / cell) + 2;
        var grid = new double[gw * gh];
        for (int i = 0; i < grid.Length; i++) grid[i] = rng.NextDouble();
        var values = new float[width * height];
        for (int y = 0; y < height; y++)
        {
            double gy = y / cell;
            int iy = (int)gy;
            double ty = Smooth(gy - iy);
            for (int x = 0; x < width; x++)
            {
                double gx = x / cell;
                int ix = (int)gx;
                double tx = Smooth(gx - ix);
                double top = grid[iy * gw + ix] + tx * (grid[iy * gw + ix + 1] - grid[iy * gw + ix]);
                double bottom = grid[(iy + 1) * gw + ix] + tx * (grid[(iy + 1) * gw + ix + 1] - grid[(iy + 1) * gw + ix]);
                values[y * width + x] = (float)(top + ty * (bottom - top));
            }
        }
        return values;
    }

    private static double Smooth(double t) => t * t * (3 - 2 * t);

    // Draws every shape's class and outline first, then orders them bottom to top: large shapes go
    // under the others, since once other shapes are down a large one rarely finds a place that
    // leaves them 1 - MaxOccludedFraction visible; small and medium ones stay in random order.
    private static List<ShapePlan> PlanShapes(SyntheticShapesOptions options, int count, int width, int height, ref SplitMix64 rng)
    {
        var plans = new List<ShapePlan>(count);
        for (int i = 0; i < count; i++)
        {
            int classIndex = rng.NextInt(0, options.Classes.Count - 1);
            (ShapeOutline outline, bool large) = SampleOutline(options, options.Classes[classIndex], width, height, ref rng);
            plans.Add(new ShapePlan(classIndex, outline, large));
        }
        return [.. plans.Where(p => p.Large), .. plans.Where(p => !p.Large)];
    }

    private static (ShapeOutline Outline, bool Large) SampleOutline(SyntheticShapesOptions options, SyntheticShapeKind kind,
        int width, int height, ref SplitMix64 rng)
    {
        // Size range first (small, medium, large by the mix), then a log-uniform area inside it.
        // Large areas are capped at half the image; a range the image cannot hold is not drawn.
        double maxArea = 0.5 * width * height;
        SyntheticSizeMix mix = options.SizeMix;
        double small = mix.Small, medium = maxArea > SyntheticSizeMix.MediumArea ? mix.Medium : 0;
        double large = maxArea > SyntheticSizeMix.LargeArea ? mix.Large : 0;
        if (small + medium + large <= 0) small = 1;
        double pick = rng.NextDouble() * (small + medium + large);
        (double lo, double hi) = pick < small ? (options.MinObjectArea, Math.Min(SyntheticSizeMix.MediumArea, maxArea))
            : pick < small + medium ? (SyntheticSizeMix.MediumArea, Math.Min(SyntheticSizeMix.LargeArea, maxArea))
            : (SyntheticSizeMix.LargeArea, maxArea);
        double area = Math.Exp(rng.NextDouble(Math.Log(lo), Math.Log(Math.Max(lo, hi))));
        double logAspect = Math.Log(options.MaxAspectRatio);
        double aspect = Math.Exp(rng.NextDouble(-logAspect, logAspect));
        double angle = rng.NextDouble(0, 2 * Math.PI);
        double innerRatio = rng.NextDouble(0.38, 0.55);
        ShapeOutline outline = ShapeOutline.Create(kind, area, aspect, angle, innerRatio);
        // Too wide or tall for the image (one pixel margin each side): shrink it to fit, keeping its
        // proportions; extents grow with the square root of the area.
        double fit = Math.Min((width - 2.5) / (outline.MaxX - outline.MinX), (height - 2.5) / (outline.MaxY - outline.MinY));
        if (fit < 1)
            outline = ShapeOutline.Create(kind, area * fit * fit, aspect, angle, innerRatio);
        return (outline, pick >= small + medium);
    }

    // Pixels of a shape that must stay visible: 1 - MaxOccludedFraction of them, and enough that
    // occlusion never moves the object into a smaller COCO size range than its full area's (so the
    // size mix holds for the annotated, visible areas).
    private static int MinVisible(int fullArea, double maxOccluded)
    {
        int rangeFloor = fullArea >= SyntheticSizeMix.LargeArea ? SyntheticSizeMix.LargeArea
            : fullArea >= SyntheticSizeMix.MediumArea ? SyntheticSizeMix.MediumArea : 1;
        return Math.Max(rangeFloor, (int)Math.Ceiling((1 - maxOccluded) * fullArea));
    }

    // Tries random centres that keep the whole outline inside the image (one pixel margin) and
    // leave every earlier shape at least its MinVisible pixels; on success returns the new shape's
    // pixels and centre, and subtracts what it hides from the earlier shapes' visible counts.
    private static (List<int>? Pixels, double Cx, double Cy) TryPlace(ShapeOutline outline, int width, int height,
        int[] owner, List<PlacedShape> shapes, int[] hidden, ref SplitMix64 rng)
    {
        double xLo = 1 - outline.MinX, xHi = width - 1 - outline.MaxX;
        double yLo = 1 - outline.MinY, yHi = height - 1 - outline.MaxY;
        if (xHi < xLo || yHi < yLo) return (null, 0, 0);
        for (int t = 0; t < PlacementTries; t++)
        {
            double cx = rng.NextDouble(xLo, xHi), cy = rng.NextDouble(yLo, yHi);
            List<int> pixels = outline.Rasterize(cx, cy, width, height);
            if (pixels.Count == 0) continue;
            Array.Clear(hidden);
            foreach (int p in pixels)
                if (owner[p] >= 0) hidden[owner[p]]++;
            bool fits = true;
            for (int i = 0; i < shapes.Count && fits; i++)
                fits = shapes[i].Visible - hidden[i] >= shapes[i].MinVisible;
            if (!fits) continue;
            for (int i = 0; i < shapes.Count; i++) shapes[i].Visible -= hidden[i];
            return (pixels, cx, cy);
        }
        return (null, 0, 0);
    }

    private static Rgb ShapeColor(Rgb c0, Rgb c1, List<PlacedShape> shapes, ref SplitMix64 rng)
    {
        // Saturated colours far from the background's blend line and from the image's other shapes;
        // if none of the tries is far enough, the farthest one is used.
        Rgb best = default;
        double bestMargin = double.MinValue;
        for (int t = 0; t < ColorTries; t++)
        {
            Rgb candidate = Rgb.FromHsv(rng.NextDouble(0, 360), rng.NextDouble(0.55, 1), rng.NextDouble(0.55, 1));
            double margin = candidate.DistanceToSegment(c0, c1) - MinBackgroundDistance;
            foreach (PlacedShape s in shapes)
                margin = Math.Min(margin, candidate.DistanceTo(s.Color) - MinShapeDistance);
            if (margin > bestMargin) (best, bestMargin) = (candidate, margin);
            if (margin >= 0) break;
        }
        return best;
    }

    private static void PaintShapes(byte[] rgb, int[] owner, List<PlacedShape> shapes, ref SplitMix64 rng)
    {
        for (int p = 0; p < owner.Length; p++)
        {
            if (owner[p] < 0) continue;
            Rgb c = shapes[owner[p]].Color;
            int n = rng.NextInt(-ShapeNoise, ShapeNoise);
            rgb[3 * p] = Clamp(c.R + n);
            rgb[3 * p + 1] = Clamp(c.G + n);
            rgb[3 * p + 2] = Clamp(c.B + n);
        }
    }

    private static SyntheticObject[] Annotate(int[] owner, int width, int height, List<PlacedShape> shapes)
    {
        int n = shapes.Count;
        var minX = new int[n]; var minY = new int[n]; var maxX = new int[n]; var maxY = new int[n]; var area = new int[n];
        Array.Fill(minX, int.MaxValue); Array.Fill(minY, int.MaxValue); Array.Fill(maxX, -1); Array.Fill(maxY, -1);
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
            {
                int o = owner[y * width + x];
                if (o < 0) continue;
                area[o]++;
                minX[o] = Math.Min(minX[o], x); maxX[o] = Math.Max(maxX[o], x);
                minY[o] = Math.Min(minY[o], y); maxY[o] = Math.Max(maxY[o], y);
            }
        var objects = new SyntheticObject[n];
        for (int i = 0; i < n; i++)
        {
            PlacedShape s = shapes[i];
            objects[i] = new SyntheticObject(s.ClassIndex, (s.Color.R, s.Color.G, s.Color.B),
                minX[i], minY[i], maxX[i] - minX[i] + 1, maxY[i] - minY[i] + 1, area[i], s.FullArea, s.Outline);
        }
        return objects;
    }

    private static byte Clamp(double v) => (byte)Math.Clamp((int)Math.Round(v), 0, 255);

    private readonly record struct ShapePlan(int ClassIndex, ShapeOutline Outline, bool Large);

    private sealed class PlacedShape(int classIndex, Rgb color, int fullArea, int minVisible, OutlineBox outline)
    {
        public OutlineBox Outline { get; } = outline;
        public int MinVisible { get; } = minVisible;
        public int ClassIndex { get; } = classIndex;
        public Rgb Color { get; } = color;
        public int FullArea { get; } = fullArea;
        public int Visible { get; set; }
    }

    private readonly record struct Rgb(byte R, byte G, byte B)
    {
        public static Rgb FromHsv(double hue, double saturation, double value)
        {
            hue = ((hue % 360) + 360) % 360;
            double c = value * saturation, x = c * (1 - Math.Abs(hue / 60 % 2 - 1)), m = value - c;
            (double r, double g, double b) = (int)(hue / 60) switch
            {
                0 => (c, x, 0.0), 1 => (x, c, 0.0), 2 => (0.0, c, x), 3 => (0.0, x, c), 4 => (x, 0.0, c), _ => (c, 0.0, x),
            };
            return new Rgb(Clamp((r + m) * 255), Clamp((g + m) * 255), Clamp((b + m) * 255));
        }

        public double DistanceTo(Rgb o) => Math.Sqrt(Sq(R - o.R) + Sq(G - o.G) + Sq(B - o.B));

        public double DistanceToSegment(Rgb a, Rgb b)
        {
            double dr = b.R - a.R, dg = b.G - a.G, db = b.B - a.B, length2 = dr * dr + dg * dg + db * db;
            double t = length2 == 0 ? 0 : Math.Clamp(((R - a.R) * dr + (G - a.G) * dg + (B - a.B) * db) / length2, 0, 1);
            return Math.Sqrt(Sq(R - (a.R + t * dr)) + Sq(G - (a.G + t * dg)) + Sq(B - (a.B + t * db)));
        }

        private static double Sq(double v) => v * v;
    }
}
