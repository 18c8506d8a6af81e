using GhmGen.Backends;
using GhmGen.Checkpoints;
using GhmGen.Detection;
using GhmGen.Imaging;
using GhmGen.Layers;

namespace GhmGen.Models;

/// <summary>The network outputs of one image, NCHW without the batch axis, in declaration order (for the published detectors the ten head outputs, P3 to P7).</summary>
/// <param name="Names">Output names, e.g. cls_p3, reg_p3, ... reg_p7.</param>
/// <param name="Shapes">Channels, height and width of each.</param>
/// <param name="Values">Values of each, row-major.</param>
public sealed record HeadOutputs(string[] Names, (int C, int H, int W)[] Shapes, float[][] Values);

/// <summary>What <see cref="Detector.Detect(RgbImage, PostProcessOptions?, bool, CancellationToken)"/> found in one image.</summary>
/// <param name="Objects">Detections in original-image pixels, best first.</param>
/// <param name="Image">The preprocessing that was applied; its <see cref="PreprocessedImage.Tensor"/> is the network input when raw outputs were asked for, else empty (the input buffer is reused).</param>
/// <param name="Raw">The head outputs, when asked for.</param>
public sealed record DetectionResult(DetectedObject[] Objects, PreprocessedImage Image, HeadOutputs? Raw);

/// <summary>
/// A RetinaNet-GHM detector ready to run: a registered model, its weights, a backend.
/// <code>
/// using var backend = new CpuBackend();
/// using var detector = Detector.Load("retinanet-ghm-r50-fpn", "retinanet_ghm_r50.pth", backend);
/// DetectionResult result = detector.Detect(ImageDecoder.Decode("street.jpg"));
/// </code>
/// Thread-safe: <see cref="Detect(RgbImage, PostProcessOptions?, bool, CancellationToken)"/>,
/// <see cref="DetectAsync"/> and <see cref="DetectFilesAsync"/> may be called from any number of
/// threads at once, and several detectors may share one backend. Each call leases a set of
/// activation buffers from a pool and a session over them for its padded input size (the buffers
/// grow to the largest size seen), so no two calls share buffers; at most
/// <see cref="MaxConcurrentForwards"/> forward passes of one detector are in flight, the others
/// wait (preprocessing runs on the caller's thread meanwhile; post-processing runs before the
/// session is returned, as it reads the outputs in the session's buffers). A
/// <see cref="CancellationToken"/> is observed before the forward pass starts (also while waiting
/// for a free slot); a pass that has started runs to its end. Dispose the detector once no call is
/// in flight; calls after <see cref="Dispose"/> throw <see cref="ObjectDisposedException"/>. The
/// detector owns its prepared weights and sessions, never the backend.
/// </summary>
public sealed partial class Detector : IDisposable
{
    /// <summary>Idle host buffer sets kept for reuse.</summary>
    private const int MaxIdleSessions = 4;

    private readonly Lock _gate = new();
    // Idle activation arenas, least recently returned first: at most MaxConcurrentForwards exist.
    private readonly LinkedList<Arena> _idle = [];
    // Idle host buffers (network input and downloaded outputs), most recently returned on top.
    private readonly Stack<ImageBuffers> _idleBuffers = new();
    private readonly SemaphoreSlim _forwardSlots;
    private readonly IPreparedNetwork _prepared;
    private readonly IBackend _backend;
    private int _inFlight;
    private bool _disposed;

    /// <summary>Wraps a built network whose weights are already loaded.</summary>
    /// <param name="model">The registered model the network is an instance of.</param>
    /// <param name="network">The network, weights loaded.</param>
    /// <param name="backend">Where it runs; the caller keeps ownership.</param>
    /// <param name="classNames">Class names by label, one per class of <see cref="ModelInfo.Head"/>; when null or of another count, COCO's for an 80-class head, else <c>class 0</c>, <c>class 1</c>, ...</param>
    /// <param name="maxConcurrentForwards">Forward passes in flight at once (each holds a session's activation buffers).</param>
    /// <param name="preprocess">Resize and padding (default: mmdetection's 1333x800, pad to 32).</param>
    public Detector(ModelInfo model, INetwork network, IBackend backend, IReadOnlyList<string>? classNames = null,
        int maxConcurrentForwards = 2, PreprocessOptions? preprocess = null)
    {
        Model = model ?? throw new ArgumentNullException(nameof(model));
        ArgumentNullException.ThrowIfNull(network);
        _backend = backend ?? throw new ArgumentNullException(nameof(backend));
        if (maxConcurrentForwards < 1)
            throw new ArgumentOutOfRangeException(nameof(maxConcurrentForwards), maxConcurrentForwards, "at least one forward pass must be allowed");
        MaxConcurrentForwards = maxConcurrentForwards;
        Preprocess = preprocess ?? PreprocessOptions.Default;
        _forwardSlots = new SemaphoreSlim(maxConcurrentForwards, maxConcurrentForwards);
        // Weights are prepared once; each distinct padded input size only adds activation buffers.
        // A failed preparation has released what it prepared (generated code); release the rest.
        try
        {
            _prepared = model.Prepare(network, backend);
        }
        catch
        {
            _forwardSlots.Dispose();
            throw;
        }
        int classes = model.Head.Classes;
        ClassNames = classNames is not null && classNames.Count == classes ? classNames
            : classes == CocoCategories.Count ? CocoCategories.Names
            : [.. Enumerable.Range(0, classes).Select(c => $"class {c}")];
    }

