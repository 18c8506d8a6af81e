// The plain values the COCO loaders produce: a box, a category, a ground-truth annotation and a
// detection (one element of a results file). Units are pixels; a box is [x, y, width, height] with
// (x, y) the top-left corner, exactly as in the JSON files.
namespace GhmGen.Evaluation;

/// <summary>A COCO box [x, y, width, height] in pixels, (x, y) the top-left corner; doubles, as parsed.</summary>
/// <param name="X">Left edge.</param>
/// <param name="Y">Top edge.</param>
/// <param name="Width">Width (may be zero or negative in a file; such a box overlaps nothing).</param>
/// <param name="Height">Height (may be zero or negative in a file; such a box overlaps nothing).</param>
public readonly record struct CocoBox(double X, double Y, double Width, double Height)
{
    /// <summary>Width * Height: the area a detection is ranged by (never used for ground truth, which carries its own).</summary>
    public double Area => Width * Height;
}

/// <summary>A ground-truth category: its id and its name (the name only labels per-category results).</summary>
/// <param name="Id">The category id of the file.</param>
/// <param name="Name">The category name; the id as text when the file gives none.</param>
public sealed record CocoCategory(long Id, string Name);

/// <summary>One ground-truth annotation, with the fields box evaluation uses.</summary>
/// <param name="Id">Annotation id, unique in the file (id 0 has a pycocotools quirk: see docs/COCOEVAL.md §1).</param>
/// <param name="ImageId">The image it belongs to; an id that is not an image of the file takes no part.</param>
/// <param name="CategoryId">Its category; an id that is not a category of the file takes no part.</param>
/// <param name="Box">The box.</param>
/// <param name="Area">The file's <c>area</c> field (usually the segmentation's area), used for the area ranges.</param>
/// <param name="IsCrowd">The file's <c>iscrowd</c> field is non-zero: a crowd region, ignored and matched by any number of detections.</param>
public readonly record struct CocoAnnotation(long Id, long ImageId, long CategoryId, CocoBox Box, double Area, bool IsCrowd);

/// <summary>One detection: an element of a COCO results file.</summary>
/// <param name="ImageId">The image, which must be an image of the ground truth.</param>
/// <param name="CategoryId">The category, which must be a category of the ground truth.</param>
/// <param name="Box">The box.</param>
/// <param name="Score">Confidence; higher ranks first, equal scores keep file order.</param>
public readonly record struct CocoDetection(long ImageId, long CategoryId, CocoBox Box, double Score);
