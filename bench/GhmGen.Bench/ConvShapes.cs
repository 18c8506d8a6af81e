// The distinct convolution shapes of RetinaNet R-50-FPN at an 800x1216 input, batch 1, with how
// often each runs in one forward pass (docs/MODEL.md §2). Used by ConvBenchmarks and the quick
// `conv-table` run of Program.cs.
using GhmGen.Backends;

namespace GhmGen.Bench;

/// <summary>One convolution shape of the R-50 RetinaNet forward pass and how many times it runs.</summary>
public sealed record ConvShape(string Name, int In, int Out, int Kernel, int Stride, int Padding, int Groups, int H, int W, int Count)
{
    /// <summary>The convolution's arguments.</summary>
    public ConvSpec Spec => new(In, Out, Kernel, Stride, Padding, Groups);

    /// <summary>Multiply-adds of one run: out * OH * OW * in/groups * k * k.</summary>
    public double MultiplyAdds => (double)Out * Spec.OutputSize(H) * Spec.OutputSize(W) * (In / Groups) * Kernel * Kernel;

    /// <summary>Floating-point operations of one run (2 per multiply-add).</summary>
    public double Flops => 2 * MultiplyAdds;

    /// <inheritdoc/>
    public override string ToString() => Name;

    /// <summary>Every distinct shape of R-50 RetinaNet at 800x1216.</summary>
    public static readonly ConvShape[] RetinaNetR50 =
    [
        new("stem 7x7/2 3-64 @800x1216", 3, 64, 7, 2, 3, 1, 800, 1216, 1),
        new("L1 1x1 64-64 @200x304", 64, 64, 1, 1, 0, 1, 200, 304, 1),
        new("L1 3x3 64-64 @200x304", 64, 64, 3, 1, 1, 1, 200, 304, 3),
        new("L1 1x1 64-256 @200x304", 64, 256, 1, 1, 0, 1, 200, 304, 4),     // conv3 x3 + downsample
        new("L1 1x1 256-64 @200x304", 256, 64, 1, 1, 0, 1, 200, 304, 2),
        new("L2 1x1 256-128 @200x304", 256, 128, 1, 1, 0, 1, 200, 304, 1),
        new("L2 3x3/2 128-128 @200x304", 128, 128, 3, 2, 1, 1, 200, 304, 1),
        new("L2 1x1 128-512 @100x152", 128, 512, 1, 1, 0, 1, 100, 152, 4),
        new("L2 ds 1x1/2 256-512 @200x304", 256, 512, 1, 2, 0, 1, 200, 304, 1),
        new("L2 1x1 512-128 @100x152", 512, 128, 1, 1, 0, 1, 100, 152, 3),
        new("L2 3x3 128-128 @100x152", 128, 128, 3, 1, 1, 1, 100, 152, 3),
        new("L3 1x1 512-256 @100x152", 512, 256, 1, 1, 0, 1, 100, 152, 1),
        new("L3 3x3/2 256-256 @100x152", 256, 256, 3, 2, 1, 1, 100, 152, 1),
        new("L3 1x1 256-1024 @50x76", 256, 1024, 1, 1, 0, 1, 50, 76, 6),
        new("L3 ds 1x1/2 512-1024 @100x152", 512, 1024, 1, 2, 0, 1, 100, 152, 1),
        new("L3 1x1 1024-256 @50x76", 1024, 256, 1, 1, 0, 1, 50, 76, 5),
        new("L4 1x1 1024-512 @50x76", 1024, 512, 1, 1, 0, 1, 50, 76, 1),
        new("L4 3x3/2 512-512 @50x76", 512, 512, 3, 2, 1, 1, 50, 76, 1),
        new("L4 1x1 512-2048 @25x38", 512, 2048, 1, 1, 0, 1, 25, 38, 3),
        new("L4 ds 1x1/2 1024-2048 @50x76", 1024, 2048, 1, 2, 0, 1, 50, 76, 1),
        new("L4 1x1 2048-512 @25x38", 2048, 512, 1, 1, 0, 1, 25, 38, 2),
        new("L4 3x3 512-512 @25x38", 512, 512, 3, 1, 1, 1, 25, 38, 2),
        new("FPN lat 1x1 512-256 @100x152", 512, 256, 1, 1, 0, 1, 100, 152, 1),
        new("FPN lat 1x1 1024-256 @50x76", 1024, 256, 1, 1, 0, 1, 50, 76, 1),
        new("FPN lat 1x1 2048-256 @25x38", 2048, 256, 1, 1, 0, 1, 25, 38, 1),
        new("P6 3x3/2 2048-256 @25x38", 2048, 256, 3, 2, 1, 1, 25, 38, 1),
        new("P7 3x3/2 256-256 @13x19", 256, 256, 3, 2, 1, 1, 13, 19, 1),
        new("3x3 256-256 @100x152", 256, 256, 3, 1, 1, 1, 100, 152, 9),       // FPN P3 + 8 head convs
        new("3x3 256-256 @50x76", 256, 256, 3, 1, 1, 1, 50, 76, 14),          // L3 conv2 x5 + FPN P4 + 8 head
        new("3x3 256-256 @25x38", 256, 256, 3, 1, 1, 1, 25, 38, 9),           // FPN P5 + 8 head
        new("3x3 256-256 @13x19", 256, 256, 3, 1, 1, 1, 13, 19, 8),           // head on P6
        new("3x3 256-256 @7x10", 256, 256, 3, 1, 1, 1, 7, 10, 8),             // head on P7
        new("cls 3x3 256-720 @100x152", 256, 720, 3, 1, 1, 1, 100, 152, 1),
        new("cls 3x3 256-720 @50x76", 256, 720, 3, 1, 1, 1, 50, 76, 1),
        new("cls 3x3 256-720 @25x38", 256, 720, 3, 1, 1, 1, 25, 38, 1),
        new("cls 3x3 256-720 @13x19", 256, 720, 3, 1, 1, 1, 13, 19, 1),
        new("cls 3x3 256-720 @7x10", 256, 720, 3, 1, 1, 1, 7, 10, 1),
        new("reg 3x3 256-36 @100x152", 256, 36, 3, 1, 1, 1, 100, 152, 1),
        new("reg 3x3 256-36 @50x76", 256, 36, 3, 1, 1, 1, 50, 76, 1),
        new("reg 3x3 256-36 @25x38", 256, 36, 3, 1, 1, 1, 25, 38, 1),
        new("reg 3x3 256-36 @13x19", 256, 36, 3, 1, 1, 1, 13, 19, 1),
        new("reg 3x3 256-36 @7x10", 256, 36, 3, 1, 1, 1, 7, 10, 1),
    ];

