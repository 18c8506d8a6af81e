namespace GhmGen.Imaging;

/// <summary>
/// A decoded image and what the decoder noticed but worked around, e.g. a JPEG cut short inside
/// its image data (decoded anyway; the picture past the cut is filler, not real content).
/// </summary>
/// <param name="Image">The pixels.</param>
/// <param name="Warnings">One sentence per problem, each naming the image; empty for a clean file.</param>
public sealed record DecodedImage(RgbImage Image, IReadOnlyList<string> Warnings);
