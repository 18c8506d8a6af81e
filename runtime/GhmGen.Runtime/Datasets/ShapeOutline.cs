namespace GhmGen.Datasets;

/// <summary>
/// The outline of one shape in image pixels: a kind, a centre, half extents along its own axes
/// before rotation, and a rotation. A pixel belongs to the shape when its centre (x + 0.5, y + 0.5)
/// is inside (no anti-aliasing, so masks are exact and annotations can be checked against pixels).
/// </summary>
internal sealed class ShapeOutline
{
    // Unit triangle: apex (0, -1), base corners (+-1, 1); area 2 before scaling.
    private static readonly double[] TriangleVertices = [0, -1, 1, 1, -1, 1];

    private readonly double _cos, _sin;
    private readonly double[]? _vertices; // unit-space polygon (x0, y0, x1, y1, ...) for triangles and stars

    private ShapeOutline(SyntheticShapeKind kind, double halfWidth, double halfHeight, double angle, double[]? vertices)
    {
        Kind = kind;
        HalfWidth = halfWidth;
        HalfHeight = halfHeight;
        _cos = Math.Cos(angle);
        _sin = Math.Sin(angle);
        _vertices = vertices;
        (MinX, MaxX, MinY, MaxY) = Extent();
    }

    public SyntheticShapeKind Kind { get; }

    public double HalfWidth { get; }

    public double HalfHeight { get; }

    /// <summary>Offsets from the centre to the rotated outline's bounding box (MinX, MinY &lt;= 0 &lt;= MaxX, MaxY).</summary>
    public double MinX { get; }

    /// <inheritdoc cref="MinX"/>
    public double MaxX { get; }

    /// <inheritdoc cref="MinX"/>
    public double MinY { get; }

    /// <inheritdoc cref="MinX"/>
    public double MaxY { get; }

    /// <summary>
    /// A shape of <paramref name="kind"/> whose area is <paramref name="area"/> pixels, with width/height
    /// <paramref name="aspect"/> before rotation by <paramref name="angle"/> radians; <paramref name="starInnerRatio"/>
    /// is a star's inner radius over its outer radius (ignored for other kinds).
    /// </summary>
    public static ShapeOutline Create(SyntheticShapeKind kind, double area, double aspect, double angle, double starInnerRatio)
    {
        double[]? vertices = kind switch
        {
            SyntheticShapeKind.Triangle => TriangleVertices,
            SyntheticShapeKind.Star => StarVertices(starInnerRatio),
            _ => null,
        };
        double unitArea = kind switch
        {
            SyntheticShapeKind.Circle => Math.PI,
            SyntheticShapeKind.Square => 4,
            SyntheticShapeKind.Triangle => 2,
            // Ten triangles between the centre and consecutive outer/inner points, 36 degrees apart.
            _ => 5 * starInnerRatio * Math.Sin(Math.PI / 5),
        };
        double product = area / unitArea; // halfWidth * halfHeight
        return new ShapeOutline(kind, Math.Sqrt(product * aspect), Math.Sqrt(product / aspect), angle, vertices);
    }

    /// <summary>Whether the point (<paramref name="dx"/>, <paramref name="dy"/>), relative to the centre, is inside.</summary>
    public bool Contains(double dx, double dy)
    {
        // Image to shape axes: rotate by -angle, then scale to the unit shape.
        double u = (dx * _cos + dy * _sin) / HalfWidth;
        double v = (-dx * _sin + dy * _cos) / HalfHeight;
        return Kind switch
        {
            SyntheticShapeKind.Circle => u * u + v * v <= 1,
            SyntheticShapeKind.Square => Math.Abs(u) <= 1 && Math.Abs(v) <= 1,
            _ => InsidePolygon(_vertices!, u, v),
        };
    }

    /// <summary>
    /// Pixel indices (y * width + x) of the shape centred at (<paramref name="cx"/>, <paramref name="cy"/>)
    /// in a <paramref name="width"/> x <paramref name="height"/> image, in raster order.
    /// </summary>
    public List<int> Rasterize(double cx, double cy, int width, int height)
    {
        int x0 = Math.Max(0, (int)Math.Floor(cx + MinX)), x1 = Math.Min(width - 1, (int)Math.Ceiling(cx + MaxX));
        int y0 = Math.Max(0, (int)Math.Floor(cy + MinY)), y1 = Math.Min(height - 1, (int)Math.Ceiling(cy + MaxY));
        var pixels = new List<int>(Math.Max(0, (x1 - x0 + 1) * (y1 - y0 + 1)));
        for (int y = y0; y <= y1; y++)
            for (int x = x0; x <= x1; x++)
                if (Contains(x + 0.5 - cx, y + 0.5 - cy))
                    pixels.Add(y * width + x);
        return pixels;
    }

    // Five outer points (radius 1, the first straight up) alternating with five inner points (radius r).
    private static double[] StarVertices(double innerRatio)
    {
        var vertices = new double[20];
        for (int k = 0; k < 10; k++)
        {
            double radius = k % 2 == 0 ? 1 : innerRatio;
            double theta = -Math.PI / 2 + k * Math.PI / 5;
            vertices[2 * k] = radius * Math.Cos(theta);
            vertices[2 * k + 1] = radius * Math.Sin(theta);
        }
        return vertices;
    }

    // Even-odd crossing test; the star and the triangle are simple polygons, so it equals "inside".
    private static bool InsidePolygon(double[] vertices, double x, double y)
    {
        bool inside = false;
        int n = vertices.Length / 2;
        for (int i = 0, j = n - 1; i < n; j = i++)
        {
            double xi = vertices[2 * i], yi = vertices[2 * i + 1], xj = vertices[2 * j], yj = vertices[2 * j + 1];
            if ((yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi)
                inside = !inside;
        }
        return inside;
    }

    private (double MinX, double MaxX, double MinY, double MaxY) Extent()
    {
        if (Kind == SyntheticShapeKind.Circle)
        {
            double ex = Math.Sqrt(Sq(HalfWidth * _cos) + Sq(HalfHeight * _sin));
            double ey = Math.Sqrt(Sq(HalfWidth * _sin) + Sq(HalfHeight * _cos));
            return (-ex, ex, -ey, ey);
        }
        double[] unit = _vertices ?? [-1, -1, 1, -1, 1, 1, -1, 1];
        double minX = double.MaxValue, maxX = double.MinValue, minY = double.MaxValue, maxY = double.MinValue;
        for (int i = 0; i < unit.Length; i += 2)
        {
            // Shape axes to image: scale, then rotate by +angle.
            double sx = unit[i] * HalfWidth, sy = unit[i + 1] * HalfHeight;
            double x = sx * _cos - sy * _sin, y = sx * _sin + sy * _cos;
            minX = Math.Min(minX, x); maxX = Math.Max(maxX, x);
            minY = Math.Min(minY, y); maxY = Math.Max(maxY, y);
        }
        return (minX, maxX, minY, maxY);
    }

    private static double Sq(double v) => v * v;
}