    // Per head level, the positions of its class and box outputs in the session's outputs (found by name on first use).
    private (int Cls, int Reg)[]? _levelOutputs;

    /// <summary>The registered model this detector runs: its name, head layout (levels, classes, anchors) and builders.</summary>
    public ModelInfo Model { get; }

    /// <summary>Class names by label: the checkpoint's <c>CLASSES</c> (or the names given) when there is one per class of the head, else COCO's for 80 classes, else <c>class N</c>.</summary>
    public IReadOnlyList<string> ClassNames { get; }

    /// <summary>Forward passes of this detector that may be in flight at once.</summary>
    public int MaxConcurrentForwards { get; }

    /// <summary>How images are resized and padded before the network.</summary>
    public PreprocessOptions Preprocess { get; }

    /// <summary>
    /// Builds <paramref name="modelName"/> and loads <paramref name="checkpointPath"/> into it
    /// (strict: every key present with the right shape), then prepares the weights on
    /// <paramref name="backend"/>. The checkpoint file is closed before the weights are prepared,
    /// and the network's float copy is released (a full, decommitting garbage collection) before
    /// the detector is returned, so neither counts with the prepared weights or the activations in
    /// the peak memory. When it throws, nothing it made is left undisposed: the checkpoint is
    /// closed and whatever was already prepared on the backend is released.
    /// </summary>
    /// <param name="modelName">A registered model (<see cref="ModelRegistry.All"/>), e.g. <c>retinanet-ghm-r50-fpn</c>.</param>
    /// <param name="checkpointPath">A PyTorch checkpoint (zip or legacy format) with that model's state dict.</param>
    /// <param name="backend">Where the network runs; the caller keeps ownership and disposes it after the detector.</param>
    /// <param name="preprocess">Resize and padding (default: mmdetection's 1333x800, pad to 32).</param>
    /// <param name="maxConcurrentForwards">Forward passes allowed in flight at once (<see cref="MaxConcurrentForwards"/>).</param>
    /// <returns>A detector the caller owns (dispose it).</returns>
    /// <exception cref="ArgumentException"><paramref name="modelName"/> is not a registered model (the message lists them).</exception>
    /// <exception cref="CheckpointFormatException">The file is missing, unreadable or not a PyTorch checkpoint.</exception>
    /// <exception cref="CheckpointMismatchException">The checkpoint's tensors do not match the model (missing, extra or misshapen keys).</exception>
    public static Detector Load(string modelName, string checkpointPath, IBackend backend, PreprocessOptions? preprocess = null,
        int maxConcurrentForwards = 2)
    {
        ModelInfo model = ModelRegistry.Get(modelName);
        Detector detector = Build(model, checkpointPath, backend, preprocess, maxConcurrentForwards);
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        return detector;
    }

    // Loads and prepares; the network is unreachable once this returns.
    private static Detector Build(ModelInfo model, string checkpointPath, IBackend backend, PreprocessOptions? preprocess, int maxConcurrentForwards)
    {
        INetwork network = model.Create();
        IReadOnlyList<string>? classNames;
        using (TorchCheckpoint checkpoint = TorchCheckpoint.Read(checkpointPath))
        {
            StateDictLoader.Load(network, checkpoint, strict: true);
            classNames = checkpoint.ClassNames;
        }
        return new Detector(model, network, backend, classNames, maxConcurrentForwards, preprocess);
    }

