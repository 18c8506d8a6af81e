// RetinaNet training targets for a batch (mmdetection AnchorHead.get_targets with a
// PseudoSampler and allowed_border = -1): MaxIoU assignment, label weights, one-hot class
// targets, box deltas for positives, then the split into the per-level layout of the head
// outputs. With per-image valid flags (a padded batch, docs/TRAINING.md) the assigner sees
// only the valid anchors, and invalid ones are "unmapped" to background with weight 0. Anchor order: levels P3..P7 concatenated, within a level (y*W + x)*A + a.
// Reference test: tests/GhmGen.Runtime.Tests/Detection/RetinaTargetsFixtureTests.cs.
namespace GhmGen.Detection;

/// <summary>Targets of one image in mmdetection's per-anchor layout (all levels concatenated).</summary>
public sealed class ImageTargets
{
    internal ImageTargets(int[] assignedGt, int[] labels, float[] labelWeights, float[] boxTargets, float[] boxWeights, int numPositives, int numNegatives)
    {
        AssignedGt = assignedGt;
        Labels = labels;
        LabelWeights = labelWeights;
        BoxTargets = boxTargets;
        BoxWeights = boxWeights;
        NumPositives = numPositives;
        NumNegatives = numNegatives;
    }

    /// <summary>
    /// [numAnchors]: -1 ignored, 0 negative, k + 1 assigned to gt k (mmdetection's <c>assigned_gt_inds</c>).
    /// Anchors outside the image's valid flags are -1 too (they were never assigned).
    /// </summary>
    public int[] AssignedGt { get; }

    /// <summary>[numAnchors]: the gt class of positives, <c>numClasses</c> (background) otherwise.</summary>
    public int[] Labels { get; }

    /// <summary>[numAnchors]: 1 for positives and negatives, 0 for ignored and invalid anchors.</summary>
    public float[] LabelWeights { get; }

    /// <summary>[numAnchors, 4]: (dx, dy, dw, dh) for positives, 0 elsewhere.</summary>
    public float[] BoxTargets { get; }

    /// <summary>[numAnchors, 4]: 1 for positives, 0 elsewhere.</summary>
    public float[] BoxWeights { get; }

    /// <summary>Number of positive anchors.</summary>
    public int NumPositives { get; }

    /// <summary>Number of negative anchors.</summary>
    public int NumNegatives { get; }
}

/// <summary>
/// Targets of one FPN level for all images, laid out like that level's head outputs so the
/// losses read them beside the NCHW outputs without a permute.
/// </summary>
public sealed class LevelTargets
{
    internal LevelTargets(int numImages, int anchorsPerCell, int cellCount, int numClasses)
    {
        NumImages = numImages;
        AnchorsPerCell = anchorsPerCell;
        CellCount = cellCount;
        NumClasses = numClasses;
        LabelCodes = new int[numImages * anchorsPerCell * cellCount];
        BoxTargets = new float[numImages * anchorsPerCell * 4 * cellCount];
        BoxWeights = new float[numImages * anchorsPerCell * 4 * cellCount];
    }

    /// <summary>Images in the batch (N).</summary>
    public int NumImages { get; }

    /// <summary>Anchors per feature-map cell (A = 9).</summary>
    public int AnchorsPerCell { get; }

    /// <summary>Feature-map cells H*W.</summary>
    public int CellCount { get; }

    /// <summary>Classes (C = 80).</summary>
    public int NumClasses { get; }

    /// <summary>
    /// [N, A, H*W] per anchor: -1 ignored (label weight 0), <see cref="NumClasses"/> negative,
    /// c in [0, C) positive of class c. Class-output plane (n, a*C + c) of the [N, A*C, H, W]
    /// head output pairs with code plane (n, a): target 1 where the code is c.
    /// </summary>
    public int[] LabelCodes { get; }

    /// <summary>[N, A*4, H, W], the layout of the box head output (channel a*4 + k): deltas of positives, 0 elsewhere.</summary>
    public float[] BoxTargets { get; }

    /// <summary>[N, A*4, H, W]: 1 for the four deltas of positives, 0 elsewhere.</summary>
    public float[] BoxWeights { get; }

    /// <summary>Positive anchors in this level over all images.</summary>
    public int NumPositives { get; internal set; }

    /// <summary>Positive plus negative anchors in this level over all images.</summary>
    public int NumValid { get; internal set; }

