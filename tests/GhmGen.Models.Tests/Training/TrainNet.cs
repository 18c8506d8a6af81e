using GhmGen.Description;

namespace GhmGen.Models.Tests.Training;

// A small network with every construct the reverse pass handles: a frozen stem (Frozen path), a
// convolution with bias and a trained batch norm, max-pool, residual blocks with a projection, a
// trained convolution under a frozen batch norm (stage.1.bn), an upsample-add, a ReLU and an add
// that are not fused into a convolution, a frozen convolution above trained layers
// (Trainable = false: no weight gradient, but its input still gets one), and a head shared by two
// levels. TrainingSessionTests checks its generated Backward against float64 finite differences.

[Block]
[Input("x")]
[Conv("conv", Out = 4, Kernel = 3, Padding = 1)]
[BatchNorm("bn"), Relu]
public sealed class TrainStem;

[Block("out, stride = 1, project = 0")]
[Input("x")]
[Conv("conv", Out = "out", Kernel = 3, Stride = "stride", Padding = 1)]
[BatchNorm("bn")]
[Conv("proj", From = "x", Out = "out", Kernel = 1, Stride = "stride", When = "project")]
[BatchNorm("proj_bn", When = "project")]
[Add("sum", "bn", "proj_bn")]
[Relu("out")]
public sealed class TrainResidual;

[Block]
[Input("x", Channels = 8)]
[Conv("conv", Out = 8, Kernel = 3, Padding = 1, Bias = true, Relu = true)]
[Conv("cls", Out = 6, Kernel = 3, Padding = 1, Bias = true)]
[Conv("box", From = "conv", Out = 4, Kernel = 1, Bias = true)]
[Output("cls", "cls"), Output("box", "box")]
public sealed class TrainHead;

[Network("train-net", MinInputSize = 16, Frozen = "stem, stage.1.bn", NormEval = true)]
[Input("image", Channels = 3)]
[Use("stem", nameof(TrainStem))]
[Conv("c1", Out = 8, Kernel = 3, Padding = 1, Bias = true)]
[BatchNorm("c1_bn"), Relu("c1_relu")]
[MaxPool("pool", Kernel = 3, Stride = 2, Padding = 1)]
[Stage("stage", nameof(TrainResidual), Count = 2, Args = "out = 8", First = "stride = 2, project = 1")]
[Upsample("up", "pool", From = "stage")]
[Add("merged", "pool", "up")]
[MaxPool("gate", From = "stage", Kernel = 3, Stride = 1, Padding = 1)]
[Relu("gate_relu")]
[Add("mix", "gate_relu", "stage")]
[Relu("mix_relu")]
[Conv("extra", From = "mix_relu", Out = 8, Kernel = 3, Stride = 2, Padding = 1, Bias = true, Trainable = false)]
[Shared("head", nameof(TrainHead), From = "merged, mix_relu", Part = "head")]
[Output("cls_a", "head.merged.cls"), Output("box_a", "head.merged.box")]
[Output("cls_b", "head.mix_relu.cls"), Output("box_b", "head.mix_relu.box")]
[Output("extra", "extra")]
public sealed partial class TrainNet;
