using GhmGen.Description;

namespace GhmGen.Models.Blocks;

/// <summary>
/// The bottleneck residual block of ResNet and ResNeXt (torchvision/mmdetection "pytorch"
/// style: the stride sits on the 3x3). Output channels are planes * 4.
/// </summary>
[Block("planes, stride = 1, groups = 1, baseWidth = 64, downsample = 0")]
[Let("width", "planes * baseWidth / 64 * groups")]
[Input("x")]
[Conv("conv1", Out = "width", Kernel = 1)]
[BatchNorm("bn1"), Relu]
[Conv("conv2", Out = "width", Kernel = 3, Stride = "stride", Padding = 1, Groups = "groups")]
[BatchNorm("bn2"), Relu]
[Conv("conv3", Out = "planes * 4", Kernel = 1)]
[BatchNorm("bn3")]
[Conv("downsample.0", From = "x", Out = "planes * 4", Kernel = 1, Stride = "stride", When = "downsample")]
[BatchNorm("downsample.1", When = "downsample")]
[Add("sum", "bn3", "downsample.1")]
[Relu("out")]
public sealed class Bottleneck;

/// <summary>
/// ResNet / ResNeXt backbone with four bottleneck stages. <c>stageN</c> is the number of blocks
/// of stage N (3, 4, 6, 3 for depth 50; 3, 4, 23, 3 for 101); ResNeXt sets groups and baseWidth.
/// Outputs C2..C5 (256, 512, 1024, 2048 channels at strides 4, 8, 16, 32).
/// </summary>
[Block("stage1 = 3, stage2 = 4, stage3 = 6, stage4 = 3, groups = 1, baseWidth = 64")]
[Input("image", Channels = 3)]
[Conv("conv1", Out = 64, Kernel = 7, Stride = 2, Padding = 3)]
[BatchNorm("bn1"), Relu]
[MaxPool("pool", Kernel = 3, Stride = 2, Padding = 1)]
[Stage("layer1", nameof(Bottleneck), Count = "stage1", Args = "planes = 64, groups = groups, baseWidth = baseWidth", First = "downsample = 1")]
[Stage("layer2", nameof(Bottleneck), Count = "stage2", Args = "planes = 128, groups = groups, baseWidth = baseWidth", First = "stride = 2, downsample = 1")]
[Stage("layer3", nameof(Bottleneck), Count = "stage3", Args = "planes = 256, groups = groups, baseWidth = baseWidth", First = "stride = 2, downsample = 1")]
[Stage("layer4", nameof(Bottleneck), Count = "stage4", Args = "planes = 512, groups = groups, baseWidth = baseWidth", First = "stride = 2, downsample = 1")]
[Output("c2", "layer1"), Output("c3", "layer2"), Output("c4", "layer3"), Output("c5", "layer4")]
public sealed class ResNet;
