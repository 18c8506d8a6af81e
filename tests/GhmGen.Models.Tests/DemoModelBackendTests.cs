using GhmGen.Backends;
using GhmGen.Backends.Cpu;
using GhmGen.Layers;
using GhmGen.Training;

namespace GhmGen.Models.Tests.Training;

/// <summary>
/// The demo detector trains every layer (stem, max-pool, basic blocks with 32-channel maps, a
/// 36-channel head output, 2x2 P6 and 1x1 P7 maps at 96x128). One forward and backward of it on
/// the SIMD CpuBackend runs op by op through <see cref="OpChecker"/>: every op (forward and
/// backward) also runs on ReferenceBackend (itself checked against finite differences in
/// BackwardOpTests) from the same inputs, and both results must agree, nothing outside the op's
/// outputs may change, and nothing may read a buffer before it was written (buffers start as NaN).
/// <para>
/// Why not compare two whole runs: a ReLU input within float32 rounding of 0 lands on either side
/// in either backend, and its gradient then flows through one run and not the other. At 96x128 with
/// seed 4 (measured while the demo's batch norm was norm_eval) one such element exists (p3 reg_convs.0, image 1, channel 42, pixel (1, 1): float64
/// pre-activation -1.1e-9 against a rounding scale of 1.8e-8; the reference rounds it to +6e-9,
/// the CPU and PyTorch float32 to &lt;= 0), and it moves bbox_head.reg_convs.0's gradient by up to
/// 7% of its rms and everything below by ~1%; against PyTorch autograd in float64 the CPU's
/// gradients of that step agree to ~2e-5 of each tensor's rms. The whole-model gradients, and so
/// the generated plan that both backends share, are checked against PyTorch in DetectorGradientTests
/// (fixture Fixtures/Gradients/ghm-demo-r18-fpn.json from tools/reference/backward_grads.py, whose
/// tolerance accounts for such ReLU inputs).
/// </para>
/// </summary>
public sealed class DemoModelBackendTests
{
    [Theory]
    [InlineData(96, 128, 1)]
    [InlineData(96, 128, 2)]
    [InlineData(64, 96, 2)]     // P5 2x3, P6 1x2, P7 1x1
    [InlineData(160, 192, 2)]   // the demo's training size
    public void Every_op_of_a_demo_training_step_on_CpuBackend_equals_the_reference_op_on_the_same_inputs(int height, int width, int threads)
    {
        ModelInfo model = ModelRegistry.Get("ghm-demo-r18-fpn");
        INetwork network = model.Create();
        DetectorInitialization.Initialize(network, seed: 4);
        // Non-zero last norms, so every conv of every block has a gradient.
        foreach (StateTensor t in network.State.Where(t => t.Role == StateRole.BatchNormWeight))
            for (int i = 0; i < t.Data.Length; i++) t.Data[i] = 0.5f + 0.01f * (i % 7);
        const int batch = 2;
        var random = new Random(9);
        float[] image = [.. Enumerable.Range(0, batch * 3 * height * width).Select(_ => (float)(random.NextDouble() * 2 - 1))];

        using var reference = new ReferenceBackend();
        using var cpu = new CpuBackend(threads: threads);
        var checker = new OpChecker(cpu, reference);
        using (ITrainingWeights weights = model.PrepareTraining(network, checker))
        using (ITrainingSession session = weights.CreateSession(batch, height, width))
        {
            session.Forward(image);
            var seedRandom = new Random(5);
            foreach ((string _, TensorView t) in session.OutputGradients)
                checker.Upload([.. Enumerable.Range(0, (int)t.ElementCount).Select(_ => (float)(seedRandom.NextDouble() * 2 - 1))], t);
            session.Backward();
            Assert.Equal(model.TrainedKeys.Count, session.Gradients.Count);
            foreach (var g in session.Gradients)
                Assert.True(g.Data.All(float.IsFinite), $"{g.Key}: a non-finite gradient");
        }
        // Every op of the step was compared: 58 convs (20 backbone, 8 neck, 6 head x 5 levels, the head's
        // as 6 shared calls of 5 inputs each), each with a weight gradient and, but for the stem, an input
        // gradient; a ReLU backward per unfused ReLU (the residual adds are fused into the convs).
        Assert.Equal("backward-data 57, backward-weights 58, batch-norm 20, batch-norm-backward 20, conv 28, conv-shared 6, max-pool 1, max-pool-backward 1, relu-backward 37, upsample-add 2, upsample-backward 2",
            string.Join(", ", checker.Counts.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key} {kv.Value}")));
        Assert.True(checker.Failures.Count == 0, string.Join("\n", checker.Failures));
    }

    [Fact]
    public void The_checker_reports_a_wrong_op()
    {
        // A CPU result changed after the fact is reported: the comparison above can fail.
        using var reference = new ReferenceBackend();
        using var cpu = new CpuBackend(threads: 1);
        var checker = new OpChecker(cpu, reference) { CorruptCpuOp = "relu-backward" };
        var spec = new ConvSpec(4, 4, 3, 1, 1, 1);
        var random = new Random(3);
        float[] Values(int n) => [.. Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 2 - 1))];
        using IPreparedConv conv = checker.PrepareConv(spec, Values((int)spec.WeightCount), Values(4));
        using DeviceBuffer bx = checker.Allocate(2 * 4 * 5 * 5), by = checker.Allocate(2 * 4 * 5 * 5), bdy = checker.Allocate(2 * 4 * 5 * 5);
        TensorView x = new(bx, 0, 2, 4, 5, 5), y = new(by, 0, 2, 4, 5, 5), dy = new(bdy, 0, 2, 4, 5, 5);
        checker.Upload(Values((int)x.ElementCount), x);
        checker.Conv2d(conv, x, y, null, relu: true);
        checker.Upload(Values((int)dy.ElementCount), dy);
        checker.ReluBackward(y, dy, dy);
        Assert.Single(checker.Failures);
        Assert.Contains("relu-backward", checker.Failures[0]);

