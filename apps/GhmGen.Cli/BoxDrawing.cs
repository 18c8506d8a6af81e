using GhmGen.Detection;
using GhmGen.Imaging;
using StbImageWriteSharp;

namespace GhmGen.Cli;

/// <summary>Draws detections (box outline and a "label score" tag) on an image and saves it as PNG.</summary>
internal static class BoxDrawing
{
    // A 3x5 pixel font for class names and scores, drawn at 2x. Rows top to bottom, '#' = ink.
    private static readonly Dictionary<char, string[]> Glyphs = new()
    {
        ['a'] = [".#.", "#.#", "###", "#.#", "#.#"], ['b'] = ["##.", "#.#", "##.", "#.#", "##."],
        ['c'] = [".##", "#..", "#..", "#..", ".##"], ['d'] = ["##.", "#.#", "#.#", "#.#", "##."],
        ['e'] = ["###", "#..", "##.", "#..", "###"], ['f'] = ["###", "#..", "##.", "#..", "#.."],
        ['g'] = [".##", "#..", "#.#", "#.#", ".##"], ['h'] = ["#.#", "#.#", "###", "#.#", "#.#"],
        ['i'] = ["###", ".#.", ".#.", ".#.", "###"], ['j'] = ["..#", "..#", "..#", "#.#", ".#."],
        ['k'] = ["#.#", "#.#", "##.", "#.#", "#.#"], ['l'] = ["#..", "#..", "#..", "#..", "###"],
        ['m'] = ["#.#", "###", "###", "#.#", "#.#"], ['n'] = ["##.", "#.#", "#.#", "#.#", "#.#"],
        ['o'] = [".#.", "#.#", "#.#", "#.#", ".#."], ['p'] = ["##.", "#.#", "##.", "#..", "#.."],
        ['q'] = [".#.", "#.#", "#.#", "##.", ".##"], ['r'] = ["##.", "#.#", "##.", "#.#", "#.#"],
        ['s'] = [".##", "#..", ".#.", "..#", "##."], ['t'] = ["###", ".#.", ".#.", ".#.", ".#."],
        ['u'] = ["#.#", "#.#", "#.#", "#.#", "###"], ['v'] = ["#.#", "#.#", "#.#", "#.#", ".#."],
        ['w'] = ["#.#", "#.#", "###", "###", "#.#"], ['x'] = ["#.#", "#.#", ".#.", "#.#", "#.#"],
        ['y'] = ["#.#", "#.#", ".#.", ".#.", ".#."], ['z'] = ["###", "..#", ".#.", "#..", "###"],
        ['0'] = ["###", "#.#", "#.#", "#.#", "###"], ['1'] = [".#.", "##.", ".#.", ".#.", "###"],
        ['2'] = ["##.", "..#", ".#.", "#..", "###"], ['3'] = ["##.", "..#", ".#.", "..#", "##."],
        ['4'] = ["#.#", "#.#", "###", "..#", "..#"], ['5'] = ["###", "#..", "##.", "..#", "##."],
        ['6'] = [".##", "#..", "###", "#.#", "###"], ['7'] = ["###", "..#", ".#.", ".#.", ".#."],
        ['8'] = ["###", "#.#", "###", "#.#", "###"], ['9'] = ["###", "#.#", "###", "..#", "##."],
        ['.'] = ["...", "...", "...", "...", ".#."], ['-'] = ["...", "...", "###", "...", "..."],
        [' '] = ["...", "...", "...", "...", "..."],
    };

