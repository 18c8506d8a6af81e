using GhmGen.Description;
using GhmGen.Models.Blocks;

namespace MyApp;

/// <summary>
/// RetinaNet-GHM (ResNet-50, FPN, RetinaHead) for three classes, declared with the blocks that the
/// GhmGen.Models package ships; the stem and first stage are not trained, as in mmdetection's configs.
/// The generator (inside the GhmGen package) adds the layers, the forward and backward passes and the counts.
/// </summary>
[Network("my-detector", Block = nameof(RetinaNet), Args = "classes = 3", Frozen = "backbone.conv1, backbone.bn1, backbone.layer1")]
public sealed partial class MyDetector;
