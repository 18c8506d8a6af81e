// The RetinaNet head's training losses over all FPN levels: GHM-C + GHM-R (GhmLosses) or the
// focal + L1 baseline (RetinaBaselineLosses). Inputs are the head outputs per level in NCHW
// ([N, A*C, H, W] and [N, A*4, H, W]) and RetinaTargets; gradients come back in the same layout,
// so no permute copy is made either way.
// Reference tests: tests/GhmGen.Runtime.Tests/Losses/GhmFixtureTests.cs.
using GhmGen.Detection;

namespace GhmGen.Losses;

/// <summary>
/// Loss values per level and in total, with gradients in the head-output layout: in arrays of its own
/// (<see cref="DetectionLossResult(RetinaTargets)"/>) or in memory the caller keeps, e.g. a backend's host
/// buffers (<see cref="DetectionLossResult(IReadOnlyList{Memory{float}}, IReadOnlyList{Memory{float}})"/>).
/// </summary>
public sealed class DetectionLossResult
{
    private readonly Memory<float>[] _classificationGradients, _boxGradients;

    /// <summary>Allocates gradient buffers shaped like the head outputs of <paramref name="targets"/>.</summary>
    public DetectionLossResult(RetinaTargets targets)
    {
        ArgumentNullException.ThrowIfNull(targets);
        int levels = targets.Levels.Count;
        ClassificationLossPerLevel = new float[levels];
        BoxLossPerLevel = new float[levels];
        _classificationGradients = new Memory<float>[levels];
        _boxGradients = new Memory<float>[levels];
        for (int l = 0; l < levels; l++)
        {
            _classificationGradients[l] = new float[targets.Levels[l].ClassOutputLength];
            _boxGradients[l] = new float[targets.Levels[l].BoxOutputLength];
        }
    }

    /// <summary>
    /// Writes the gradients into <paramref name="classificationGradients"/> and <paramref name="boxGradients"/>
    /// (per level, P3 first, [N, A*C, H, W] and [N, A*4, H, W]), which the caller keeps; no gradient buffer is
    /// allocated. Their lengths are checked against the targets on each <c>Compute</c>.
    /// </summary>
    public DetectionLossResult(IReadOnlyList<Memory<float>> classificationGradients, IReadOnlyList<Memory<float>> boxGradients)
    {
        ArgumentNullException.ThrowIfNull(classificationGradients);
        ArgumentNullException.ThrowIfNull(boxGradients);
        if (classificationGradients.Count != boxGradients.Count)
            throw new ArgumentException($"{classificationGradients.Count} class and {boxGradients.Count} box gradient buffers: one of each per level", nameof(boxGradients));
        ClassificationLossPerLevel = new float[classificationGradients.Count];
        BoxLossPerLevel = new float[classificationGradients.Count];
        _classificationGradients = [.. classificationGradients];
        _boxGradients = [.. boxGradients];
    }

    /// <summary>Classification loss of each level, P3 first.</summary>
    public float[] ClassificationLossPerLevel { get; }

    /// <summary>Box loss of each level, P3 first.</summary>
    public float[] BoxLossPerLevel { get; }

    /// <summary>Sum of the classification losses of all levels.</summary>
    public float ClassificationLoss { get; internal set; }

    /// <summary>Sum of the box losses of all levels.</summary>
    public float BoxLoss { get; internal set; }

    /// <summary>Classification plus box loss.</summary>
    public float TotalLoss => ClassificationLoss + BoxLoss;

    /// <summary>Per level, d loss / d class output, [N, A*C, H, W].</summary>
    public IReadOnlyList<Memory<float>> ClassificationGradients => _classificationGradients;

    /// <summary>Per level, d loss / d box output, [N, A*4, H, W].</summary>
    public IReadOnlyList<Memory<float>> BoxGradients => _boxGradients;

