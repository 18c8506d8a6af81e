using GhmGen.Layers;
using Microsoft.ML.OnnxRuntime;

namespace GhmGen.Bench.SideBySide;

/// <summary>
/// ONNX Runtime (CPU execution provider) on a graph exported by tools/reference/export_onnx.py
/// (same seeded weights); intra-op threads as given, sequential execution, all graph optimizations.
/// </summary>
internal sealed class OnnxRuntimeRunner : IFrameworkRunner
{
    private readonly SessionOptions _options;
    private readonly InferenceSession _session;
    private readonly RunOptions _runOptions = new();
    private readonly OrtValue _input;
    private readonly float[] _inputData;
    private IDisposableReadOnlyCollection<OrtValue>? _lastOutputs;

    /// <summary>Loads <paramref name="onnxPath"/> and binds the seeded Bx3xHxW input (B = <paramref name="batch"/>).</summary>
    public OnnxRuntimeRunner(string onnxPath, int batch, int height, int width, int threads)
    {
        if (!File.Exists(onnxPath))
            throw new ArgumentException($"--onnx '{onnxPath}' does not exist (export it with tools/reference/export_onnx.py)", nameof(onnxPath));
        _options = new SessionOptions
        {
            IntraOpNumThreads = threads,
            InterOpNumThreads = 1,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
        };
        _session = new InferenceSession(onnxPath, _options);
        long[] inputShape = [batch, 3, height, width];
        IReadOnlyList<int> declared = _session.InputMetadata["input"].Dimensions;
        for (int d = 0; d < 4; d++)
        {
            if (declared[d] > 0 && declared[d] != inputShape[d])
                throw new ArgumentException(
                    $"--onnx '{onnxPath}' expects input [{string.Join(",", declared)}], not [{string.Join(",", inputShape)}] (re-export at --size {height}x{width} --batch {batch})",
                    nameof(onnxPath));
        }
        _inputData = new float[batch * 3 * height * width];
        SeededWeights.FillInput(_inputData);
        _input = OrtValue.CreateTensorValueFromMemory(_inputData, inputShape);
    }

    public string Framework => "onnxruntime";

    public void Forward()
    {
        _lastOutputs?.Dispose();
        _lastOutputs = _session.Run(_runOptions, ["input"], [_input], SideBySideWorker.HeadOutputNames);
    }

    public float[] HeadOutputs()
    {
        if (_lastOutputs is null) throw new InvalidOperationException("HeadOutputs() before any Forward()");
        return _lastOutputs.SelectMany(v => v.GetTensorDataAsSpan<float>().ToArray()).ToArray();
    }

    public void Dispose()
    {
        _lastOutputs?.Dispose();
        _input.Dispose();
        _session.Dispose();
        _runOptions.Dispose();
        _options.Dispose();
    }
}
