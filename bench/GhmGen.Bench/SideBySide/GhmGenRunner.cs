using GhmGen.Backends;
using GhmGen.Backends.Cpu;
using GhmGen.Layers;
using GhmGen.Models;

namespace GhmGen.Bench.SideBySide;

/// <summary>GhmGen's generated forward pass on <see cref="CpuBackend"/> with seeded weights and input.</summary>
internal sealed class GhmGenRunner : IFrameworkRunner
{
    private readonly CpuBackend _backend;
    private readonly IForwardSession _session;
    private readonly float[] _input;
    private readonly float[] _lastOutputSink;

    /// <summary>Builds the network, fills the seeded weights and prepares a batch-1 session.</summary>
    public GhmGenRunner(string modelName, int height, int width, int threads)
    {
        ModelInfo info = ModelRegistry.Get(modelName);
        info.OutputShapes(height, width); // validates the size for this model
        INetwork network = info.Create();
        SeededWeights.Fill(network);
        _input = new float[3 * height * width];
        SeededWeights.FillInput(_input);
        _backend = new CpuBackend(threads) { WinogradWeightsPerCall = true };
        _session = info.CreateSession(network, _backend, 1, height, width);
        _lastOutputSink = new float[_session.Outputs[^1].Tensor.ElementCount];
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
        _backend.Dispose();
    }
}