    internal void CheckShapes(IReadOnlyList<ReadOnlyMemory<float>> classOutputs, IReadOnlyList<ReadOnlyMemory<float>> boxOutputs, RetinaTargets targets)
    {
        ArgumentNullException.ThrowIfNull(classOutputs);
        ArgumentNullException.ThrowIfNull(boxOutputs);
        ArgumentNullException.ThrowIfNull(targets);
        int levels = targets.Levels.Count;
        if (classOutputs.Count != levels || boxOutputs.Count != levels)
            throw new ArgumentException($"Expected {levels} class and box outputs (one per level); got {classOutputs.Count} and {boxOutputs.Count}.", nameof(classOutputs));
        if (_classificationGradients.Length != levels)
            throw new ArgumentException($"The result holds {_classificationGradients.Length} levels but the targets have {levels}.", "result");
        for (int l = 0; l < levels; l++)
        {
            LevelTargets level = targets.Levels[l];
            if (classOutputs[l].Length != level.ClassOutputLength)
                throw new ArgumentException($"classOutputs[{l}] has {classOutputs[l].Length} values; level {l} needs N*A*C*H*W = {level.ClassOutputLength}.", nameof(classOutputs));
            if (boxOutputs[l].Length != level.BoxOutputLength)
                throw new ArgumentException($"boxOutputs[{l}] has {boxOutputs[l].Length} values; level {l} needs N*A*4*H*W = {level.BoxOutputLength}.", nameof(boxOutputs));
            if (_classificationGradients[l].Length != level.ClassOutputLength || _boxGradients[l].Length != level.BoxOutputLength)
                throw new ArgumentException($"The result's gradient buffers of level {l} do not match the targets' shapes.", "result");
        }
        // A gradient written over an output that a later level still reads would change that level's loss.
        for (int l = 0; l < levels; l++)
        for (int g = 0; g < levels; g++)
        {
            ReadOnlySpan<float> cls = classOutputs[l].Span, box = boxOutputs[l].Span;
            ReadOnlySpan<float> dcls = _classificationGradients[g].Span, dbox = _boxGradients[g].Span;
            if (cls.Overlaps(dcls) || cls.Overlaps(dbox) || box.Overlaps(dcls) || box.Overlaps(dbox))
                throw new ArgumentException($"The outputs of level {l} overlap the result's gradient buffers of level {g}.", "result");
        }
    }

    // The arrays as read-only memory (a null array is an empty one, which CheckShapes reports).
    internal static ReadOnlyMemory<float>[] AsMemory(IReadOnlyList<float[]> arrays)
    {
        ArgumentNullException.ThrowIfNull(arrays);
        var memory = new ReadOnlyMemory<float>[arrays.Count];
        for (int i = 0; i < memory.Length; i++) memory[i] = arrays[i];
        return memory;
    }
}

/// <summary>The training losses of RetinaNet's head over all FPN levels.</summary>
public interface IDetectionLoss
{
    /// <summary>Losses and gradients for one batch, into a new result.</summary>
    /// <param name="classOutputs">Per level P3..P7, the class output [N, A*C, H, W].</param>
    /// <param name="boxOutputs">Per level P3..P7, the box output [N, A*4, H, W].</param>
    /// <param name="targets">The batch's targets.</param>
    DetectionLossResult Compute(IReadOnlyList<float[]> classOutputs, IReadOnlyList<float[]> boxOutputs, RetinaTargets targets);

    /// <summary>As <see cref="Compute(IReadOnlyList{float[]}, IReadOnlyList{float[]}, RetinaTargets)"/>, reusing <paramref name="result"/>'s buffers.</summary>
    void Compute(IReadOnlyList<float[]> classOutputs, IReadOnlyList<float[]> boxOutputs, RetinaTargets targets, DetectionLossResult result);

    /// <summary>
    /// As <see cref="Compute(IReadOnlyList{float[]}, IReadOnlyList{float[]}, RetinaTargets, DetectionLossResult)"/>,
    /// reading the outputs where the caller keeps them (e.g. a backend's host buffers, with no copy). The
    /// outputs must not overlap the result's gradient buffers.
    /// </summary>
    void Compute(IReadOnlyList<ReadOnlyMemory<float>> classOutputs, IReadOnlyList<ReadOnlyMemory<float>> boxOutputs, RetinaTargets targets, DetectionLossResult result);
}

/// <summary>GHM-C plus GHM-R, one call of each per FPN level over the batch (mmdetection's retinanet_ghm head).</summary>
public sealed class GhmLosses : IDetectionLoss
{
    /// <summary>GHM-C and GHM-R with the published config, optionally bound to checkpoint buffers.</summary>
    /// <param name="classificationAccSum"><c>bbox_head.loss_cls.acc_sum</c> [30] to update in place, or null for a fresh state.</param>
    /// <param name="boxAccSum"><c>bbox_head.loss_bbox.acc_sum</c> [10] to update in place, or null for a fresh state.</param>
    public GhmLosses(float[]? classificationAccSum = null, float[]? boxAccSum = null)
        : this(new GhmcLoss(accSum: classificationAccSum), new GhmrLoss(accSum: boxAccSum))
    {
    }

