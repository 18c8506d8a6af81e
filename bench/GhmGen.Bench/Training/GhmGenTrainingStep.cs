using System.Diagnostics;
using GhmGen.Backends;
using GhmGen.Backends.Cpu;
using GhmGen.Layers;
using GhmGen.Models;
using GhmGen.Training;

namespace GhmGen.Bench.Training;

/// <summary>
/// The training step of bench/side_by_side_train.py in GhmGen: the generated <see cref="ITrainingSession"/> of a
/// seeded network (<see cref="SeededWeights.Fill"/>; stem and layer1 frozen, BN folded = eval mode) on
/// <see cref="CpuBackend"/>, the seeded Bx3xHxW input (<see cref="SeededWeights.FillInput"/> over the whole batch),
/// and per head map NAME with n elements G = <c>SeededWeights.FillUniform("bench.train.G." + NAME, -1/n, 1/n)</c>.
/// One <see cref="Step"/>: forward; download the ten maps and L = sum over them of sum(G * map); upload G as the
/// output gradients (dL/dmap = G); backward; torch's SGD (lr 0.01, momentum 0.9, weight decay 1e-4, no clipping)
/// over the trained parameters, or with <see cref="TrainingOptimizerKind.AdamW"/> torch's AdamW (lr 0.01, weight
/// decay 1e-4, default betas and eps); <see cref="ITrainingSession.UpdateWeights"/>. Each phase is timed separately.
/// </summary>
internal sealed class GhmGenTrainingStep : IDisposable
{
    public const double LearningRate = 0.01, Momentum = 0.9, WeightDecay = 1e-4;

    /// <summary>The head maps in the order of the loss sum and of the dump (cls_p3..cls_p7, reg_p3..reg_p7).</summary>
    public static readonly string[] HeadOutputNames =
        ["cls_p3", "cls_p4", "cls_p5", "cls_p6", "cls_p7", "reg_p3", "reg_p4", "reg_p5", "reg_p6", "reg_p7"];

    private readonly ITrainingBackend _backend;
    private readonly ITrainingSession _session;
    private readonly float[] _input;
    private readonly TensorView[] _outputs;        // HeadOutputNames order
    private readonly TensorView[] _outputGradients; // HeadOutputNames order
    private readonly float[][] _g;                  // G per map
    private readonly TrainingOptimizer _optimizer;
    private readonly ParameterWithGradient[] _pairs;

    /// <summary>Builds and seeds the network, makes the training session and the optimiser.</summary>
    /// <remarks>
    /// <paramref name="wrap"/>, when given, wraps the CPU backend the session runs on (train-profile's <see cref="ProfilingBackend"/>);
    /// <paramref name="optimizer"/> picks the update (SGD, as side_by_side_train.py, or AdamW).
    /// </remarks>
    public GhmGenTrainingStep(string modelName, int batch, int height, int width, int threads, Func<CpuBackend, ITrainingBackend>? wrap = null,
        TrainingOptimizerKind optimizer = TrainingOptimizerKind.Sgd)
    {
        ModelInfo info = ModelRegistry.Get(modelName);
        info.OutputShapes(height, width); // validates the size for this model
        INetwork network = info.Create();
        SeededWeights.Fill(network);
        _input = new float[(long)batch * 3 * height * width];
        SeededWeights.FillInput(_input);
        // As ghm train runs it: Winograd weights transformed per call (GHM_WINOGRAD=stored keeps the transformed forms, for comparison).
        var cpu = new CpuBackend(threads) { WinogradWeightsPerCall = Environment.GetEnvironmentVariable("GHM_WINOGRAD") != "stored" };
        _backend = wrap is null ? cpu : wrap(cpu);
        _session = info.CreateTrainingSession(network, _backend, batch, height, width);

        var outputs = _session.Outputs.ToDictionary(o => o.Name, o => o.Tensor, StringComparer.Ordinal);
        var gradients = _session.OutputGradients.ToDictionary(o => o.Name, o => o.Tensor, StringComparer.Ordinal);
        _outputs = new TensorView[HeadOutputNames.Length];
        _outputGradients = new TensorView[HeadOutputNames.Length];
        _g = new float[HeadOutputNames.Length][];
        for (int i = 0; i < HeadOutputNames.Length; i++)
        {
            string name = HeadOutputNames[i];
            if (!outputs.TryGetValue(name, out TensorView output) || !gradients.TryGetValue(name, out TensorView gradient))
                throw new InvalidOperationException($"the training session of {modelName} has no output '{name}'; it has {string.Join(", ", outputs.Keys)}");
            _outputs[i] = output;
            _outputGradients[i] = gradient;
            long n = output.ElementCount;
            _g[i] = new float[n];
            SeededWeights.FillUniform($"bench.train.G.{name}", _g[i], -1.0 / n, 1.0 / n);
        }

        _pairs = [.. _session.Gradients.Select(g => new ParameterWithGradient(g.Parameter, g.Data))];
        _optimizer = optimizer == TrainingOptimizerKind.AdamW
            ? new AdamWOptimizer(_pairs.Select(p => p.Parameter), LearningRate, WeightDecay)
            : new SgdOptimizer(_pairs.Select(p => p.Parameter), LearningRate, Momentum, WeightDecay);
        _optimizer.MaxDegreeOfParallelism = threads;
        TrainedParameterCount = _pairs.Length;
        ActivationBytes = info.TrainingActivationBytes(batch, height, width);
        TrainedValueCount = _pairs.Sum(p => p.Parameter.ElementCount);
        NetworkStateValues = network.State.Sum(t => t.ElementCount);
        FrozenParameterCount = network.State.Count(t => t.Kind == StateKind.Parameter) - _pairs.Length;
    }

