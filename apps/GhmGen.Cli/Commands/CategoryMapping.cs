using GhmGen.Evaluation;

namespace GhmGen.Cli.Commands;

/// <summary>
/// Which category of an annotation file each detector label (class index) is written as by
/// <c>ghm test</c>:
/// <list type="bullet">
/// <item>by name, when every category name of the file is one of the detector's class names (the
/// checkpoint's <c>CLASSES</c>, else COCO's): label k is the category named like class k; labels
/// whose class the file lacks are left out (a file with a subset of COCO's classes);</item>
/// <item>else by position: label k is the k-th category of the file's <c>categories</c> array
/// (file order); labels past the last category are left out.</item>
/// </list>
/// </summary>
internal sealed class CategoryMapping
{
    private readonly long?[] _categoryOfLabel;

    private CategoryMapping(long?[] categoryOfLabel, bool byName)
    {
        _categoryOfLabel = categoryOfLabel;
        ByName = byName;
    }

    /// <summary>Whether labels were matched by name (else by position).</summary>
    public bool ByName { get; }

    /// <summary>Labels that have a category.</summary>
    public int MappedLabels => _categoryOfLabel.Count(c => c is not null);

    /// <summary>The category id label <paramref name="label"/> is written as, or null when its detections are left out.</summary>
    public long? CategoryOf(int label) => (uint)label < (uint)_categoryOfLabel.Length ? _categoryOfLabel[label] : null;

    /// <summary>
    /// The mapping of <paramref name="classNames"/> onto the categories of <paramref name="groundTruth"/>,
    /// taken in <paramref name="categoryIdsInFileOrder"/> (see the class summary).
    /// </summary>
    public static CategoryMapping Create(IReadOnlyList<string> classNames, CocoGroundTruth groundTruth, IReadOnlyList<long> categoryIdsInFileOrder)
    {
        var names = categoryIdsInFileOrder.Select(id => groundTruth.Categories[groundTruth.IndexOfCategory(id)].Name).ToArray();
        var map = new long?[classNames.Count];
        var classSet = new HashSet<string>(classNames, StringComparer.Ordinal);
        bool byName = names.All(classSet.Contains);
        if (byName)
        {
            var idOfName = new Dictionary<string, long>(StringComparer.Ordinal);
            for (int i = 0; i < names.Length; i++) idOfName.TryAdd(names[i], categoryIdsInFileOrder[i]);
            for (int k = 0; k < map.Length; k++)
                if (idOfName.TryGetValue(classNames[k], out long id)) map[k] = id;
        }
        else
        {
            for (int k = 0; k < map.Length && k < categoryIdsInFileOrder.Count; k++) map[k] = categoryIdsInFileOrder[k];
        }
        return new CategoryMapping(map, byName);
    }

    /// <summary>
    /// A note for standard error when the mapping is not the plain one (every class matched by
    /// name), else null.
    /// </summary>
    public string? Note(string annotationFile, int classCount, int categoryCount)
    {
        int mapped = MappedLabels;
        if (ByName)
            return mapped == classCount ? null
                : $"note: '{annotationFile}' has {mapped} of the detector's {classCount} classes (matched by name); detections of the other {classCount - mapped} are left out";
        return $"note: the category names of '{annotationFile}' are not all class names of the detector; label k is written as the k-th of its {categoryCount} categories (file order)"
            + (mapped < classCount ? $", detections of labels {mapped} to {classCount - 1} are left out" : "");
    }
}
