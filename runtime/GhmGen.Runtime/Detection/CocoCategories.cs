namespace GhmGen.Detection;

/// <summary>The 80 COCO categories: label index (position in the sorted category ids) to id and name.</summary>
public static class CocoCategories
{
    /// <summary>Number of classes the detectors predict.</summary>
    public const int Count = 80;

    /// <summary>COCO category ids in ascending order; label index i has id CategoryIds[i].</summary>
    public static ReadOnlySpan<int> CategoryIds =>
    [
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21,
        22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
        46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65,
        67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
    ];

    private static readonly string[] NameTable =
    [
        "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
        "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
        "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
        "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
        "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
        "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed",
        "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven",
        "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
    ];

    /// <summary>Category names by label index.</summary>
    public static IReadOnlyList<string> Names => NameTable;

    /// <summary>COCO category id of a label index.</summary>
    public static int CategoryId(int label)
    {
        if ((uint)label >= Count)
            throw new ArgumentOutOfRangeException(nameof(label), $"label must be in [0, {Count}), got {label}");
        return CategoryIds[label];
    }

    /// <summary>Name of a label index.</summary>
    public static string Name(int label)
    {
        if ((uint)label >= Count)
            throw new ArgumentOutOfRangeException(nameof(label), $"label must be in [0, {Count}), got {label}");
        return NameTable[label];
    }

    /// <summary>Label index of a COCO category id, or -1 when the id is not one of the 80.</summary>
    public static int LabelOf(int categoryId)
    {
        int index = CategoryIds.BinarySearch(categoryId);
        return index >= 0 ? index : -1;
    }

    /// <summary>A detection as a COCO result: [x, y, w, h] with w = x2 - x1, h = y2 - y1, and the category id.</summary>
    public static CocoResult ToCocoResult(DetectedObject detection) =>
        new(detection.X1, detection.Y1, detection.X2 - detection.X1, detection.Y2 - detection.Y1,
            detection.Score, CategoryId(detection.Label));
}

/// <summary>One detection in COCO results format.</summary>
/// <param name="X">Left edge in original-image pixels.</param>
/// <param name="Y">Top edge.</param>
/// <param name="Width">x2 - x1.</param>
/// <param name="Height">y2 - y1.</param>
/// <param name="Score">Classification score (sigmoid).</param>
/// <param name="CategoryId">COCO category id (1..90).</param>
public readonly record struct CocoResult(float X, float Y, float Width, float Height, float Score, int CategoryId);
