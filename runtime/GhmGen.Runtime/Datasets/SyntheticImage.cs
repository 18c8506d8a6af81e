namespace GhmGen.Datasets;

/// <summary>One rendered image: RGB pixels (HWC) and its objects in drawing order.</summary>
internal sealed record SyntheticImage(int Width, int Height, byte[] Rgb, SyntheticObject[] Objects);

/// <summary>
/// One object of a <see cref="SyntheticImage"/>. The box is the tight box of the visible pixels in
/// pixel-edge coordinates (x, y of the top-left pixel's corner; width and height in whole pixels),
/// so it is COCO's bbox of the visible segmentation; <see cref="Area"/> counts the visible pixels.
/// </summary>
/// <param name="ClassIndex">Index into <see cref="SyntheticShapesOptions.Classes"/>.</param>
/// <param name="Color">Fill colour (R, G, B) before per-pixel noise of at most <see cref="SyntheticImageRenderer.ShapeNoise"/>.</param>
/// <param name="X">Left edge of the visible box.</param>
/// <param name="Y">Top edge of the visible box.</param>
/// <param name="BoxWidth">Width of the visible box.</param>
/// <param name="BoxHeight">Height of the visible box.</param>
/// <param name="Area">Visible pixels.</param>
/// <param name="FullArea">Pixels of the whole shape, hidden ones included.</param>
/// <param name="Outline">The exact outline's bounding box (left, top, right, bottom edges, in pixels), hidden parts included.</param>
internal sealed record SyntheticObject(
    int ClassIndex, (byte R, byte G, byte B) Color, int X, int Y, int BoxWidth, int BoxHeight, int Area, int FullArea,
    OutlineBox Outline);

/// <summary>A box in continuous pixel coordinates (edges, not pixel indices).</summary>
internal readonly record struct OutlineBox(double Left, double Top, double Right, double Bottom);
