using GhmGen.Description;

namespace GhmGen.Models.Blocks;

/// <summary>
/// The basic residual block of ResNet-18/34: two 3x3 convs with batch norm (the stride on the
/// first), a strided 1x1 projection when asked. Output channels are <c>planes</c>.
/// </summary>
[Block("planes, stride = 1, downsample = 0")]
[Input("x")]
[Conv("conv1", Out = "planes", Kernel = 3, Stride = "stride", Padding = 1)]
[BatchNorm("bn1"), Relu]
[Conv("conv2", Out = "planes", Kernel = 3, Padding = 1)]
[BatchNorm("bn2")]
[Conv("downsample.0", From = "x", Out = "planes", Kernel = 1, Stride = "stride", When = "downsample")]
[BatchNorm("downsample.1", When = "downsample")]
[Add("sum", "bn2", "downsample.1")]
[Relu("out")]
public sealed class BasicBlock;

/// <summary>
/// A ResNet-18-style backbone: the 7x7/2 stem and 3x3/2 max-pool, then four stages of two basic
/// blocks with <c>width</c>, 2, 4 and 8 x <c>width</c> channels (64 is ResNet-18 itself).
/// Outputs C3..C5 at strides 8, 16, 32.
/// </summary>
[Block("width = 64")]
[Input("image", Channels = 3)]
[Conv("conv1", Out = "width", Kernel = 7, Stride = 2, Padding = 3)]
[BatchNorm("bn1"), Relu]
[MaxPool("pool", Kernel = 3, Stride = 2, Padding = 1)]
[Stage("layer1", nameof(BasicBlock), Count = 2, Args = "planes = width")]
[Stage("layer2", nameof(BasicBlock), Count = 2, Args = "planes = width * 2", First = "stride = 2, downsample = 1")]
[Stage("layer3", nameof(BasicBlock), Count = 2, Args = "planes = width * 4", First = "stride = 2, downsample = 1")]
[Stage("layer4", nameof(BasicBlock), Count = 2, Args = "planes = width * 8", First = "stride = 2, downsample = 1")]
[Output("c3", "layer2"), Output("c4", "layer3"), Output("c5", "layer4")]
public sealed class ResNet18;

/// <summary>
/// <see cref="Fpn"/> for any input channels: the same layers (and checkpoint keys) with C3..C5 of
/// <c>in3</c>, <c>in4</c> and <c>in5</c> channels.
/// </summary>
[Block("channels = 256, in3 = 512, in4 = 1024, in5 = 2048")]
[Input("c3", Channels = "in3"), Input("c4", Channels = "in4"), Input("c5", Channels = "in5")]
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
public sealed class FpnAnyInput;