    /// <summary>
    /// Preprocesses, runs the network and post-processes one image (thread-safe). The network input
    /// lives in a buffer that later calls reuse, and the outputs are read where the backend left
    /// them when they are in host memory (the CPU backend; other backends' are downloaded into
    /// reused buffers), so in steady state a call allocates only the detections and small
    /// bookkeeping. With <paramref name="keepRaw"/> the result gets its own copies of both
    /// (<see cref="DetectionResult.Raw"/> and the input tensor in <see cref="DetectionResult.Image"/>);
    /// else <c>Image.Tensor</c> is empty.
    /// </summary>
    /// <param name="image">The image, 8-bit RGB; not changed.</param>
    /// <param name="options">Score threshold, top-k and NMS (default: mmdetection's <c>test_cfg</c>).</param>
    /// <param name="keepRaw">Whether the result keeps the network outputs (<see cref="DetectionResult.Raw"/>) and input.</param>
    /// <param name="cancellationToken">Observed before the forward pass starts, including while waiting for one of the <see cref="MaxConcurrentForwards"/> slots.</param>
    /// <returns>The detections in original-image pixels, best first.</returns>
    /// <exception cref="ObjectDisposedException">The detector was disposed.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled before the forward pass started.</exception>
    public DetectionResult Detect(RgbImage image, PostProcessOptions? options = null, bool keepRaw = false, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(image);
        cancellationToken.ThrowIfCancellationRequested();
        Enter();
        ImageBuffers? buffers = null;
        try
        {
            (int paddedHeight, int paddedWidth) = Preprocessor.PaddedSize(image, Preprocess);
            buffers = RentBuffers();
            int inputLength = checked(3 * paddedHeight * paddedWidth);
            buffers.EnsureInput(inputLength);
            PreprocessedImage input = Preprocessor.RunInto(image, buffers.Input, Preprocess);
            (DetectedObject[] objects, HeadOutputs? raw) = RunNetwork(input, buffers.Input.AsMemory(0, inputLength), buffers, options, keepRaw, cancellationToken);
            return keepRaw
                ? new DetectionResult(objects, input with { Tensor = buffers.Input.AsSpan(0, inputLength).ToArray() }, raw)
                : new DetectionResult(objects, input, null);
        }
        finally
        {
            if (buffers is not null) ReturnBuffers(buffers);
            Exit();
        }
    }

    // The host side of one call: the network input and the outputs as downloaded, grown as needed
    // (a folder of photos has a few padded sizes) and reused by later calls.
    private sealed class ImageBuffers
    {
        private float[][] _outputs = [];
        private int[] _lengths = [];

        public float[] Input { get; private set; } = [];

        public void EnsureInput(int length)
        {
            if (Input.Length < length) Input = new float[length];
        }

        public void EnsureOutputs(IReadOnlyList<(string Name, TensorView Tensor)> outputs)
        {
            if (_outputs.Length != outputs.Count)
            {
                _outputs = new float[outputs.Count][];
                _lengths = new int[outputs.Count];
                for (int i = 0; i < outputs.Count; i++) _outputs[i] = [];
            }
            for (int i = 0; i < outputs.Count; i++)
            {
                int length = checked((int)outputs[i].Tensor.ElementCount);
                if (_outputs[i].Length < length) _outputs[i] = new float[length];
                _lengths[i] = length;
            }
        }

        public Span<float> OutputSpan(int index) => _outputs[index].AsSpan(0, _lengths[index]);

        public ReadOnlyMemory<float> Output(int index) => _outputs[index].AsMemory(0, _lengths[index]);
    }

    private ImageBuffers RentBuffers()
    {
        lock (_gate)
        {
            if (_idleBuffers.Count > 0) return _idleBuffers.Pop();
        }
        return new ImageBuffers();
    }

    private void ReturnBuffers(ImageBuffers buffers)
    {
        lock (_gate)
        {
            if (!_disposed && _idleBuffers.Count < MaxIdleSessions) _idleBuffers.Push(buffers);
        }
    }

    private static (int Cls, int Reg)[] FindLevelOutputs(ModelInfo model, string[] names)
    {
        int Position(string name) => Array.IndexOf(names, name) is var i and >= 0 ? i
            : throw new InvalidOperationException($"model '{model.Name}': the network has no output '{name}' (its outputs: {string.Join(", ", names)})");
        return [.. model.Head.Levels.Select(l => (Position(l.ClassOutput), Position(l.BoxOutput)))];
    }