        // Reading a buffer that nothing wrote (it starts as NaN) is reported too.
        var fresh = new OpChecker(cpu, reference);
        using DeviceBuffer unwritten = fresh.Allocate(x.ElementCount), bout = fresh.Allocate(x.ElementCount);
        using IPreparedConv conv2 = fresh.PrepareConv(spec, Values((int)spec.WeightCount), Values(4));
        fresh.Conv2d(conv2, new TensorView(unwritten, 0, 2, 4, 5, 5), new TensorView(bout, 0, 2, 4, 5, 5), null, relu: false);
        Assert.Contains(fresh.Failures, f => f.Contains("never written"));
    }

    /// <summary>
    /// Runs each op on the CPU backend and, from a copy of the same inputs, on the reference backend;
    /// records a failure when the results differ by more than <see cref="Tolerance"/> of the result's
    /// rms, when the CPU op changes anything outside its outputs, or when a result is not finite.
    /// The run continues with the CPU's results. Buffers are host buffers that both backends read,
    /// allocated full of NaN.
    /// </summary>
    private sealed class OpChecker(CpuBackend cpu, ReferenceBackend reference) : ITrainingBackend
    {
        // Observed: at most 4e-5 (32-channel Winograd backward-data); a wrong tap, pixel or channel is ~1e-2 .. 1.
        private const double Tolerance = 2e-4;

        private int op;

        public List<string> Failures { get; } = [];

        public Dictionary<string, int> Counts { get; } = [];

        /// <summary>Test hook: the op kind whose CPU result is changed after it ran.</summary>
        public string? CorruptCpuOp { get; init; }

        public string Name => "cpu-checked";

        public DeviceBuffer Allocate(long elements)
        {
            DeviceBuffer buffer = cpu.Allocate(elements);
            ((HostBuffer)buffer).Array.AsSpan().Fill(float.NaN);
            return buffer;
        }

        public void Upload(ReadOnlySpan<float> source, TensorView destination) => cpu.Upload(source, destination);

        public void Download(TensorView source, Span<float> destination) => cpu.Download(source, destination);

        public IPreparedConv PrepareConv(ConvSpec spec, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias) =>
            new Pair(cpu.PrepareConv(spec, weight, bias), reference.PrepareConv(spec, weight, bias));

        public void UpdateConv(IPreparedConv conv, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias)
        {
            cpu.UpdateConv(((Pair)conv).Cpu, weight, bias);
            reference.UpdateConv(((Pair)conv).Reference, weight, bias);
        }

        public void Conv2d(IPreparedConv conv, TensorView x, TensorView y, TensorView? residual, bool relu) =>
            Check("conv", $"{conv.Spec} x {x.ShapeText}", [y], residual is { } r ? [x, r] : [x],
                () => cpu.Conv2d(((Pair)conv).Cpu, x, y, residual, relu), () => reference.Conv2d(((Pair)conv).Reference, x, y, residual, relu));

        public void Conv2dShared(IPreparedConv conv, ReadOnlySpan<TensorView> x, ReadOnlySpan<TensorView> y, bool relu)
        {
            TensorView[] xs = x.ToArray(), ys = y.ToArray();
            Check("conv-shared", $"{conv.Spec} x {xs.Length} inputs from {xs[0].ShapeText}", ys, xs,
                () => cpu.Conv2dShared(((Pair)conv).Cpu, xs, ys, relu), () => ((IBackend)reference).Conv2dShared(((Pair)conv).Reference, xs, ys, relu));
        }

        public void MaxPool2d(TensorView x, TensorView y, int kernel, int stride, int padding) =>
            Check("max-pool", x.ShapeText, [y], [x], () => cpu.MaxPool2d(x, y, kernel, stride, padding), () => reference.MaxPool2d(x, y, kernel, stride, padding));

        public void UpsampleNearestAdd(TensorView upper, TensorView lower) =>
            Check("upsample-add", upper.ShapeText, [lower], [upper], () => cpu.UpsampleNearestAdd(upper, lower), () => reference.UpsampleNearestAdd(upper, lower));

        public void Add(TensorView a, TensorView b, TensorView y, bool relu) =>
            Check("add", a.ShapeText, [y], [a, b], () => cpu.Add(a, b, y, relu), () => reference.Add(a, b, y, relu));

        public void Copy(TensorView source, TensorView destination) =>
            Check("copy", source.ShapeText, [destination], [source], () => cpu.Copy(source, destination), () => reference.Copy(source, destination));

        public void Relu(TensorView x, TensorView y) =>
            Check("relu", x.ShapeText, [y], [x], () => cpu.Relu(x, y), () => reference.Relu(x, y));

        public void Sigmoid(TensorView x, TensorView y) =>
            Check("sigmoid", x.ShapeText, [y], [x], () => cpu.Sigmoid(x, y), () => reference.Sigmoid(x, y));

        public void Conv2dBackwardData(IPreparedConv conv, TensorView dy, TensorView dx, bool accumulate) =>
            Check("backward-data", $"{conv.Spec} dy {dy.ShapeText} accumulate {accumulate}", [dx], [dy],
                () => cpu.Conv2dBackwardData(((Pair)conv).Cpu, dy, dx, accumulate), () => reference.Conv2dBackwardData(((Pair)conv).Reference, dy, dx, accumulate));

        public void Conv2dBackwardWeights(ConvSpec spec, TensorView x, TensorView dy, TensorView dWeight, TensorView? dBias, bool accumulate) =>
            Check("backward-weights", $"{spec} x {x.ShapeText} accumulate {accumulate}", dBias is { } b ? [dWeight, b] : [dWeight], [x, dy],
                () => cpu.Conv2dBackwardWeights(spec, x, dy, dWeight, dBias, accumulate), () => reference.Conv2dBackwardWeights(spec, x, dy, dWeight, dBias, accumulate));

        public void ReluBackward(TensorView y, TensorView dy, TensorView dx) =>
            Check("relu-backward", y.ShapeText, [dx], [y, dy], () => cpu.ReluBackward(y, dy, dx), () => reference.ReluBackward(y, dy, dx));

        public void BatchNormTraining(TensorView x, TensorView weight, TensorView bias, TensorView? residual, bool relu, TensorView y,
            TensorView mean, TensorView variance, double epsilon) =>
            Check("batch-norm", $"{x.ShapeText} relu {relu}", [y, mean, variance], residual is { } r ? [x, weight, bias, r] : [x, weight, bias],
                () => cpu.BatchNormTraining(x, weight, bias, residual, relu, y, mean, variance, epsilon),
                () => reference.BatchNormTraining(x, weight, bias, residual, relu, y, mean, variance, epsilon));

        public void BatchNormTrainingBackward(TensorView x, TensorView dy, TensorView weight, TensorView mean, TensorView variance, double epsilon,
            TensorView? dx, TensorView dWeight, TensorView dBias, bool accumulate) =>
            Check("batch-norm-backward", $"{x.ShapeText} accumulate {accumulate}", dx is { } d ? [d, dWeight, dBias] : [dWeight, dBias], [x, dy, weight, mean, variance],
                () => cpu.BatchNormTrainingBackward(x, dy, weight, mean, variance, epsilon, dx, dWeight, dBias, accumulate),
                () => reference.BatchNormTrainingBackward(x, dy, weight, mean, variance, epsilon, dx, dWeight, dBias, accumulate));

        public void MaxPool2dBackward(TensorView x, TensorView dy, TensorView dx, int kernel, int stride, int padding, bool accumulate) =>
            Check("max-pool-backward", $"{x.ShapeText} accumulate {accumulate}", [dx], [x, dy],
                () => cpu.MaxPool2dBackward(x, dy, dx, kernel, stride, padding, accumulate), () => reference.MaxPool2dBackward(x, dy, dx, kernel, stride, padding, accumulate));

        public void UpsampleNearestBackward(TensorView dLower, TensorView dUpper, bool accumulate) =>
            Check("upsample-backward", $"{dLower.ShapeText} accumulate {accumulate}", [dUpper], [dLower],
                () => cpu.UpsampleNearestBackward(dLower, dUpper, accumulate), () => reference.UpsampleNearestBackward(dLower, dUpper, accumulate));

        public void Zero(TensorView t) => Check("zero", t.ShapeText, [t], [], () => cpu.Zero(t), () => reference.Zero(t));

        public void Dispose() { }

        private void Check(string kind, string what, TensorView[] outputs, TensorView[] inputs, Action runCpu, Action runReference)
        {
            op++;
            Counts[kind] = Counts.GetValueOrDefault(kind) + 1;
            string where = $"op {op} {kind} {what}";
            HostBuffer[] buffers = [.. inputs.Concat(outputs).Select(v => (HostBuffer)v.Buffer).Distinct()];
            float[][] before = [.. buffers.Select(b => (float[])b.Array.Clone())];
            foreach (TensorView input in inputs)
                if (!IsFinite(Values(input))) Failures.Add($"{where}: reads an input that holds NaN (never written) or a non-finite value");
            runCpu();
            if (kind == CorruptCpuOp) Values(outputs[0])[0] += 1f;
            float[][] cpuAfter = [.. buffers.Select(b => (float[])b.Array.Clone())];
            for (int i = 0; i < buffers.Length; i++) before[i].CopyTo(buffers[i].Array, 0);
            runReference();
            for (int i = 0; i < buffers.Length; i++)
            {
                float[] got = cpuAfter[i], expected = buffers[i].Array;
                var inOutput = new bool[got.Length];
                foreach (TensorView o in outputs.Where(o => o.Buffer == buffers[i]))
                    inOutput.AsSpan((int)o.Offset, (int)o.ElementCount).Fill(true);
                int outside = 0;
                for (int j = 0; j < got.Length; j++)
                    if (!inOutput[j] && BitConverter.SingleToInt32Bits(got[j]) != BitConverter.SingleToInt32Bits(before[i][j])) outside++;
                if (outside > 0) Failures.Add($"{where}: the CPU op changed {outside} elements outside its outputs");
            }
            foreach (TensorView o in outputs)
            {
                float[] got = cpuAfter[Array.IndexOf(buffers, (HostBuffer)o.Buffer)];
                ReadOnlySpan<float> expected = Values(o), actual = got.AsSpan((int)o.Offset, (int)o.ElementCount);
                double sumSquares = 0, worst = 0;
                int at = -1;
                for (int j = 0; j < expected.Length; j++)
                {
                    sumSquares += (double)expected[j] * expected[j];
                    double d = Math.Abs((double)expected[j] - actual[j]);
                    if (!(d <= worst)) (worst, at) = (double.IsNaN(d) ? double.PositiveInfinity : d, j);
                }
                double rms = Math.Sqrt(sumSquares / Math.Max(1, expected.Length));
                if (!(worst <= Tolerance * rms) && worst > 0)
                    Failures.Add($"{where} -> {o.ShapeText}: [{at}] reference {expected[at]:G6}, cpu {actual[at]:G6} (rms {rms:G3}, |d| {worst:G3})");
            }
            // Continue with the CPU's results.
            for (int i = 0; i < buffers.Length; i++) cpuAfter[i].CopyTo(buffers[i].Array, 0);
        }

        private static bool IsFinite(ReadOnlySpan<float> values)
        {
            foreach (float v in values)
                if (!float.IsFinite(v)) return false;
            return true;
        }

        private static Span<float> Values(TensorView t) => ((HostBuffer)t.Buffer).Array.AsSpan((int)t.Offset, (int)t.ElementCount);
    }

    private sealed class Pair(IPreparedConv cpu, IPreparedConv reference) : IPreparedConv
    {
        public IPreparedConv Cpu { get; } = cpu;

        public IPreparedConv Reference { get; } = reference;

        public ConvSpec Spec => Cpu.Spec;

        public void Dispose()
        {
            Cpu.Dispose();
            Reference.Dispose();
        }
    }
}
