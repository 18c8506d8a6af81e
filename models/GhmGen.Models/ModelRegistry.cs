using GhmGen.Detection;
using GhmGen.Layers;

namespace GhmGen.Models;

/// <summary>What the registry knows of one model without building it.</summary>
/// <param name="Name">The model name of docs/MODEL.md §1, e.g. <c>retinanet-ghm-r50-fpn</c>.</param>
/// <param name="TotalParameters">Learnable parameters.</param>
/// <param name="Parts">Learnable parameters per part (backbone, neck, head).</param>
/// <param name="StateTensorCount">Tensors in the state dict, buffers included.</param>
/// <param name="Create">Builds the network with zeroed weights and mmdetection's GHM bin edges.</param>
/// <param name="MultiplyAccumulates">Convolution MACs of one forward pass for an input height and width.</param>
/// <param name="OutputShapes">Every value's shape for an input height and width.</param>
/// <param name="Prepare">Prepares the weights of a network built by <paramref name="Create"/> on a backend (once; sessions for any size share them).</param>
/// <param name="TrainedKeys">Keys of the parameters that training changes (mmdetection's frozen_stages=1 leaves out the stem and layer1).</param>
/// <param name="TrainingActivationBytes">Activation and activation-gradient bytes of a training session for a batch, height and width.</param>
/// <param name="CreateTrainingSession">Prepares a copy of the weights of a network built by <paramref name="Create"/> for training on a backend, for a batch, height and width (the session owns its weights).</param>
/// <param name="PrepareTraining">Prepares the weights of a network built by <paramref name="Create"/> for training on a backend, once: training sessions for any batch and size share them (<see cref="ITrainingWeights.CreateSession"/>).</param>
public sealed record ModelInfo(
    string Name,
    long TotalParameters,
    IReadOnlyList<(string Part, long Parameters)> Parts,
    int StateTensorCount,
    Func<INetwork> Create,
    Func<int, int, long> MultiplyAccumulates,
    Func<int, int, LayerShape[]> OutputShapes,
    Func<INetwork, GhmGen.Backends.IBackend, IPreparedNetwork> Prepare,
    IReadOnlyList<string> TrainedKeys,
    Func<int, int, int, long> TrainingActivationBytes,
    Func<INetwork, GhmGen.Backends.ITrainingBackend, int, int, int, ITrainingSession> CreateTrainingSession,
    Func<INetwork, GhmGen.Backends.ITrainingBackend, ITrainingWeights> PrepareTraining)
{
    /// <summary>
    /// Where the head's outputs are and what they hold (levels by name, strides, anchors, classes);
    /// the published detectors' RetinaNet head unless set (<see cref="For{TNetwork}"/> finds it from
    /// the network's outputs).
    /// </summary>
    public RetinaHeadLayout Head { get; init; } = RetinaHeadLayout.RetinaNet;

    /// <summary>
    /// The model of any generated RetinaNet-style network: a user registers their own declared
    /// network as <c>ModelInfo.For&lt;MyNetwork&gt;()</c>. The head is found by name (each level's
    /// outputs are <c>cls_NAME</c> and <c>reg_NAME</c>, see <see cref="RetinaHeadLayout"/>); classes
    /// and anchors per cell come from their channels. <see cref="Create"/> sets mmdetection's GHM
    /// bin edges when the network has the GHM loss buffers. A network of another type given to
    /// <see cref="Prepare"/>, <see cref="CreateTrainingSession"/> or <see cref="PrepareTraining"/> is an <see cref="ArgumentException"/>.
    /// </summary>
    /// <param name="anchors">The anchor settings; RetinaNet's (needed unless the head has 9 anchors per cell).</param>
    public static ModelInfo For<TNetwork>(RetinaAnchors? anchors = null) where TNetwork : class, IGeneratedNetwork<TNetwork>, new() =>
        new(TNetwork.ModelName, TNetwork.TotalParameters, TNetwork.Parts, TNetwork.StateTensorCount,
            () => ModelRegistry.WithGhmEdges(new TNetwork()),
            TNetwork.MultiplyAccumulates, TNetwork.OutputShapes,
            (network, backend) => Of<TNetwork>(network).Prepare(backend),
            TNetwork.TrainedKeys, TNetwork.TrainingActivationBytes,
            (network, backend, batch, height, width) => Of<TNetwork>(network).CreateTrainingSession(backend, batch, height, width),
            (network, backend) => Of<TNetwork>(network).PrepareTraining(backend))
        {
            Head = RetinaHeadLayout.FromOutputs(TNetwork.ModelName, TNetwork.OutputsFor, TNetwork.MinInputSize, anchors),
        };

    private static TNetwork Of<TNetwork>(INetwork network) where TNetwork : class, IGeneratedNetwork<TNetwork>, new() =>
        network as TNetwork ?? throw new ArgumentException(
            $"model '{TNetwork.ModelName}' runs {typeof(TNetwork).Name} networks, got {(network is null ? "null" : network.GetType().Name)}", nameof(network));

    /// <summary>Prepares <paramref name="network"/> on <paramref name="backend"/> and plans one input size; the session owns the prepared weights.</summary>
    public IForwardSession CreateSession(INetwork network, GhmGen.Backends.IBackend backend, int batch, int height, int width) =>
        new OwningSession(Prepare(network, backend), batch, height, width);

    private sealed class OwningSession(IPreparedNetwork prepared, int batch, int height, int width) : IForwardSession
    {
        private readonly IForwardSession _session = prepared.CreateSession(batch, height, width);

        public int Batch => _session.Batch;
        public int Height => _session.Height;
        public int Width => _session.Width;
        public GhmGen.Backends.TensorView Input => _session.Input;
        public IReadOnlyList<(string Name, GhmGen.Backends.TensorView Tensor)> Outputs => _session.Outputs;
        public void Forward(ReadOnlySpan<float> input) => _session.Forward(input);

        public void Dispose()
        {
            _session.Dispose();
            prepared.Dispose();
        }
    }
}