    /// <summary>Combines two configured losses.</summary>
    public GhmLosses(GhmcLoss classification, GhmrLoss box)
    {
        Classification = classification ?? throw new ArgumentNullException(nameof(classification));
        Box = box ?? throw new ArgumentNullException(nameof(box));
    }

    /// <summary>The GHM-C loss (and its state).</summary>
    public GhmcLoss Classification { get; }

    /// <summary>The GHM-R loss (and its state).</summary>
    public GhmrLoss Box { get; }

    /// <inheritdoc/>
    public DetectionLossResult Compute(IReadOnlyList<float[]> classOutputs, IReadOnlyList<float[]> boxOutputs, RetinaTargets targets)
    {
        var result = new DetectionLossResult(targets);
        Compute(classOutputs, boxOutputs, targets, result);
        return result;
    }

    /// <inheritdoc/>
    public void Compute(IReadOnlyList<float[]> classOutputs, IReadOnlyList<float[]> boxOutputs, RetinaTargets targets, DetectionLossResult result) =>
        Compute(DetectionLossResult.AsMemory(classOutputs), DetectionLossResult.AsMemory(boxOutputs), targets, result);

    /// <inheritdoc/>
    public void Compute(IReadOnlyList<ReadOnlyMemory<float>> classOutputs, IReadOnlyList<ReadOnlyMemory<float>> boxOutputs, RetinaTargets targets, DetectionLossResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        result.CheckShapes(classOutputs, boxOutputs, targets);
        float cls = 0f, box = 0f;
        for (int l = 0; l < targets.Levels.Count; l++)
        {
            LevelTargets level = targets.Levels[l];
            result.ClassificationLossPerLevel[l] = Classification.ComputeLevel(classOutputs[l].Span, level, result.ClassificationGradients[l].Span);
            result.BoxLossPerLevel[l] = Box.ComputeLevel(boxOutputs[l].Span, level, result.BoxGradients[l].Span);
            cls += result.ClassificationLossPerLevel[l];
            box += result.BoxLossPerLevel[l];
        }
        result.ClassificationLoss = cls;
        result.BoxLoss = box;
    }
}

/// <summary>RetinaNet's baseline losses: sigmoid focal loss plus L1, both divided by <see cref="RetinaTargets.AverageFactor"/>.</summary>
public sealed class RetinaBaselineLosses : IDetectionLoss
{
    /// <summary>Focal (gamma 2, alpha 0.25) and L1 with weight 1, unless given.</summary>
    public RetinaBaselineLosses(FocalLoss? classification = null, L1Loss? box = null)
    {
        Classification = classification ?? new FocalLoss();
        Box = box ?? new L1Loss();
    }

    /// <summary>The focal loss.</summary>
    public FocalLoss Classification { get; }

    /// <summary>The L1 loss.</summary>
    public L1Loss Box { get; }

    /// <inheritdoc/>
    public DetectionLossResult Compute(IReadOnlyList<float[]> classOutputs, IReadOnlyList<float[]> boxOutputs, RetinaTargets targets)
    {
        var result = new DetectionLossResult(targets);
        Compute(classOutputs, boxOutputs, targets, result);
        return result;
    }

    /// <inheritdoc/>
    public void Compute(IReadOnlyList<float[]> classOutputs, IReadOnlyList<float[]> boxOutputs, RetinaTargets targets, DetectionLossResult result) =>
        Compute(DetectionLossResult.AsMemory(classOutputs), DetectionLossResult.AsMemory(boxOutputs), targets, result);

    /// <inheritdoc/>
    public void Compute(IReadOnlyList<ReadOnlyMemory<float>> classOutputs, IReadOnlyList<ReadOnlyMemory<float>> boxOutputs, RetinaTargets targets, DetectionLossResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        result.CheckShapes(classOutputs, boxOutputs, targets);
        float cls = 0f, box = 0f;
        for (int l = 0; l < targets.Levels.Count; l++)
        {
            LevelTargets level = targets.Levels[l];
            result.ClassificationLossPerLevel[l] = Classification.ComputeLevel(classOutputs[l].Span, level, targets.AverageFactor, result.ClassificationGradients[l].Span);
            result.BoxLossPerLevel[l] = Box.ComputeLevel(boxOutputs[l].Span, level, targets.AverageFactor, result.BoxGradients[l].Span);
            cls += result.ClassificationLossPerLevel[l];
            box += result.BoxLossPerLevel[l];
        }
        result.ClassificationLoss = cls;
        result.BoxLoss = box;
    }
}
