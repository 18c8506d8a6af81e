using GhmGen.Layers;

namespace GhmGen.Detection;

/// <summary>
/// Anchor settings of a RetinaNet-style head (mmdetection's <c>AnchorGenerator</c>): per level the
/// base size is the stride, scales are <c>OctaveBaseScale * 2^(s / ScalesPerOctave)</c>, and each
/// ratio h/w gives one anchor per scale, ratio-major; anchors per cell = ratios x scales.
/// </summary>
/// <param name="OctaveBaseScale">octave_base_scale (4).</param>
/// <param name="ScalesPerOctave">scales_per_octave (3).</param>
/// <param name="Ratios">Height/width ratios (0.5, 1, 2).</param>
public sealed record RetinaAnchors(float OctaveBaseScale, int ScalesPerOctave, IReadOnlyList<float> Ratios)
{
    /// <summary>RetinaNet's: base scale 4, 3 scales per octave, ratios 0.5, 1, 2 (9 anchors per cell).</summary>
    public static RetinaAnchors Default { get; } = new(AnchorGenerator.OctaveBaseScale, AnchorGenerator.ScalesPerOctave, [.. AnchorGenerator.Ratios]);

    /// <summary>Anchors per feature-map cell.</summary>
    public int AnchorsPerCell => ScalesPerOctave * Ratios.Count;

    /// <summary>The base anchors of a level of that stride, [AnchorsPerCell, 4], centred on (0, 0).</summary>
    public float[] BaseAnchors(int stride) => AnchorGenerator.BaseAnchors(stride, OctaveBaseScale, ScalesPerOctave, [.. Ratios]);
}

/// <summary>One pyramid level of a RetinaNet-style head: its two outputs by name and its stride.</summary>
/// <param name="Name">The level's name, the output names without <c>cls_</c>/<c>reg_</c> (e.g. <c>p3</c>).</param>
/// <param name="ClassOutput">The class-logit output, [anchors * classes, H, W], channel a * classes + c.</param>
/// <param name="BoxOutput">The box-delta output, [anchors * 4, H, W], channel a * 4 + k.</param>
/// <param name="Stride">Input pixels per feature-map cell; also the anchors' base size.</param>
public sealed record RetinaLevel(string Name, string ClassOutput, string BoxOutput, int Stride);

/// <summary>
/// Where a RetinaNet-style network's head outputs are and what they hold: the levels (outputs found
/// by name), anchors per cell and classes. The naming contract: each level has an output
/// <c>cls_NAME</c> and an output <c>reg_NAME</c>; other outputs are not the head's. Anchors per cell
/// are <c>reg</c> channels / 4, classes are <c>cls</c> channels / anchors per cell, and a level's
/// stride is the input size over its feature size (measured at a probe size that every stride
/// divides); levels are ordered by stride, smallest first.
/// </summary>
public sealed class RetinaHeadLayout
{
    private readonly float[][] _baseAnchors;

    /// <summary>A layout from its parts; <paramref name="levels"/> must be ordered by stride.</summary>
    public RetinaHeadLayout(IReadOnlyList<RetinaLevel> levels, int classes, RetinaAnchors anchors)
    {
        ArgumentNullException.ThrowIfNull(levels);
        Anchors = anchors ?? throw new ArgumentNullException(nameof(anchors));
        if (levels.Count == 0) throw new ArgumentException("a RetinaNet head needs at least one level", nameof(levels));
        if (classes <= 0) throw new ArgumentOutOfRangeException(nameof(classes), classes, "classes must be positive");
        for (int l = 0; l < levels.Count; l++)
        {
            if (levels[l].Stride <= 0)
                throw new ArgumentException($"level '{levels[l].Name}' has stride {levels[l].Stride}", nameof(levels));
            if (l > 0 && levels[l].Stride <= levels[l - 1].Stride)
                throw new ArgumentException($"levels must be ordered by stride: '{levels[l - 1].Name}' ({levels[l - 1].Stride}) before '{levels[l].Name}' ({levels[l].Stride})", nameof(levels));
        }
        Levels = [.. levels];
        Classes = classes;
        _baseAnchors = [.. Levels.Select(l => anchors.BaseAnchors(l.Stride))];
    }

    /// <summary>The published detectors' head: cls_p3/reg_p3 .. cls_p7/reg_p7, strides 8 to 128, 80 classes, 9 anchors.</summary>
    public static RetinaHeadLayout RetinaNet { get; } = new(
        [.. Enumerable.Range(0, AnchorGenerator.LevelCount).Select(l => new RetinaLevel($"p{l + 3}", $"cls_p{l + 3}", $"reg_p{l + 3}", AnchorGenerator.Strides[l]))],
        CocoCategories.Count, RetinaAnchors.Default);

    /// <summary>The levels, smallest stride first.</summary>
    public IReadOnlyList<RetinaLevel> Levels { get; }

    /// <summary>Classes the head predicts.</summary>
    public int Classes { get; }

