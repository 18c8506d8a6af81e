using GhmGen.Description;
using GhmGen.Models.Blocks;

namespace GhmGen.Models;

/// <summary>What mmdetection's RetinaNet-GHM configs train (docs/MODEL.md §2).</summary>
internal static class GhmTraining
{
    /// <summary><c>frozen_stages=1</c>: the backbone's stem (conv1, bn1) and its first stage are not trained.</summary>
    public const string FrozenStages1 = "backbone.conv1, backbone.bn1, backbone.layer1";
}

/// <summary>RetinaNet-GHM with a ResNet-50 backbone (mmdetection <c>retinanet_ghm_r50_fpn_1x_coco</c>, 37.0 box AP).</summary>
[Network("retinanet-ghm-r50-fpn", Block = nameof(RetinaNet), Args = "stage3 = 6", Frozen = GhmTraining.FrozenStages1, NormEval = true)]
public sealed partial class RetinaNetGhmR50Fpn;

/// <summary>RetinaNet-GHM with a ResNet-101 backbone (39.1 box AP).</summary>
[Network("retinanet-ghm-r101-fpn", Block = nameof(RetinaNet), Args = "stage3 = 23", Frozen = GhmTraining.FrozenStages1, NormEval = true)]
public sealed partial class RetinaNetGhmR101Fpn;

/// <summary>RetinaNet-GHM with a ResNeXt-101 32x4d backbone (40.7 box AP).</summary>
[Network("retinanet-ghm-x101-32x4d-fpn", Block = nameof(RetinaNet), Args = "stage3 = 23, groups = 32, baseWidth = 4", Frozen = GhmTraining.FrozenStages1, NormEval = true)]
public sealed partial class RetinaNetGhmX101x32x4dFpn;

/// <summary>RetinaNet-GHM with a ResNeXt-101 64x4d backbone (41.4 box AP).</summary>
[Network("retinanet-ghm-x101-64x4d-fpn", Block = nameof(RetinaNet), Args = "stage3 = 23, groups = 64, baseWidth = 4", Frozen = GhmTraining.FrozenStages1, NormEval = true)]
public sealed partial class RetinaNetGhmX101x64x4dFpn;

/// <summary>
/// A small RetinaNet-GHM for the demo: a half-width ResNet-18 backbone (32..256 channels, basic
/// blocks, batch norm trained with batch statistics: NormEval = false), FPN and RetinaHead with 64 channels and 2 convs per branch,
/// P3..P7, 4 classes (the synthetic shapes: circle, square, triangle, star). Nothing is frozen.
/// </summary>
[Network("ghm-demo-r18-fpn", NormEval = false)]
[Input("image", Channels = 3)]
[Use("backbone", nameof(ResNet18), Args = "width = 32")]
[Use("neck", nameof(FpnAnyInput), From = "backbone.c3, backbone.c4, backbone.c5", Args = "channels = 64, in3 = 64, in4 = 128, in5 = 256")]
[Shared("bbox_head", nameof(RetinaHead), From = "neck.p3, neck.p4, neck.p5, neck.p6, neck.p7", Part = "head", Args = "classes = 4, channels = 64, convs = 2")]
[Output("cls_p3", "bbox_head.p3.cls"), Output("reg_p3", "bbox_head.p3.reg")]
[Output("cls_p4", "bbox_head.p4.cls"), Output("reg_p4", "bbox_head.p4.reg")]
[Output("cls_p5", "bbox_head.p5.cls"), Output("reg_p5", "bbox_head.p5.reg")]
[Output("cls_p6", "bbox_head.p6.cls"), Output("reg_p6", "bbox_head.p6.reg")]
[Output("cls_p7", "bbox_head.p7.cls"), Output("reg_p7", "bbox_head.p7.reg")]
public sealed partial class GhmDemoR18Fpn
{
    /// <summary>
    /// The demo's anchors: RetinaNet's 3 scales and 3 ratios per cell on P3..P7, but octave base
    /// scale 2 instead of 4, so P3's anchors are 16 to 25 pixels and P6's 128 to 203: the sizes of
    /// the synthetic shapes in images of 128 to 192 pixels (RetinaNet's 32 to 812 suit 1333x800).
    /// </summary>
    public static GhmGen.Detection.RetinaAnchors Anchors { get; } = new(2f, 3, [0.5f, 1f, 2f]);
}
