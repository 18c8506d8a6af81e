namespace GhmGen.Datasets;

/// <summary>A class of shape <see cref="SyntheticShapes"/> can draw.</summary>
public enum SyntheticShapeKind
{
    /// <summary>A filled ellipse ("circle"; stretched by the aspect ratio).</summary>
    Circle,

    /// <summary>A filled rectangle ("square"; stretched by the aspect ratio).</summary>
    Square,

    /// <summary>A filled isosceles triangle, apex up before rotation.</summary>
    Triangle,

    /// <summary>A filled five-pointed star (a 10-vertex polygon).</summary>
    Star,
}

/// <summary>COCO category names of the <see cref="SyntheticShapeKind"/>s.</summary>
public static class SyntheticShapeKinds
{
    /// <summary>Every kind, in the default category order (circle, square, triangle, star).</summary>
    public static IReadOnlyList<SyntheticShapeKind> All { get; } =
        [SyntheticShapeKind.Circle, SyntheticShapeKind.Square, SyntheticShapeKind.Triangle, SyntheticShapeKind.Star];

    /// <summary>The category name written to the annotation file: "circle", "square", "triangle" or "star".</summary>
    public static string Name(SyntheticShapeKind kind) => kind switch
    {
        SyntheticShapeKind.Circle => "circle",
        SyntheticShapeKind.Square => "square",
        SyntheticShapeKind.Triangle => "triangle",
        SyntheticShapeKind.Star => "star",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "not a shape kind"),
    };
}
