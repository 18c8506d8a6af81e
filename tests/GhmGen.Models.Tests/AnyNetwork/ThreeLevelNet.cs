using GhmGen.Description;

namespace GhmGen.Models.Tests.AnyNetwork;

// A user's own RetinaNet-style network unlike the published ones: 3 classes, 2 anchors per cell,
// three levels (strides 8, 16, 32), no GHM buffers, and outputs declared box-first, coarsest level first.

[Block("classes = 3, anchors = 2")]
[Input("x", Channels = 8)]
[Conv("cls", Out = "anchors * classes", Kernel = 3, Padding = 1, Bias = true)]
[Conv("box", From = "x", Out = "anchors * 4", Kernel = 3, Padding = 1, Bias = true)]
[Output("cls", "cls"), Output("box", "box")]
public sealed class SmallRetinaHead;

[Network("three-level-net", MinInputSize = 32)]
[Input("image", Channels = 3)]
[Conv("stem", Out = 8, Kernel = 3, Stride = 2, Padding = 1, Relu = true)]
[Conv("down4", Out = 8, Kernel = 3, Stride = 2, Padding = 1, Relu = true)]
[Conv("c3", Out = 8, Kernel = 3, Stride = 2, Padding = 1, Relu = true)]
[Conv("c4", Out = 8, Kernel = 3, Stride = 2, Padding = 1, Relu = true)]
[Conv("c5", Out = 8, Kernel = 3, Stride = 2, Padding = 1, Relu = true)]
[Shared("head", nameof(SmallRetinaHead), From = "c3, c4, c5", Part = "head")]
[Output("reg_coarse", "head.c5.box"), Output("cls_coarse", "head.c5.cls")]
[Output("reg_fine", "head.c3.box"), Output("cls_middle", "head.c4.cls")]
[Output("reg_middle", "head.c4.box"), Output("cls_fine", "head.c3.cls")]
public sealed partial class ThreeLevelNet;
