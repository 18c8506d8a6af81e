using GhmGen.Description;
using GhmGen.Models.Blocks;

namespace GhmGen.Models;

/// <summary>What mmdetection's RetinaNet-GHM configs train (SPEC.md §2).</summary>
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
