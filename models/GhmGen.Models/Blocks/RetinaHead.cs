using GhmGen.Description;

namespace GhmGen.Models.Blocks;

/// <summary>mmcv's ConvModule without norm: a 3x3 convolution with bias, then ReLU.</summary>
[Block("channels = 256")]
[Input("x")]
[Conv("conv", Out = "channels", Kernel = 3, Padding = 1, Bias = true, Relu = true)]
public sealed class ConvModule;

/// <summary>
/// RetinaNet's head, applied with shared weights to every pyramid level: four 3x3 convs with
/// ReLU per branch, then <c>anchors * classes</c> logits and <c>anchors * 4</c> box deltas.
/// The GHM loss buffers sit first, as mmdetection registers its losses before its layers.
/// </summary>
[Block("classes = 80, anchors = 9, channels = 256, convs = 4")]
[Input("x", Channels = "channels")]
[Buffer("loss_cls.edges", 31), Buffer("loss_cls.acc_sum", 30)]
[Buffer("loss_bbox.edges", 11), Buffer("loss_bbox.acc_sum", 10)]
[Stage("cls_convs", nameof(ConvModule), From = "x", Count = "convs", Args = "channels = channels")]
[Stage("reg_convs", nameof(ConvModule), From = "x", Count = "convs", Args = "channels = channels")]
[Conv("retina_cls", From = "cls_convs", Out = "anchors * classes", Kernel = 3, Padding = 1, Bias = true)]
[Conv("retina_reg", From = "reg_convs", Out = "anchors * 4", Kernel = 3, Padding = 1, Bias = true)]
[Output("cls", "retina_cls"), Output("reg", "retina_reg")]
public sealed class RetinaHead;

/// <summary>
/// RetinaNet: a ResNet/ResNeXt backbone, FPN neck and RetinaHead over P3..P7. The four
/// published GHM detectors differ only in the backbone arguments.
/// </summary>
[Block("stage1 = 3, stage2 = 4, stage3 = 6, stage4 = 3, groups = 1, baseWidth = 64, classes = 80")]
[Input("image", Channels = 3)]
[Use("backbone", nameof(ResNet), Args = "stage1 = stage1, stage2 = stage2, stage3 = stage3, stage4 = stage4, groups = groups, baseWidth = baseWidth")]
[Use("neck", nameof(Fpn), From = "backbone.c3, backbone.c4, backbone.c5")]
[Shared("bbox_head", nameof(RetinaHead), From = "neck.p3, neck.p4, neck.p5, neck.p6, neck.p7", Part = "head", Args = "classes = classes")]
[Output("cls_p3", "bbox_head.p3.cls"), Output("reg_p3", "bbox_head.p3.reg")]
[Output("cls_p4", "bbox_head.p4.cls"), Output("reg_p4", "bbox_head.p4.reg")]
[Output("cls_p5", "bbox_head.p5.cls"), Output("reg_p5", "bbox_head.p5.reg")]
[Output("cls_p6", "bbox_head.p6.cls"), Output("reg_p6", "bbox_head.p6.reg")]
[Output("cls_p7", "bbox_head.p7.cls"), Output("reg_p7", "bbox_head.p7.reg")]
public sealed class RetinaNet;
