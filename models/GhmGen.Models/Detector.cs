using GhmGen.Backends;
using GhmGen.Checkpoints;
using GhmGen.Detection;
using GhmGen.Imaging;
using GhmGen.Layers;

namespace GhmGen.Models;

/// <summary>The ten head outputs of one image, NCHW without the batch axis, P3 to P7.</summary>
/// <param name="Names">Output names: cls_p3, reg_p3, ... reg_p7.</param>
/// <param name="Shapes">Channels, height and width of each.</param>
/// <param name="Values">Values of each, row-major.</param>
public sealed record HeadOutputs(string[] Names, (int C, int H, int W)[] Shapes, float[][] Values);

/// <summary>What <see cref="Detector.Detect(RgbImage, PostProcessOptions?)"/> found in one image.</summary>
/// <param name="Objects">Detections in original-image pixels, best first.</param>
/// <param name="Image">The preprocessing that was applied.</param>
/// <param name="Raw">The head outputs, when asked for.</param>
public sealed record DetectionResult(DetectedObject[] Objects, PreprocessedImage Image, HeadOutputs? Raw);

/// <summary>
/// A RetinaNet-GHM detector ready to run: a registered model, its weights, a backend.
/// <code>
/// using var backend = new CpuBackend();
/// using var detector = Detector.Load("retinanet-ghm-r50-fpn", "retinanet_ghm_r50.pth", backend);
/// DetectionResult result = detector.Detect(ImageDecoder.Decode("street.jpg"));
/// </code>
/// </summary>
public sealed class Detector : IDisposable
{
    private readonly Dictionary<(int H, int W), IForwardSession> _sessions = [];
    private readonly IPreparedNetwork _prepared;
    private readonly IBackend _backend;

    /// <summary>Wraps a built network whose weights are already loaded.</summary>
    public Detector(ModelInfo model, INetwork network, IBackend backend, IReadOnlyList<string>? classNames = null)
    {
        Model = model ?? throw new ArgumentNullException(nameof(model));
        ArgumentNullException.ThrowIfNull(network);
        _backend = backend ?? throw new ArgumentNullException(nameof(backend));
        // Weights are prepared once; each distinct padded input size only adds activation buffers.
        _prepared = model.Prepare(network, backend);
        ClassNames = classNames is { Count: CocoCategories.Count } ? classNames : CocoCategories.Names;
    }

    /// <summary>The model.</summary>
    public ModelInfo Model { get; }

    /// <summary>Class names by label: the checkpoint's <c>CLASSES</c> when it has 80, else COCO's.</summary>
    public IReadOnlyList<string> ClassNames { get; }

    /// <summary>
    /// Builds <paramref name="modelName"/> and loads <paramref name="checkpointPath"/> into it
    /// (strict: every key present with the right shape). Throws <see cref="ArgumentException"/>
    /// for an unknown model and <see cref="CheckpointFormatException"/> or
    /// <see cref="CheckpointMismatchException"/> for a bad file.
    /// </summary>
    public static Detector Load(string modelName, string checkpointPath, IBackend backend)
    {
        ModelInfo model = ModelRegistry.Get(modelName);
        INetwork network = model.Create();
        using TorchCheckpoint checkpoint = TorchCheckpoint.Read(checkpointPath);
        StateDictLoader.Load(network, checkpoint, strict: true);
        return new Detector(model, network, backend, checkpoint.ClassNames);
    }

    /// <summary>Preprocesses, runs the network and post-processes one image.</summary>
    public DetectionResult Detect(RgbImage image, PostProcessOptions? options = null, bool keepRaw = false)
    {
        PreprocessedImage input = Preprocessor.Run(image);
        IForwardSession session = Session(input.PaddedHeight, input.PaddedWidth);
        session.Forward(input.Tensor);

        var outputs = session.Outputs;
        var names = new string[outputs.Count];
        var shapes = new (int C, int H, int W)[outputs.Count];
        var values = new float[outputs.Count][];
        for (int i = 0; i < outputs.Count; i++)
        {
            TensorView t = outputs[i].Tensor;
            names[i] = outputs[i].Name;
            shapes[i] = (t.C, t.H, t.W);
            values[i] = new float[t.ElementCount];
            _backend.Download(t, values[i]);
        }

        // Outputs come as cls_p3, reg_p3, cls_p4, ... (the declaration order of RetinaNet's outputs).
        var levels = new HeadLevelOutput[outputs.Count / 2];
        for (int l = 0; l < levels.Length; l++)
            levels[l] = new HeadLevelOutput(values[2 * l], values[2 * l + 1], shapes[2 * l].H, shapes[2 * l].W);
        DetectedObject[] objects = PostProcessor.Run(levels, input.ResizedHeight, input.ResizedWidth, input.ScaleX, input.ScaleY, options);
        return new DetectionResult(objects, input, keepRaw ? new HeadOutputs(names, shapes, values) : null);
    }

    private IForwardSession Session(int height, int width)
    {
        if (_sessions.TryGetValue((height, width), out IForwardSession? session)) return session;
        // Keep the activation plans of a few sizes; a folder of photos has a handful of padded sizes.
        if (_sessions.Count >= 4)
        {
            foreach (IForwardSession old in _sessions.Values) old.Dispose();
            _sessions.Clear();
        }
        session = _prepared.CreateSession(1, height, width);
        _sessions[(height, width)] = session;
        return session;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (IForwardSession session in _sessions.Values) session.Dispose();
        _sessions.Clear();
        _prepared.Dispose();
    }
}