    /// <summary>Elements of this level's class output: N*A*C*H*W.</summary>
    public long ClassOutputLength => (long)NumImages * AnchorsPerCell * NumClasses * CellCount;

    /// <summary>Elements of this level's box output: N*A*4*H*W.</summary>
    public long BoxOutputLength => (long)NumImages * AnchorsPerCell * 4 * CellCount;
}

/// <summary>Assignment and training targets of a batch for RetinaNet's head, per image and per FPN level (docs/MODEL.md §5).</summary>
public sealed class RetinaTargets
{
    private RetinaTargets(int numClasses, int anchorsPerCell, int[] levelAnchorCounts, ImageTargets[] images, LevelTargets[] levels)
    {
        NumClasses = numClasses;
        AnchorsPerCell = anchorsPerCell;
        LevelAnchorCounts = levelAnchorCounts;
        Images = images;
        Levels = levels;
        foreach (ImageTargets image in images)
        {
            NumPositives += image.NumPositives;
            NumNegatives += image.NumNegatives;
            AverageFactor += Math.Max(image.NumPositives, 1);
        }
    }

    /// <summary>Classes C.</summary>
    public int NumClasses { get; }

    /// <summary>Anchors per cell A.</summary>
    public int AnchorsPerCell { get; }

    /// <summary>Anchors of each level for one image (H*W*A), P3 first.</summary>
    public IReadOnlyList<int> LevelAnchorCounts { get; }

    /// <summary>Images in the batch.</summary>
    public int NumImages => Images.Count;

    /// <summary>Per image, mmdetection's per-anchor targets.</summary>
    public IReadOnlyList<ImageTargets> Images { get; }

    /// <summary>Per level, the targets in the head-output layout.</summary>
    public IReadOnlyList<LevelTargets> Levels { get; }

    /// <summary>Positive anchors over the batch.</summary>
    public int NumPositives { get; }

    /// <summary>Negative anchors over the batch.</summary>
    public int NumNegatives { get; }

    /// <summary>
    /// mmdetection's <c>num_total_samples</c> for RetinaNet (no sampling): the sum over images of
    /// max(positives, 1). The focal and L1 baselines divide by it; GHM-C and GHM-R do not.
    /// </summary>
    public float AverageFactor { get; }