/// <summary>The four published RetinaNet-GHM detectors and the small demo detector, by name.</summary>
public static class ModelRegistry
{
    /// <summary>Every registered model: the published ones smallest first, then the demo detector.</summary>
    public static IReadOnlyList<ModelInfo> All { get; } =
    [
        new(RetinaNetGhmR50Fpn.ModelName, RetinaNetGhmR50Fpn.ParameterCounts.Total, RetinaNetGhmR50Fpn.Parts,
            RetinaNetGhmR50Fpn.StateTensorCount, () => WithGhmEdges(new RetinaNetGhmR50Fpn()),
            RetinaNetGhmR50Fpn.MultiplyAccumulates, RetinaNetGhmR50Fpn.OutputShapes,
            (n, b) => ((RetinaNetGhmR50Fpn)n).Prepare(b),
            RetinaNetGhmR50Fpn.TrainedKeys, RetinaNetGhmR50Fpn.TrainingActivationBytes,
            (n, b, batch, h, w) => ((RetinaNetGhmR50Fpn)n).CreateTrainingSession(b, batch, h, w),
            (n, b) => ((RetinaNetGhmR50Fpn)n).PrepareTraining(b)),
        new(RetinaNetGhmR101Fpn.ModelName, RetinaNetGhmR101Fpn.ParameterCounts.Total, RetinaNetGhmR101Fpn.Parts,
            RetinaNetGhmR101Fpn.StateTensorCount, () => WithGhmEdges(new RetinaNetGhmR101Fpn()),
            RetinaNetGhmR101Fpn.MultiplyAccumulates, RetinaNetGhmR101Fpn.OutputShapes,
            (n, b) => ((RetinaNetGhmR101Fpn)n).Prepare(b),
            RetinaNetGhmR101Fpn.TrainedKeys, RetinaNetGhmR101Fpn.TrainingActivationBytes,
            (n, b, batch, h, w) => ((RetinaNetGhmR101Fpn)n).CreateTrainingSession(b, batch, h, w),
            (n, b) => ((RetinaNetGhmR101Fpn)n).PrepareTraining(b)),
        new(RetinaNetGhmX101x32x4dFpn.ModelName, RetinaNetGhmX101x32x4dFpn.ParameterCounts.Total, RetinaNetGhmX101x32x4dFpn.Parts,
            RetinaNetGhmX101x32x4dFpn.StateTensorCount, () => WithGhmEdges(new RetinaNetGhmX101x32x4dFpn()),
            RetinaNetGhmX101x32x4dFpn.MultiplyAccumulates, RetinaNetGhmX101x32x4dFpn.OutputShapes,
            (n, b) => ((RetinaNetGhmX101x32x4dFpn)n).Prepare(b),
            RetinaNetGhmX101x32x4dFpn.TrainedKeys, RetinaNetGhmX101x32x4dFpn.TrainingActivationBytes,
            (n, b, batch, h, w) => ((RetinaNetGhmX101x32x4dFpn)n).CreateTrainingSession(b, batch, h, w),
            (n, b) => ((RetinaNetGhmX101x32x4dFpn)n).PrepareTraining(b)),
        new(RetinaNetGhmX101x64x4dFpn.ModelName, RetinaNetGhmX101x64x4dFpn.ParameterCounts.Total, RetinaNetGhmX101x64x4dFpn.Parts,
            RetinaNetGhmX101x64x4dFpn.StateTensorCount, () => WithGhmEdges(new RetinaNetGhmX101x64x4dFpn()),
            RetinaNetGhmX101x64x4dFpn.MultiplyAccumulates, RetinaNetGhmX101x64x4dFpn.OutputShapes,
            (n, b) => ((RetinaNetGhmX101x64x4dFpn)n).Prepare(b),
            RetinaNetGhmX101x64x4dFpn.TrainedKeys, RetinaNetGhmX101x64x4dFpn.TrainingActivationBytes,
            (n, b, batch, h, w) => ((RetinaNetGhmX101x64x4dFpn)n).CreateTrainingSession(b, batch, h, w),
            (n, b) => ((RetinaNetGhmX101x64x4dFpn)n).PrepareTraining(b)),
        ModelInfo.For<GhmDemoR18Fpn>(GhmDemoR18Fpn.Anchors),
    ];

    /// <summary>A new network as mmdetection creates one: zero weights, GHM bin edges set.</summary>
    internal static INetwork WithGhmEdges(INetwork network)
    {
        if (network.State.Any(t => t.Key == GhmGen.Losses.GhmLossState.ClassificationEdgesKey))
            GhmGen.Losses.GhmLossState.InitializeEdges(network);
        return network;
    }

    /// <summary>The model of that name, or null.</summary>
    public static ModelInfo? Find(string name) => All.FirstOrDefault(m => string.Equals(m.Name, name, StringComparison.Ordinal));

    /// <summary>The model of that name; throws with the list of known names otherwise.</summary>
    public static ModelInfo Get(string name) => Find(name)
        ?? throw new ArgumentException($"unknown model '{name}'; known models: {string.Join(", ", All.Select(m => m.Name))}", nameof(name));
}