    // Runs the forward pass in a leased session and post-processes its outputs before returning it
    // (from the session's own buffers when they are host memory, else downloaded into `buffers`).
    private (DetectedObject[] Objects, HeadOutputs? Raw) RunNetwork(PreprocessedImage input, ReadOnlyMemory<float> tensor, ImageBuffers buffers,
        PostProcessOptions? options, bool keepRaw, CancellationToken cancellationToken)
    {
        _forwardSlots.Wait(cancellationToken);
        Arena? arena = null;
        try
        {
            arena = Lease(input.PaddedHeight, input.PaddedWidth);
            IForwardSession session = arena.Session!;
            session.Forward(tensor.Span);
            var outputs = session.Outputs;
            var names = new string[outputs.Count];
            var shapes = new (int C, int H, int W)[outputs.Count];
            var values = new ReadOnlyMemory<float>[outputs.Count];
            bool host = outputs.All(o => o.Tensor.Buffer is HostBuffer);
            if (!host) buffers.EnsureOutputs(outputs);
            for (int i = 0; i < outputs.Count; i++)
            {
                TensorView t = outputs[i].Tensor;
                names[i] = outputs[i].Name;
                shapes[i] = (t.C, t.H, t.W);
                if (host)
                    values[i] = HostBuffer.MemoryOf(t);
                else
                {
                    _backend.Download(t, buffers.OutputSpan(i));
                    values[i] = buffers.Output(i);
                }
            }
            // The head's outputs by name (cls_NAME, reg_NAME per level of Model.Head), in any declaration order.
            (int Cls, int Reg)[] positions = _levelOutputs ??= FindLevelOutputs(Model, names);
            var levels = new HeadLevelOutput[positions.Length];
            for (int l = 0; l < levels.Length; l++)
                levels[l] = new HeadLevelOutput(values[positions[l].Cls], values[positions[l].Reg], shapes[positions[l].Cls].H, shapes[positions[l].Cls].W);
            DetectedObject[] objects = PostProcessor.Run(levels, Model.Head, input.ResizedHeight, input.ResizedWidth, input.ScaleX, input.ScaleY, options);
            HeadOutputs? raw = keepRaw ? new HeadOutputs(names, shapes, [.. values.Select(v => v.ToArray())]) : null;
            return (objects, raw);
        }
        finally
        {
            if (arena is not null) Return(arena);
            _forwardSlots.Release();
        }
    }

    private void Enter()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _inFlight++;
        }
    }

    private void Exit()
    {
        bool release;
        lock (_gate)
        {
            _inFlight--;
            release = _disposed && _inFlight == 0;
        }
        if (release) ReleaseAll();
    }

    // The activation buffers of one forward pass in flight and the session over them for the
    // last size it ran. Each arena grows to the largest padded size it has served, so a folder of
    // photos of a few sizes needs one arena per concurrent forward, not one session per size.
    private sealed class Arena : IDisposable
    {
        private DeviceBuffer?[] _buffers = [];

        public IForwardSession? Session { get; private set; }

        // Makes Session one for height x width, growing buffers that are too small.
        public void Fit(IPreparedNetwork prepared, IBackend backend, int height, int width)
        {
            if (Session is { } s && s.Height == height && s.Width == width) return;
            Session?.Dispose();
            Session = null;
            long[] sizes = prepared.ActivationBufferSizes(1, height, width);
            if (_buffers.Length != sizes.Length)
            {
                foreach (DeviceBuffer? b in _buffers) b?.Dispose();
                _buffers = new DeviceBuffer?[sizes.Length];
            }
            for (int i = 0; i < sizes.Length; i++)
            {
                if (_buffers[i] is { } b && b.Length >= sizes[i]) continue;
                _buffers[i]?.Dispose();
                _buffers[i] = null;
                _buffers[i] = backend.Allocate(sizes[i]);
            }
            Session = prepared.CreateSession(1, height, width, _buffers!);
        }

        public void Dispose()
        {
            Session?.Dispose();
            Session = null;
            foreach (DeviceBuffer? b in _buffers) b?.Dispose();
            _buffers = [];
        }
    }

    // An idle arena (one that last ran this size if any, else the most recent), fitted to this
    // size; only the caller uses it until Return.
    private Arena Lease(int height, int width)
    {
        Arena? arena = null;
        lock (_gate)
        {
            for (LinkedListNode<Arena>? node = _idle.Last; node is not null; node = node.Previous)
            {
                if (node.Value.Session is { } s && s.Height == height && s.Width == width)
                {
                    arena = node.Value;
                    _idle.Remove(node);
                    break;
                }
            }
            if (arena is null && _idle.Last is { } last)
            {
                arena = last.Value;
                _idle.RemoveLast();
            }
        }
        arena ??= new Arena();
        try
        {
            arena.Fit(_prepared, _backend, height, width);
        }
        catch
        {
            arena.Dispose();
            throw;
        }
        return arena;
    }

    private void Return(Arena arena)
    {
        bool keep;
        lock (_gate)
        {
            keep = !_disposed;
            if (keep) _idle.AddLast(arena);
        }
        if (!keep) arena.Dispose();
    }

    private void ReleaseAll()
    {
        Arena[] idle;
        lock (_gate)
        {
            idle = [.. _idle];
            _idle.Clear();
        }
        foreach (Arena arena in idle) arena.Dispose();
        lock (_gate) _idleBuffers.Clear();
        _prepared.Dispose();
        _forwardSlots.Dispose();
    }

    /// <summary>Releases the sessions and prepared weights (not the backend). Calls still in flight finish first.</summary>
    public void Dispose()
    {
        bool release;
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            release = _inFlight == 0;
        }
        if (release) ReleaseAll();
    }
}
