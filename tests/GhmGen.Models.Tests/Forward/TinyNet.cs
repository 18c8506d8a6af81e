using GhmGen.Description;

namespace GhmGen.Models.Tests.Forward;

// Every construct of the language in one small network (the same one the generator tests snapshot).

[Block("out, stride = 1, project = 0")]
[Input("x")]
[Conv("conv", Out = "out", Kernel = 3, Stride = "stride", Padding = 1)]
[BatchNorm("bn")]
[Conv("proj", From = "x", Out = "out", Kernel = 1, Stride = "stride", When = "project")]
[Add("sum", "bn", "proj")]
[Relu("out")]
public sealed class Residual;

[Block("classes = 3")]
[Input("x", Channels = 8)]
[Buffer("state", 4)]
[Conv("cls", Out = "classes * 2", Kernel = 3, Padding = 1, Bias = true)]
[Conv("box", From = "x", Out = 4, Kernel = 1, Bias = true)]
[Output("cls", "cls"), Output("box", "box")]
public sealed class TinyHead;

[Network("tiny-net", MinInputSize = 16)]
[Input("image", Channels = 3)]
[Conv("stem", Out = 8, Kernel = 3, Stride = 2, Padding = 1, Relu = true)]
[MaxPool("pool", Kernel = 2)]
[Stage("stage", nameof(Residual), Count = 2, Args = "out = 8", First = "stride = 2, project = 1")]
[Upsample("up", "pool", From = "stage")]
[Add("merged", "pool", "up")]
[Shared("head", nameof(TinyHead), From = "merged, stage", Part = "head")]
[Output("cls_a", "head.merged.cls"), Output("box_a", "head.merged.box")]
[Output("cls_b", "head.stage.cls"), Output("box_b", "head.stage.box")]
public sealed partial class TinyNet;