    /// <summary>Builds targets for a batch with <see cref="MaxIoUAssigner"/>'s RetinaNet defaults.</summary>
    /// <param name="anchors">[numAnchors, 4] x1,y1,x2,y2, levels P3..P7 concatenated, each level in (y*W + x)*A + a order.</param>
    /// <param name="levelAnchorCounts">Anchors per level (H*W*A each), summing to numAnchors.</param>
    /// <param name="gtBoxesPerImage">Per image, [numGt, 4] x1,y1,x2,y2 (may be empty: all anchors negative).</param>
    /// <param name="gtLabelsPerImage">Per image, [numGt] class indices in [0, numClasses).</param>
    /// <param name="numClasses">Classes (80 for COCO).</param>
    /// <param name="anchorsPerCell">Anchors per cell (9).</param>
    /// <param name="assigner">The assigner; RetinaNet's thresholds when null.</param>
    /// <param name="validFlagsPerImage">
    /// Per image, [numAnchors] valid flags (<see cref="AnchorGenerator.ValidFlags"/>), or null when every
    /// anchor is valid. As mmdetection's <c>_get_targets_single</c> with <c>allowed_border = -1</c>: the
    /// assigner sees only the valid anchors (so a gt's max IoU for the low-quality rule is over valid
    /// anchors), and invalid anchors get label = numClasses, label weight 0 and box weight 0.
    /// </param>
    public static RetinaTargets Build(
        ReadOnlySpan<float> anchors,
        IReadOnlyList<int> levelAnchorCounts,
        IReadOnlyList<float[]> gtBoxesPerImage,
        IReadOnlyList<int[]> gtLabelsPerImage,
        int numClasses = 80,
        int anchorsPerCell = 9,
        MaxIoUAssigner? assigner = null,
        IReadOnlyList<bool[]>? validFlagsPerImage = null)
    {
        ArgumentNullException.ThrowIfNull(levelAnchorCounts);
        ArgumentNullException.ThrowIfNull(gtBoxesPerImage);
        ArgumentNullException.ThrowIfNull(gtLabelsPerImage);
        if (numClasses <= 0) throw new ArgumentOutOfRangeException(nameof(numClasses), numClasses, "numClasses must be positive.");
        if (anchorsPerCell <= 0) throw new ArgumentOutOfRangeException(nameof(anchorsPerCell), anchorsPerCell, "anchorsPerCell must be positive.");
        if (anchors.Length % 4 != 0)
            throw new ArgumentException($"anchors has {anchors.Length} values, not a multiple of 4 ([numAnchors, 4]).", nameof(anchors));
        int numAnchors = anchors.Length / 4;
        int[] counts = [.. levelAnchorCounts];
        long countSum = 0;
        foreach (int c in counts)
        {
            if (c < 0 || c % anchorsPerCell != 0)
                throw new ArgumentException($"levelAnchorCounts entry {c} is not a non-negative multiple of anchorsPerCell ({anchorsPerCell}).", nameof(levelAnchorCounts));
            countSum += c;
        }
        if (countSum != numAnchors)
            throw new ArgumentException($"levelAnchorCounts sum to {countSum} but anchors holds {numAnchors} anchors.", nameof(levelAnchorCounts));
        if (gtBoxesPerImage.Count != gtLabelsPerImage.Count)
            throw new ArgumentException($"gtBoxesPerImage has {gtBoxesPerImage.Count} images but gtLabelsPerImage has {gtLabelsPerImage.Count}.", nameof(gtLabelsPerImage));
        if (gtBoxesPerImage.Count == 0)
            throw new ArgumentException("The batch has no images.", nameof(gtBoxesPerImage));

        assigner ??= new MaxIoUAssigner();
        int numImages = gtBoxesPerImage.Count;
        for (int n = 0; n < numImages; n++) ValidateImage(n, gtBoxesPerImage[n], gtLabelsPerImage[n], numClasses);
        if (validFlagsPerImage is not null)
        {
            if (validFlagsPerImage.Count != numImages)
                throw new ArgumentException($"validFlagsPerImage has {validFlagsPerImage.Count} images but gtBoxesPerImage has {numImages}.", nameof(validFlagsPerImage));
            for (int n = 0; n < numImages; n++)
            {
                if (validFlagsPerImage[n] is not { } flags)
                    throw new ArgumentNullException(nameof(validFlagsPerImage), $"validFlagsPerImage[{n}] is null.");
                if (flags.Length != numAnchors)
                    throw new ArgumentException($"validFlagsPerImage[{n}] has {flags.Length} flags for {numAnchors} anchors.", nameof(validFlagsPerImage));
            }
        }
        // Images are independent: assign them in parallel, each writing only its own arrays.
        // (A span cannot be captured by the lambda, hence the copy of the anchors.)
        float[] anchorArray = anchors.ToArray();
        var images = new ImageTargets[numImages];
        Parallel.For(0, numImages, n =>
            images[n] = BuildImage(anchorArray, gtBoxesPerImage[n], gtLabelsPerImage[n], numClasses, assigner, validFlagsPerImage?[n]));

        var levels = new LevelTargets[counts.Length];
        int levelStart = 0;
        for (int l = 0; l < counts.Length; l++)
        {
            levels[l] = SplitLevel(images, levelStart, counts[l], numClasses, anchorsPerCell);
            levelStart += counts[l];
        }
        return new RetinaTargets(numClasses, anchorsPerCell, counts, images, levels);
    }

    private static void ValidateImage(int image, float[] gtBoxes, int[] gtLabels, int numClasses)
    {
        if (gtBoxes is null) throw new ArgumentNullException("gtBoxesPerImage", $"gtBoxesPerImage[{image}] is null.");
        if (gtLabels is null) throw new ArgumentNullException("gtLabelsPerImage", $"gtLabelsPerImage[{image}] is null.");
        if (gtBoxes.Length % 4 != 0)
            throw new ArgumentException($"gtBoxesPerImage[{image}] has {gtBoxes.Length} values, not a multiple of 4 ([numGt, 4]).", "gtBoxesPerImage");
        int numGt = gtBoxes.Length / 4;
        if (gtLabels.Length != numGt)
            throw new ArgumentException($"gtLabelsPerImage[{image}] has {gtLabels.Length} labels for {numGt} boxes.", "gtLabelsPerImage");
        for (int g = 0; g < numGt; g++)
        {
            if ((uint)gtLabels[g] >= (uint)numClasses)
                throw new ArgumentException($"gtLabelsPerImage[{image}][{g}] = {gtLabels[g]} is outside [0, {numClasses}).", "gtLabelsPerImage");
            for (int k = 0; k < 4; k++)
                if (!float.IsFinite(gtBoxes[g * 4 + k]))
                    throw new ArgumentException($"gtBoxesPerImage[{image}] box {g} has a non-finite coordinate.", "gtBoxesPerImage");
        }
    }

