using GhmGen.Backends;
using GhmGen.Backends.Cpu;
using GhmGen.Layers;
using GhmGen.Models;

namespace GhmGen.Bench.SideBySide;

/// <summary>GhmGen's generated forward pass on <see cref="CpuBackend"/> with seeded weights and input.</summary>
internal sealed class GhmGenRunner : IFrameworkRunner
{
    private readonly CpuBackend _backend;
    private readonly IPreparedNetwork _prepared;
    private readonly IForwardSession _session;
    private readonly float[] _input;
    private readonly float[] _lastOutputSink;

    /// <summary>Builds the network, fills the seeded weights and prepares a session for <paramref name="batch"/> images.</summary>
    public GhmGenRunner(string modelName, int batch, int height, int width, int threads)
    {
        ModelInfo info = ModelRegistry.Get(modelName);
        info.OutputShapes(height, width); // validates the size for this model
        _input = new float[(long)batch * 3 * height * width];
        SeededWeights.FillInput(_input);
        _backend = new CpuBackend(threads) { WinogradWeightsPerCall = true };
        // As ghm bench does: the network's float copy is released (a decommitting collection)
        // before the activations are touched, so it does not count with them in the peak.
        _prepared = Prepare(info, _backend);
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        _session = _prepared.CreateSession(batch, height, width);
        _lastOutputSink = new float[_session.Outputs[^1].Tensor.ElementCount];
    }

    // The seeded network, prepared; it is unreachable once this returns.
    private static IPreparedNetwork Prepare(ModelInfo info, CpuBackend backend)
    {
        INetwork network = info.Create();
        SeededWeights.Fill(network);
        return info.Prepare(network, backend);
    }

    public string Framework => "ghmgen";

    public void Forward()
    {
        _session.Forward(_input);
        // As ghm bench does: reading an output back is the completion point (microseconds on the CPU).
        _backend.Download(_session.Outputs[^1].Tensor, _lastOutputSink);
    }

    public float[] HeadOutputs()
    {
        var byName = new Dictionary<string, TensorView>(StringComparer.Ordinal);
        foreach ((string name, TensorView tensor) in _session.Outputs) byName[name] = tensor;
        var parts = new List<float[]>();
        foreach (string name in SideBySideWorker.HeadOutputNames)
        {
            if (!byName.TryGetValue(name, out TensorView tensor))
                throw new InvalidOperationException($"GhmGen session has no output '{name}'; it has {string.Join(", ", byName.Keys)}");
            var values = new float[tensor.ElementCount];
            _backend.Download(tensor, values);
            parts.Add(values);
        }
        return parts.SelectMany(p => p).ToArray();
    }

    public void Dispose()
    {
        _session.Dispose();
        _prepared.Dispose();
        _backend.Dispose();
    }
}
