using GhmGen.Layers;

namespace GhmGen.Losses;

/// <summary>
/// The GHM buffers a RetinaNet-GHM state dict carries (<c>bbox_head.loss_cls.edges/acc_sum</c>,
/// <c>bbox_head.loss_bbox.edges/acc_sum</c>): their initial values, and losses bound to them so
/// that training updates the tensors that checkpoints save.
/// </summary>
public static class GhmLossState
{
    /// <summary>Key of GHM-C's bin edges [31].</summary>
    public const string ClassificationEdgesKey = "bbox_head.loss_cls.edges";

    /// <summary>Key of GHM-C's moving bin counts [30].</summary>
    public const string ClassificationAccSumKey = "bbox_head.loss_cls.acc_sum";

    /// <summary>Key of GHM-R's bin edges [11].</summary>
    public const string BoxEdgesKey = "bbox_head.loss_bbox.edges";

    /// <summary>Key of GHM-R's moving bin counts [10].</summary>
    public const string BoxAccSumKey = "bbox_head.loss_bbox.acc_sum";

    /// <summary>Sets the edge buffers to mmdetection's values (k/30 with the last + 1e-6; k/10 with the last 1000), as a new model has them.</summary>
    public static void InitializeEdges(INetwork network)
    {
        new GhmcLoss().Edges.CopyTo(Find(network, ClassificationEdgesKey, 31).Data);
        new GhmrLoss().Edges.CopyTo(Find(network, BoxEdgesKey, 11).Data);
    }

    /// <summary>GHM-C and GHM-R (mmdetection's settings) whose <c>acc_sum</c> is the network's own buffers.</summary>
    public static GhmLosses CreateLosses(INetwork network) =>
        new(classificationAccSum: Find(network, ClassificationAccSumKey, 30).Data, boxAccSum: Find(network, BoxAccSumKey, 10).Data);

    private static StateTensor Find(INetwork network, string key, int length)
    {
        StateTensor? tensor = network.State.FirstOrDefault(t => t.Key == key);
        if (tensor is null || tensor.ElementCount != length || tensor.ElementType != StateElementType.Float32)
            throw new ArgumentException($"network '{network.Name}' has no float32 buffer '{key}' of {length} elements");
        return tensor;
    }
}
