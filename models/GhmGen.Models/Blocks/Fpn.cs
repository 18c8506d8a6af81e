using GhmGen.Description;

namespace GhmGen.Models.Blocks;

/// <summary>
/// mmdetection's FPN with start level 1 and five outputs: 1x1 laterals on C3..C5, a top-down
/// pathway with nearest upsampling to each lower lateral's exact size, 3x3 output convs, and
/// two extra stride-2 convs, the first on raw C5 and the second on P6 with no ReLU between.
/// </summary>
[Block("channels = 256")]
[Input("c3", Channels = 512), Input("c4", Channels = 1024), Input("c5", Channels = 2048)]
[Conv("lateral_convs.0.conv", From = "c3", Out = "channels", Kernel = 1, Bias = true)]
[Conv("lateral_convs.1.conv", From = "c4", Out = "channels", Kernel = 1, Bias = true)]
[Conv("lateral_convs.2.conv", From = "c5", Out = "channels", Kernel = 1, Bias = true)]
[Upsample("up4", "lateral_convs.1.conv", From = "lateral_convs.2.conv"), Add("merged4", "lateral_convs.1.conv", "up4")]
[Upsample("up3", "lateral_convs.0.conv", From = "merged4"), Add("merged3", "lateral_convs.0.conv", "up3")]
[Conv("fpn_convs.0.conv", From = "merged3", Out = "channels", Kernel = 3, Padding = 1, Bias = true)]
[Conv("fpn_convs.1.conv", From = "merged4", Out = "channels", Kernel = 3, Padding = 1, Bias = true)]
[Conv("fpn_convs.2.conv", From = "lateral_convs.2.conv", Out = "channels", Kernel = 3, Padding = 1, Bias = true)]
[Conv("fpn_convs.3.conv", From = "c5", Out = "channels", Kernel = 3, Stride = 2, Padding = 1, Bias = true)]
[Conv("fpn_convs.4.conv", From = "fpn_convs.3.conv", Out = "channels", Kernel = 3, Stride = 2, Padding = 1, Bias = true)]
[Output("p3", "fpn_convs.0.conv"), Output("p4", "fpn_convs.1.conv"), Output("p5", "fpn_convs.2.conv")]
[Output("p6", "fpn_convs.3.conv"), Output("p7", "fpn_convs.4.conv")]
public sealed class Fpn;