    /// <summary>Trained parameter tensors (162 for R-50).</summary>
    public int TrainedParameterCount { get; }

    /// <summary>The training session's activation and activation-gradient buffers, in bytes (ModelInfo.TrainingActivationBytes).</summary>
    public long ActivationBytes { get; }

    /// <summary>Values of every state tensor of the network (parameters and buffers, host copies).</summary>
    public long NetworkStateValues { get; }

    /// <summary>Trained parameter values.</summary>
    public long TrainedValueCount { get; }

    /// <summary>Frozen parameter tensors (stem and layer1).</summary>
    public int FrozenParameterCount { get; }

    /// <summary>The training session (for the BenchmarkDotNet suite).</summary>
    public ITrainingSession Session => _session;

    /// <summary>One full step; returns its loss L = sum(G * map) of this step's forward (before the update) and the phase times.</summary>
    public StepResult Step()
    {
        long t0 = Stopwatch.GetTimestamp();
        _session.Forward(_input);
        long t1 = Stopwatch.GetTimestamp();
        double loss = LossOfOutputs();
        long t2 = Stopwatch.GetTimestamp();
        UploadOutputGradients();
        long t3 = Stopwatch.GetTimestamp();
        _session.Backward();
        long t4 = Stopwatch.GetTimestamp();
        _optimizer.Step(_pairs);
        long t5 = Stopwatch.GetTimestamp();
        _session.UpdateWeights();
        long t6 = Stopwatch.GetTimestamp();
        return new StepResult(loss, Ms(t0, t1), Ms(t1, t2), Ms(t2, t3), Ms(t3, t4), Ms(t4, t5), Ms(t5, t6));
    }

    /// <summary>Forward, output gradients (G) uploaded, backward: the part the BenchmarkDotNet suite times; no update.</summary>
    public void ForwardBackward()
    {
        _session.Forward(_input);
        UploadOutputGradients();
        _session.Backward();
    }

    /// <summary>Forward only (the training session's forward, which keeps what backward reads).</summary>
    public void Forward() => _session.Forward(_input);

    /// <summary>sum |G * map| over the last step's maps: the scale of the driver's loss guard.</summary>
    public double LossAbs()
    {
        double total = 0;
        for (int i = 0; i < _outputs.Length; i++)
        {
            ReadOnlySpan<float> m = Map(i);
            float[] g = _g[i];
            for (int j = 0; j < m.Length; j++) total += Math.Abs((double)g[j] * m[j]);
        }
        return total;
    }

    /// <summary>
    /// Writes the last forward's ten maps, concatenated in <see cref="HeadOutputNames"/> order, as float32 LE straight
    /// from the backend's buffers (no 41 MB copy that would raise the worker's peak RSS); returns the float count.
    /// </summary>
    public long WriteLastMaps(Stream stream)
    {
        long floats = 0;
        for (int i = 0; i < _outputs.Length; i++)
        {
            ReadOnlySpan<float> map = Map(i);
            stream.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(map));
            floats += map.Length;
        }
        return floats;
    }

    // The loss reads the maps where the CPU backend keeps them (as ghm train's Trainer does): no host copy.
    private ReadOnlySpan<float> Map(int i) => HostBuffer.MemoryOf(_outputs[i]).Span;

    private double LossOfOutputs()
    {
        double total = 0;
        for (int i = 0; i < _outputs.Length; i++)
        {
            ReadOnlySpan<float> m = Map(i);
            float[] g = _g[i];
            double sum = 0;
            for (int j = 0; j < m.Length; j++) sum += (double)g[j] * m[j];
            total += sum;
        }
        return total;
    }

    private void UploadOutputGradients()
    {
        // Backward uses the output gradients as scratch, so they are written again every step (as the peers' autograd seeds them).
        for (int i = 0; i < _outputGradients.Length; i++) _backend.Upload(_g[i], _outputGradients[i]);
    }

    private static double Ms(long from, long to) => Stopwatch.GetElapsedTime(from, to).TotalMilliseconds;

    public void Dispose()
    {
        _session.Dispose();
        _backend.Dispose();
    }

    /// <summary>A step's loss and phase times (ms): forward; download of the maps + loss; upload of G; backward (with the gradient download and BN unfolding); SGD; UpdateWeights (refold + hand to the backend).</summary>
    public readonly record struct StepResult(double Loss, double ForwardMs, double OutputsMs, double UploadMs, double BackwardMs, double SgdMs, double UpdateMs)
    {
        public double TotalMs => ForwardMs + OutputsMs + UploadMs + BackwardMs + SgdMs + UpdateMs;
    }
}
