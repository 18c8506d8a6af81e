using GhmGen.Backends;
using GhmGen.Backends.Cpu;
using GhmGen.Detection;
using GhmGen.Imaging;
using GhmGen.Layers;
using GhmGen.Models.Tests.Forward;
using GhmGen.Training;

namespace GhmGen.Models.Tests.AnyNetwork;

/// <summary>
/// <see cref="ModelInfo.For{TNetwork}"/>, <see cref="RetinaHeadLayout"/> and <see cref="Detector"/>
/// for networks other than the published four: a user's 3-class, 2-anchor, 3-level network whose
/// outputs are declared in a scrambled order, and the registered 4-class demo detector.
/// </summary>
public sealed class AnyNetworkTests
{
    private static readonly RetinaAnchors TwoAnchors = new(OctaveBaseScale: 4f, ScalesPerOctave: 1, Ratios: [0.5f, 2f]);

    [Fact]
    public void For_finds_the_head_by_name_with_classes_anchors_and_strides()
    {
        ModelInfo model = ModelInfo.For<ThreeLevelNet>(TwoAnchors);
        Assert.Equal("three-level-net", model.Name);
        Assert.Equal(3, model.Head.Classes);
        Assert.Equal(2, model.Head.AnchorsPerCell);
        Assert.Equal(["fine", "middle", "coarse"], model.Head.Levels.Select(l => l.Name));
        Assert.Equal([8, 16, 32], model.Head.Levels.Select(l => l.Stride));
        Assert.Equal(["cls_fine", "cls_middle", "cls_coarse"], model.Head.Levels.Select(l => l.ClassOutput));
        Assert.Equal(["reg_fine", "reg_middle", "reg_coarse"], model.Head.Levels.Select(l => l.BoxOutput));
        Assert.Equal(ThreeLevelNet.ParameterCounts.Total, model.TotalParameters);
        Assert.Equal(ThreeLevelNet.TrainedKeys, model.TrainedKeys);
    }

