namespace GhmGen.Datasets;

/// <summary>What <see cref="SyntheticShapes.Write(string, SyntheticShapesOptions, IProgress{int}?, CancellationToken)"/> generates; every value has a default sized for fast CPU training.</summary>
/// <remarks>
/// The output depends on every property except <see cref="MaxDegreeOfParallelism"/>. Image <c>i</c>
/// of a split depends only on the seed, the split and <c>i</c> (and the drawing options), so
/// changing <see cref="TrainImages"/> leaves the val images as they were and vice versa.
/// </remarks>
public sealed record SyntheticShapesOptions
{
    /// <summary>Seed of every random choice; the same seed and options give byte-identical files.</summary>
    public int Seed { get; init; }

    /// <summary>Images in the train split (400).</summary>
    public int TrainImages { get; init; } = 400;

    /// <summary>Images in the val split (100).</summary>
    public int ValImages { get; init; } = 100;

    /// <summary>Smallest image width or height in pixels (128); each side is drawn uniformly from [min, max].</summary>
    public int MinImageSide { get; init; } = 128;

    /// <summary>Largest image width or height in pixels (192).</summary>
    public int MaxImageSide { get; init; } = 192;

    /// <summary>Fewest shapes attempted per image (2).</summary>
    /// <remarks>A shape that finds no place within the occlusion limit after some tries is left out, so a crowded image can hold fewer.</remarks>
    public int MinShapesPerImage { get; init; } = 2;

    /// <summary>Most shapes per image (6).</summary>
    public int MaxShapesPerImage { get; init; } = 6;

    /// <summary>The classes, in category order: category id <c>k + 1</c> is <c>Classes[k]</c> (default: circle, square, triangle, star).</summary>
    public IReadOnlyList<SyntheticShapeKind> Classes { get; init; } = SyntheticShapeKinds.All;

    /// <summary>Largest aspect ratio (width / height before rotation, or its inverse) of a shape (2); drawn log-uniformly.</summary>
    public double MaxAspectRatio { get; init; } = 2.0;

    /// <summary>Largest fraction of a shape's pixels that shapes drawn over it may hide (0.4); placements hiding more are rejected.</summary>
    public double MaxOccludedFraction { get; init; } = 0.4;

    /// <summary>Smallest shape area in pixels before occlusion (16*16 = 256).</summary>
    public int MinObjectArea { get; init; } = 16 * 16;

    /// <summary>Relative odds of drawing a shape's area from COCO's small, medium and large ranges (0.3, 0.5, 0.2).</summary>
    /// <remarks>
    /// The area is then drawn log-uniformly in that range: small [<see cref="MinObjectArea"/>, 32^2),
    /// medium [32^2, 96^2), large [96^2, half the image). A shape too wide or tall for its
    /// image is shrunk to fit (and may so become medium). Placements that would move an earlier
    /// shape's visible area into a smaller range than its full area's are rejected.
    /// </remarks>
    public SyntheticSizeMix SizeMix { get; init; } = new(0.3, 0.5, 0.2);

    /// <summary>Images rendered at once (-1: one per processor); does not change the output.</summary>
    public int MaxDegreeOfParallelism { get; init; } = -1;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first option out of range.</summary>
    public void Validate()
    {
        if (TrainImages < 0 || ValImages < 0)
            throw new ArgumentException($"image counts must not be negative, got train {TrainImages}, val {ValImages}");
        if (MinImageSide < 32 || MaxImageSide < MinImageSide || MaxImageSide > 4096)
            throw new ArgumentException($"image sides must satisfy 32 <= min <= max <= 4096, got {MinImageSide}..{MaxImageSide}");
        if (MinShapesPerImage < 1 || MaxShapesPerImage < MinShapesPerImage || MaxShapesPerImage > 64)
            throw new ArgumentException($"shapes per image must satisfy 1 <= min <= max <= 64, got {MinShapesPerImage}..{MaxShapesPerImage}");
        if (Classes is null || Classes.Count == 0)
            throw new ArgumentException("at least one class is needed");
        for (int i = 0; i < Classes.Count; i++)
        {
            if ((uint)Classes[i] > (uint)SyntheticShapeKind.Star)
                throw new ArgumentException($"class {i} ({(int)Classes[i]}) is not a shape kind");
            for (int j = 0; j < i; j++)
                if (Classes[j] == Classes[i])
                    throw new ArgumentException($"class '{SyntheticShapeKinds.Name(Classes[i])}' is listed twice");
        }
        if (!(MaxAspectRatio >= 1 && MaxAspectRatio <= 8))
            throw new ArgumentException($"the aspect ratio limit must be in [1, 8], got {MaxAspectRatio}");
        if (!(MaxOccludedFraction >= 0 && MaxOccludedFraction < 1))
            throw new ArgumentException($"the occluded fraction limit must be in [0, 1), got {MaxOccludedFraction}");
        if (MinObjectArea < 16 || MinObjectArea >= SyntheticSizeMix.MediumArea)
            throw new ArgumentException($"the smallest object area must be in [16, {SyntheticSizeMix.MediumArea}), got {MinObjectArea}");
        SizeMix.Validate();
        if (MaxDegreeOfParallelism == 0 || MaxDegreeOfParallelism < -1)
            throw new ArgumentException($"the degree of parallelism must be -1 or positive, got {MaxDegreeOfParallelism}");
    }
}

/// <summary>Relative odds of COCO's small (area &lt; 32^2), medium (&lt; 96^2) and large area ranges.</summary>
/// <param name="Small">Odds of an area below 32^2 = 1024 pixels.</param>
/// <param name="Medium">Odds of an area in [32^2, 96^2).</param>
/// <param name="Large">Odds of an area of 96^2 = 9216 pixels or more.</param>
public readonly record struct SyntheticSizeMix(double Small, double Medium, double Large)
{
    /// <summary>Smallest area (pixels) COCO counts as medium: 32^2.</summary>
    public const int MediumArea = 32 * 32;

    /// <summary>Smallest area (pixels) COCO counts as large: 96^2.</summary>
    public const int LargeArea = 96 * 96;

    /// <summary>Throws <see cref="ArgumentException"/> unless every weight is finite, non-negative, and one is positive.</summary>
    public void Validate()
    {
        if (!(double.IsFinite(Small) && double.IsFinite(Medium) && double.IsFinite(Large))
            || Small < 0 || Medium < 0 || Large < 0 || Small + Medium + Large <= 0)
            throw new ArgumentException($"size weights must be finite, non-negative and not all zero, got {Small}, {Medium}, {Large}");
    }
}