    private static ImageTargets BuildImage(float[] anchors, float[] gtBoxes, int[] gtLabels, int numClasses, MaxIoUAssigner assigner, bool[]? validFlags)
    {
        int numAnchors = anchors.Length / 4;
        int[] assigned = validFlags is null || Array.IndexOf(validFlags, false) < 0
            ? assigner.Assign(anchors, gtBoxes)
            : AssignValidOnly(anchors, gtBoxes, assigner, validFlags);
        var labels = new int[numAnchors];
        var labelWeights = new float[numAnchors];
        var boxTargets = new float[numAnchors * 4];
        var boxWeights = new float[numAnchors * 4];
        int numPositives = 0, numNegatives = 0;
        for (int i = 0; i < numAnchors; i++)
        {
            int g = assigned[i];
            labels[i] = numClasses;
            if (g > 0)
            {
                numPositives++;
                labels[i] = gtLabels[g - 1];
                labelWeights[i] = 1f;
                DeltaXYWHBoxEncoder.Encode(anchors.AsSpan(i * 4, 4), gtBoxes.AsSpan((g - 1) * 4, 4), boxTargets.AsSpan(i * 4, 4));
                boxWeights.AsSpan(i * 4, 4).Fill(1f);
            }
            else if (g == MaxIoUAssigner.Negative)
            {
                numNegatives++;
                labelWeights[i] = 1f;
            }
        }
        return new ImageTargets(assigned, labels, labelWeights, boxTargets, boxWeights, numPositives, numNegatives);
    }

    // mmdetection: assign flat_anchors[inside_flags], then unmap; anchors that were never assigned
    // stay Ignored here, which gives them label weight 0 and box weight 0 below.
    private static int[] AssignValidOnly(float[] anchors, float[] gtBoxes, MaxIoUAssigner assigner, bool[] validFlags)
    {
        int numAnchors = validFlags.Length, numValid = 0;
        foreach (bool valid in validFlags) if (valid) numValid++;
        var validAnchors = new float[numValid * 4];
        for (int i = 0, v = 0; i < numAnchors; i++)
            if (validFlags[i]) anchors.AsSpan(i * 4, 4).CopyTo(validAnchors.AsSpan(4 * v++, 4));
        int[] validAssigned = assigner.Assign(validAnchors, gtBoxes);
        var assigned = new int[numAnchors];
        for (int i = 0, v = 0; i < numAnchors; i++)
            assigned[i] = validFlags[i] ? validAssigned[v++] : MaxIoUAssigner.Ignored;
        return assigned;
    }

    private static LevelTargets SplitLevel(ImageTargets[] images, int levelStart, int levelCount, int numClasses, int anchorsPerCell)
    {
        int cells = levelCount / anchorsPerCell;
        var level = new LevelTargets(images.Length, anchorsPerCell, cells, numClasses);
        int numPositives = 0, numValid = 0;
        for (int n = 0; n < images.Length; n++)
        {
            ImageTargets image = images[n];
            for (int cell = 0; cell < cells; cell++)
            {
                for (int a = 0; a < anchorsPerCell; a++)
                {
                    int anchor = levelStart + cell * anchorsPerCell + a;
                    int code = image.LabelWeights[anchor] > 0f ? image.Labels[anchor] : -1;
                    level.LabelCodes[(n * anchorsPerCell + a) * cells + cell] = code;
                    if (code >= 0) numValid++;
                    if (code >= 0 && code < numClasses) numPositives++;
                    for (int k = 0; k < 4; k++)
                    {
                        int planar = ((n * anchorsPerCell + a) * 4 + k) * cells + cell;
                        level.BoxTargets[planar] = image.BoxTargets[anchor * 4 + k];
                        level.BoxWeights[planar] = image.BoxWeights[anchor * 4 + k];
                    }
                }
            }
        }
        level.NumPositives = numPositives;
        level.NumValid = numValid;
        return level;
    }
}