    [Fact]
    public void For_needs_anchor_settings_unless_the_head_has_9_anchors_per_cell()
    {
        var e = Assert.Throws<ArgumentException>(() => ModelInfo.For<ThreeLevelNet>());
        Assert.Contains("2 anchors per cell", e.Message, StringComparison.Ordinal);
        var wrong = Assert.Throws<ArgumentException>(() => ModelInfo.For<ThreeLevelNet>(RetinaAnchors.Default));
        Assert.Contains("its anchor settings make 9", wrong.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void For_a_published_detector_gives_the_default_RetinaNet_layout()
    {
        RetinaHeadLayout found = ModelInfo.For<RetinaNetGhmR50Fpn>().Head;
        RetinaHeadLayout published = RetinaHeadLayout.RetinaNet;
        Assert.Equal(published.Levels, found.Levels);
        Assert.Equal(published.Classes, found.Classes);
        Assert.Equal(published.AnchorsPerCell, found.AnchorsPerCell);
        Assert.Same(published, ModelRegistry.Get("retinanet-ghm-r50-fpn").Head);
    }

    [Fact]
    public void A_network_of_another_type_is_an_ArgumentException_not_an_InvalidCastException()
    {
        ModelInfo model = ModelInfo.For<ThreeLevelNet>(TwoAnchors);
        using var backend = new CpuBackend(threads: 1);
        var e = Assert.Throws<ArgumentException>(() => model.Prepare(new TinyNet(), backend));
        Assert.Contains("ThreeLevelNet", e.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => model.CreateTrainingSession(new TinyNet(), backend, 1, 32, 32));
        Assert.Throws<ArgumentException>(() => model.PrepareTraining(new TinyNet(), backend));
    }

    [Fact]
    public void Create_of_a_network_without_GHM_buffers_works()
    {
        INetwork network = ModelInfo.For<ThreeLevelNet>(TwoAnchors).Create();
        Assert.IsType<ThreeLevelNet>(network);
    }

    [Fact]
    public void Detector_on_a_user_network_finds_outputs_by_name_and_decodes_the_best_anchor()
    {
        ModelInfo model = ModelInfo.For<ThreeLevelNet>(TwoAnchors);
        INetwork network = model.Create();
        SeededWeights.Fill(network);
        using var backend = new CpuBackend(threads: 1);
        using var detector = new Detector(model, network, backend, classNames: ["a", "b", "c"], preprocess: new PreprocessOptions(160, 96));
        Assert.Equal(["a", "b", "c"], detector.ClassNames);

        var pixels = new byte[100 * 70 * 3];
        for (int p = 0; p < pixels.Length; p++) pixels[p] = (byte)(SeededWeights.Uniform01("any-network-image", p) * 256);
        DetectionResult result = detector.Detect(new RgbImage(100, 70, pixels), new PostProcessOptions(ScoreThreshold: 0f), keepRaw: true);
        Assert.NotEmpty(result.Objects);
        Assert.All(result.Objects, o => Assert.InRange(o.Label, 0, 2));

        // Independently of PostProcessor: the best (anchor, class) over all levels, found by output name.
        HeadOutputs raw = result.Raw!;
        PreprocessedImage image = result.Image;
        float bestLogit = float.NegativeInfinity;
        (float X1, float Y1, float X2, float Y2) bestBox = default;
        int bestLabel = -1;
        foreach (RetinaLevel level in model.Head.Levels)
        {
            int ci = Array.IndexOf(raw.Names, level.ClassOutput), ri = Array.IndexOf(raw.Names, level.BoxOutput);
            (int c, int h, int w) = raw.Shapes[ci];
            Assert.Equal(2 * 3, c);
            Assert.Equal(2 * 4, raw.Shapes[ri].C);
            float[] baseAnchors = AnchorGenerator.BaseAnchors(level.Stride, 4f, 1, [0.5f, 2f]);
            int cells = h * w;
            for (int a = 0; a < 2; a++)
                for (int k = 0; k < 3; k++)
                    for (int cell = 0; cell < cells; cell++)
                    {
                        float logit = raw.Values[ci][(a * 3 + k) * cells + cell];
                        if (!(logit > bestLogit)) continue;
                        bestLogit = logit;
                        bestLabel = k;
                        float sx = cell % w * level.Stride, sy = cell / w * level.Stride;
                        float[] d = raw.Values[ri];
                        var box = DeltaDecoder.Decode(baseAnchors[4 * a] + sx, baseAnchors[4 * a + 1] + sy, baseAnchors[4 * a + 2] + sx, baseAnchors[4 * a + 3] + sy,
                            d[(a * 4) * cells + cell], d[(a * 4 + 1) * cells + cell], d[(a * 4 + 2) * cells + cell], d[(a * 4 + 3) * cells + cell],
                            image.ResizedWidth, image.ResizedHeight);
                        bestBox = (box.X1 / image.ScaleX, box.Y1 / image.ScaleY, box.X2 / image.ScaleX, box.Y2 / image.ScaleY);
                    }
        }
        DetectedObject top = result.Objects[0];
        Assert.Equal(1f / (1f + MathF.Exp(-bestLogit)), top.Score);
        Assert.Equal(bestLabel, top.Label);
        Assert.Equal(bestBox, (top.X1, top.Y1, top.X2, top.Y2));
    }

    [Fact]
    public void Detector_class_names_are_the_given_ones_only_when_there_is_one_per_class()
    {
        ModelInfo model = ModelInfo.For<ThreeLevelNet>(TwoAnchors);
        using var backend = new CpuBackend(threads: 1);
        using var fromCoco = new Detector(model, model.Create(), backend, classNames: CocoCategories.Names);
        Assert.Equal(["class 0", "class 1", "class 2"], fromCoco.ClassNames);
        using var none = new Detector(model, model.Create(), backend);
        Assert.Equal(["class 0", "class 1", "class 2"], none.ClassNames);
    }

    [Fact]
    public void The_demo_detector_is_registered_with_4_classes_on_5_levels()
    {
        ModelInfo model = ModelRegistry.Get("ghm-demo-r18-fpn");
        Assert.Equal(4, model.Head.Classes);
        Assert.Equal(9, model.Head.AnchorsPerCell);
        Assert.Equal([8, 16, 32, 64, 128], model.Head.Levels.Select(l => l.Stride));
        Assert.Equal(model.TotalParameters, model.Create().ParameterCount);
        // Nothing frozen: every parameter is trained.
        Assert.Equal(model.Create().State.Count(t => t.Kind == StateKind.Parameter), model.TrainedKeys.Count);
    }

    [Fact]
    public void The_demo_detector_trains_and_decodes_with_its_own_anchors_and_zero_inits_each_basic_blocks_last_norm()
    {
        ModelInfo model = ModelRegistry.Get("ghm-demo-r18-fpn");
        Assert.Equal(2f, model.Head.Anchors.OctaveBaseScale);
        // P3 at stride 8: sizes 8 * 2 * 2^(s/3) = 16, 20.16, 25.40 for ratio 1 (anchors 3..5).
        float[] p3 = [.. model.Head.BaseAnchors(0)];
        Assert.Equal(16f, p3[3 * 4 + 2] - p3[3 * 4 + 0], 1e-4f);
        Assert.Equal(16f * MathF.Pow(2f, 2f / 3f), p3[5 * 4 + 2] - p3[5 * 4 + 0], 1e-3f);
        // The trainer's anchors (AnchorGenerator with the model's settings) are the decoder's base anchors shifted per cell.
        FeatureSize[] levels = AnchorGenerator.FeatureSizes(160, 192);
        float[] all = AnchorGenerator.AllAnchors(levels, model.Head.Anchors);
        int offset = 0;
        for (int l = 0; l < levels.Length; l++)
        {
            ReadOnlySpan<float> bases = model.Head.BaseAnchors(l);
            int stride = model.Head.Levels[l].Stride;
            int last = levels[l].Height * levels[l].Width - 1, x = last % levels[l].Width, y = last / levels[l].Width;
            for (int a = 0; a < 9; a++)
            {
                Assert.Equal(bases[a * 4], all[offset + a * 4]);
                Assert.Equal(bases[a * 4 + 3] + y * stride, all[offset + (last * 9 + a) * 4 + 3]);
                Assert.Equal(bases[a * 4 + 0] + x * stride, all[offset + (last * 9 + a) * 4 + 0]);
            }
            offset += levels[l].Height * levels[l].Width * 9 * 4;
        }
        Assert.Equal(all.Length, offset);
        // Without settings: RetinaNet's, as before.
        Assert.Equal(AnchorGenerator.AllAnchors(levels), AnchorGenerator.AllAnchors(levels, RetinaAnchors.Default));

        INetwork network = model.Create();
        DetectorInitialization.Initialize(network, seed: 2);
        foreach (StateTensor t in network.State.Where(t => t.Role == StateRole.BatchNormWeight))
        {
            bool last = t.Key.StartsWith("backbone.layer", StringComparison.Ordinal) && t.Key.EndsWith(".bn2.weight", StringComparison.Ordinal);
            Assert.All(t.Data, v => Assert.Equal(last ? 0f : 1f, v));
        }
    }

    [Fact]
    public void The_demo_detector_detects_with_the_checkpoint_class_names()
    {
        ModelInfo model = ModelRegistry.Get("ghm-demo-r18-fpn");
        INetwork network = model.Create();
        DetectorInitialization.Initialize(network, seed: 1);
        using var backend = new CpuBackend(threads: 2);
        using var detector = new Detector(model, network, backend, classNames: ["circle", "square", "triangle", "star"], preprocess: new PreprocessOptions(192, 160));
        Assert.Equal(["circle", "square", "triangle", "star"], detector.ClassNames);
        var pixels = new byte[192 * 160 * 3];
        for (int p = 0; p < pixels.Length; p++) pixels[p] = (byte)(SeededWeights.Uniform01("demo-image", p) * 256);
        DetectionResult result = detector.Detect(new RgbImage(192, 160, pixels), new PostProcessOptions(ScoreThreshold: 0f));
        Assert.NotEmpty(result.Objects);
        Assert.All(result.Objects, o => Assert.InRange(o.Label, 0, 3));
    }
}