    /// <summary>
    /// The shapes of <see cref="RetinaNetR50"/> at another input size (e.g. 64x96 or 320x320): each map of
    /// stride 2^s (as at 800x1216) becomes the input halved s times, rounding up (the network's padding);
    /// names end in the new map size; shapes that coincide at the new size (P6's 3x3 256-256 on 7x10 and
    /// 13x19 at a tiny input) keep separate rows.
    /// </summary>
    public static ConvShape[] RetinaNetR50At(int height, int width)
    {
        static int Halve(int size, int times)
        {
            for (int i = 0; i < times; i++) size = (size + 1) / 2;
            return size;
        }
        var shapes = new List<ConvShape>();
        foreach (ConvShape shape in RetinaNetR50)
        {
            int times = (int)Math.Round(Math.Log2(800.0 / shape.H));
            int h = Halve(height, times), w = Halve(width, times);
            string name = shape.Name[..shape.Name.IndexOf('@', StringComparison.Ordinal)] + $"@{h}x{w}";
            shapes.Add(shape with { Name = name, H = h, W = w });
        }
        return [.. shapes];
    }

    /// <summary>ResNeXt shapes at 800x1216 that R-50 lacks: the grouped 3x3s (32x4d and 64x4d; 64x4d's stride-2 ones) and X-101-64x4d's layer3 1x1.</summary>
    public static readonly ConvShape[] ResNeXtGrouped =
    [
        new("X32x4d L1 3x3 g32 128-128 @200x304", 128, 128, 3, 1, 1, 32, 200, 304, 3),
        new("X32x4d L2 3x3 g32 256-256 @100x152", 256, 256, 3, 1, 1, 32, 100, 152, 3),
        new("X32x4d L3 3x3 g32 512-512 @50x76", 512, 512, 3, 1, 1, 32, 50, 76, 22),
        new("X32x4d L4 3x3 g32 1024-1024 @25x38", 1024, 1024, 3, 1, 1, 32, 25, 38, 2),
        new("X64x4d L1 3x3 g64 256-256 @200x304", 256, 256, 3, 1, 1, 64, 200, 304, 3),
        new("X64x4d L2 3x3 g64 512-512 @100x152", 512, 512, 3, 1, 1, 64, 100, 152, 3),
        new("X64x4d L3 3x3 g64 1024-1024 @50x76", 1024, 1024, 3, 1, 1, 64, 50, 76, 22),
        new("X64x4d L4 3x3 g64 2048-2048 @25x38", 2048, 2048, 3, 1, 1, 64, 25, 38, 2),
        // The stride-2 grouped 3x3s that open X-101-64x4d's layers 2-4.
        new("X64x4d L2 3x3/2 g64 512-512 @200x304", 512, 512, 3, 2, 1, 64, 200, 304, 1),
        new("X64x4d L3 3x3/2 g64 1024-1024 @100x152", 1024, 1024, 3, 2, 1, 64, 100, 152, 1),
        new("X64x4d L4 3x3/2 g64 2048-2048 @50x76", 2048, 2048, 3, 2, 1, 64, 50, 76, 1),
        // X-101-64x4d's most frequent convolution (layer3's 1x1s; ~45% of its forward), which R-50 lacks.
        new("X64x4d L3 1x1 1024-1024 @50x76", 1024, 1024, 1, 1, 0, 1, 50, 76, 45),
    ];
}