    /// <summary>The anchor settings.</summary>
    public RetinaAnchors Anchors { get; }

    /// <summary>Anchors per feature-map cell.</summary>
    public int AnchorsPerCell => Anchors.AnchorsPerCell;

    /// <summary>Base anchors of level <paramref name="level"/>, [AnchorsPerCell, 4].</summary>
    public ReadOnlySpan<float> BaseAnchors(int level) => _baseAnchors[level];

    /// <summary>
    /// Finds the head in a network's named outputs (<paramref name="outputsFor"/> gives their shapes
    /// for an input size, as the generated <c>OutputsFor</c> does) by the naming contract above.
    /// <paramref name="anchors"/> defaults to RetinaNet's when the head has 9 anchors per cell and
    /// must be given otherwise. Throws <see cref="ArgumentException"/> naming what does not fit.
    /// </summary>
    public static RetinaHeadLayout FromOutputs(string networkName, Func<int, int, LayerShape[]> outputsFor, int minInputSize, RetinaAnchors? anchors = null)
    {
        ArgumentNullException.ThrowIfNull(outputsFor);
        // A probe size that any stride up to 2^10 divides, at least the minimum input size.
        int probe = 1024;
        while (probe < minInputSize) probe *= 2;
        LayerShape[] outputs = outputsFor(probe, probe);
        var byName = new Dictionary<string, LayerShape>(StringComparer.Ordinal);
        foreach (LayerShape o in outputs) byName[o.Name] = o;

        var levels = new List<(RetinaLevel Level, LayerShape Cls, LayerShape Reg)>();
        foreach (LayerShape cls in outputs)
        {
            if (!cls.Name.StartsWith("cls_", StringComparison.Ordinal)) continue;
            string name = cls.Name["cls_".Length..];
            if (!byName.TryGetValue("reg_" + name, out LayerShape reg))
                throw new ArgumentException($"network '{networkName}': output '{cls.Name}' has no box output 'reg_{name}' (a RetinaNet head names each level's outputs cls_NAME and reg_NAME)");
            if (cls.Height != reg.Height || cls.Width != reg.Width)
                throw new ArgumentException($"network '{networkName}': '{cls.Name}' is {cls.Height}x{cls.Width} but '{reg.Name}' is {reg.Height}x{reg.Width}");
            if (cls.Height <= 0 || probe % cls.Height != 0 || cls.Width <= 0 || probe % cls.Width != 0 || probe / cls.Height != probe / cls.Width)
                throw new ArgumentException($"network '{networkName}': level '{name}' is {cls.Height}x{cls.Width} for a {probe}x{probe} input, not a whole stride");
            levels.Add((new RetinaLevel(name, cls.Name, reg.Name, probe / cls.Height), cls, reg));
        }
        foreach (LayerShape o in outputs)
            if (o.Name.StartsWith("reg_", StringComparison.Ordinal) && !byName.ContainsKey("cls_" + o.Name["reg_".Length..]))
                throw new ArgumentException($"network '{networkName}': output '{o.Name}' has no class output 'cls_{o.Name["reg_".Length..]}'");
        if (levels.Count == 0)
            throw new ArgumentException($"network '{networkName}' has no RetinaNet head outputs (cls_NAME and reg_NAME pairs); its outputs are {string.Join(", ", outputs.Select(o => o.Name))}");

        int boxChannels = levels[0].Reg.Channels, classChannels = levels[0].Cls.Channels;
        foreach (var (level, cls, reg) in levels)
            if (reg.Channels != boxChannels || cls.Channels != classChannels)
                throw new ArgumentException($"network '{networkName}': level '{level.Name}' has {cls.Channels} class and {reg.Channels} box channels, level '{levels[0].Level.Name}' {classChannels} and {boxChannels}; levels share one head");
        if (boxChannels % 4 != 0)
            throw new ArgumentException($"network '{networkName}': box outputs have {boxChannels} channels, not 4 per anchor");
        int anchorsPerCell = boxChannels / 4;
        anchors ??= anchorsPerCell == RetinaAnchors.Default.AnchorsPerCell ? RetinaAnchors.Default
            : throw new ArgumentException($"network '{networkName}' has {anchorsPerCell} anchors per cell: give its anchor settings (RetinaAnchors), RetinaNet's default has {RetinaAnchors.Default.AnchorsPerCell}");
        if (anchors.AnchorsPerCell != anchorsPerCell)
            throw new ArgumentException($"network '{networkName}' has {anchorsPerCell} anchors per cell ({boxChannels} box channels), its anchor settings make {anchors.AnchorsPerCell}");
        if (classChannels % anchorsPerCell != 0)
            throw new ArgumentException($"network '{networkName}': class outputs have {classChannels} channels, not a whole number of classes for {anchorsPerCell} anchors per cell");
        levels.Sort((a, b) => a.Level.Stride.CompareTo(b.Level.Stride));
        return new RetinaHeadLayout([.. levels.Select(l => l.Level)], classChannels / anchorsPerCell, anchors);
    }
}
