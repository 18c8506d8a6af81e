namespace GhmGen.Datasets;

/// <summary>What <see cref="SyntheticShapes.Write(string, SyntheticShapesOptions, IProgress{int}?, CancellationToken)"/> wrote: the folder and one summary per split.</summary>
/// <param name="Directory">The dataset folder (full path).</param>
/// <param name="Train">The train split.</param>
/// <param name="Val">The val split.</param>
public sealed record SyntheticShapesSummary(string Directory, SyntheticSplitSummary Train, SyntheticSplitSummary Val);

/// <summary>One split of a synthetic dataset: its files and object counts.</summary>
/// <param name="Name">"train" or "val".</param>
/// <param name="AnnotationFile">The COCO annotation json (full path).</param>
/// <param name="ImageDirectory">The folder the images' <c>file_name</c>s are relative to (full path).</param>
/// <param name="Images">Images written.</param>
/// <param name="Categories">Objects per category and COCO size range, in category id order.</param>
public sealed record SyntheticSplitSummary(
    string Name, string AnnotationFile, string ImageDirectory, int Images, IReadOnlyList<SyntheticCategoryCount> Categories)
{
    /// <summary>Annotated objects in the split.</summary>
    public int Objects => Categories.Sum(c => c.Total);

    /// <summary>Objects whose visible area is below 32^2.</summary>
    public int Small => Categories.Sum(c => c.Small);

    /// <summary>Objects whose visible area is in [32^2, 96^2).</summary>
    public int Medium => Categories.Sum(c => c.Medium);

    /// <summary>Objects whose visible area is 96^2 or more.</summary>
    public int Large => Categories.Sum(c => c.Large);
}

/// <summary>Objects of one category in a split, by COCO size range of the annotated (visible) area.</summary>
/// <param name="CategoryId">COCO category id (1-based, the position in <see cref="SyntheticShapesOptions.Classes"/> plus one).</param>
/// <param name="Name">Category name.</param>
/// <param name="Small">Objects with area below 32^2.</param>
/// <param name="Medium">Objects with area in [32^2, 96^2).</param>
/// <param name="Large">Objects with area 96^2 or more.</param>
public readonly record struct SyntheticCategoryCount(int CategoryId, string Name, int Small, int Medium, int Large)
{
    /// <summary>All objects of the category.</summary>
    public int Total => Small + Medium + Large;
}