    private static readonly byte[][] Palette =
    [
        [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
        [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [170, 110, 40],
    ];

    /// <summary>
    /// Writes <paramref name="image"/> with every detection drawn to <paramref name="path"/> (PNG;
    /// its folder is created). Throws <see cref="IOException"/> or <see cref="UnauthorizedAccessException"/>
    /// when it cannot be written, leaving no temporary file.
    /// </summary>
    /// <param name="path">The PNG file to write.</param>
    /// <param name="image">The image the detections were made on.</param>
    /// <param name="detections">Boxes in <paramref name="image"/>'s pixels, with labels indexing <paramref name="classNames"/>.</param>
    /// <param name="classNames">Class names by label.</param>
    /// <param name="magnification">Each pixel becomes a square of this many pixels (nearest neighbour) before the boxes and tags are drawn, so that small images stay legible.</param>
    public static void Save(string path, RgbImage image, IReadOnlyList<DetectedObject> detections, IReadOnlyList<string> classNames, int magnification = 1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(magnification, 1);
        byte[] pixels = Magnify(image, magnification);
        int w = image.Width * magnification, h = image.Height * magnification;
        foreach (DetectedObject d in detections)
        {
            byte[] color = Palette[d.Label % Palette.Length];
            int x1 = Clamp((int)MathF.Round(d.X1 * magnification), w), y1 = Clamp((int)MathF.Round(d.Y1 * magnification), h);
            int x2 = Clamp((int)MathF.Round(d.X2 * magnification), w), y2 = Clamp((int)MathF.Round(d.Y2 * magnification), h);
            for (int t = 0; t < 2; t++)
            {
                Line(pixels, w, h, x1, y1 + t, x2, y1 + t, color);
                Line(pixels, w, h, x1, y2 - t, x2, y2 - t, color);
                Line(pixels, w, h, x1 + t, y1, x1 + t, y2, color);
                Line(pixels, w, h, x2 - t, y1, x2 - t, y2, color);
            }
            string label = $"{classNames[d.Label]} {d.Score:0.00}".ToLowerInvariant();
            int tagHeight = 14, tagWidth = label.Length * 8 + 4;
            int ty = y1 - tagHeight >= 0 ? y1 - tagHeight : y1;
            for (int y = ty; y < ty + tagHeight; y++) Line(pixels, w, h, x1, y, x1 + tagWidth - 1, y, color);
            for (int c = 0; c < label.Length; c++)
                if (Glyphs.TryGetValue(label[c], out string[]? glyph))
                    for (int gy = 0; gy < 5; gy++)
                        for (int gx = 0; gx < 3; gx++)
                            if (glyph[gy][gx] == '#')
                                for (int sy = 0; sy < 2; sy++)
                                    for (int sx = 0; sx < 2; sx++)
                                        Put(pixels, w, h, x1 + 3 + c * 8 + gx * 2 + sx, ty + 2 + gy * 2 + sy, [0, 0, 0]);
        }
        // Written beside the destination and renamed, so a failure leaves no half-written PNG.
        OutputTargets.WriteReplacing(path, stream => new ImageWriter().WritePng(pixels, w, h, ColorComponents.RedGreenBlue, stream));
    }

    private static byte[] Magnify(RgbImage image, int factor)
    {
        if (factor == 1) return (byte[])image.Rgb.Clone();
        int w = image.Width, outWidth = w * factor;
        var pixels = new byte[checked((long)image.Rgb.Length * factor * factor)];
        for (int y = 0; y < image.Height; y++)
        {
            Span<byte> row = pixels.AsSpan(y * factor * outWidth * 3, outWidth * 3);
            for (int x = 0; x < w; x++)
                for (int k = 0; k < factor; k++)
                    image.Rgb.AsSpan((y * w + x) * 3, 3).CopyTo(row[((x * factor + k) * 3)..]);
            for (int k = 1; k < factor; k++) row.CopyTo(pixels.AsSpan((y * factor + k) * outWidth * 3, outWidth * 3));
        }
        return pixels;
    }

    private static int Clamp(int v, int size) => Math.Clamp(v, 0, size - 1);

    private static void Line(byte[] p, int w, int h, int x1, int y1, int x2, int y2, byte[] color)
    {
        for (int y = Math.Min(y1, y2); y <= Math.Max(y1, y2); y++)
            for (int x = Math.Min(x1, x2); x <= Math.Max(x1, x2); x++)
                Put(p, w, h, x, y, color);
    }

    private static void Put(byte[] p, int w, int h, int x, int y, byte[] color)
    {
        if ((uint)x >= (uint)w || (uint)y >= (uint)h) return;
        int i = (y * w + x) * 3;
        p[i] = color[0];
        p[i + 1] = color[1];
        p[i + 2] = color[2];
    }
}
