using GhmGen.Backends;
using GhmGen.Layers;

namespace GhmGen.Models.Tests.Training;

/// <summary>
/// The generated training session: its Backward against float64 finite differences of
/// L = sum(seed * outputs) for every trained parameter of TrainNet (on the reference backend),
/// gradients for exactly the trained keys, frozen state and running statistics untouched,
/// UpdateWeights, and R-50's Backward at a small input.
/// </summary>
public class TrainingSessionTests
{
    private const int Batch = 2, Height = 20, Width = 24;

    private static readonly string[] ExpectedTrainedKeys =
    [
        "c1.weight", "c1.bias", "c1_bn.weight", "c1_bn.bias",
        "stage.0.conv.weight", "stage.0.bn.weight", "stage.0.bn.bias",
        "stage.0.proj.weight", "stage.0.proj_bn.weight", "stage.0.proj_bn.bias",
        "stage.1.conv.weight",
        "head.conv.weight", "head.conv.bias", "head.cls.weight", "head.cls.bias", "head.box.weight", "head.box.bias",
    ];

    [Fact]
    public void TrainNet_Backward_EqualsFloat64FiniteDifferences()
    {
        (TrainNet net, float[] image, float[][] seeds) = Setup(seed: 3);
        using var backend = new ReferenceBackend();
        using TrainNet.TrainingSession session = net.CreateTrainingSession(backend, Batch, Height, Width);
        session.Forward(image);
        for (int o = 0; o < seeds.Length; o++) backend.Upload(seeds[o], session.OutputGradients[o].Tensor);
        session.Backward();

        var reference = new Float64Net(net);
        var x = new Float64Net.T(Batch, 3, Height, Width);
        for (int i = 0; i < image.Length; i++) x.Data[i] = image[i];
        double[][] seeds64 = seeds.Select(s => s.Select(v => (double)v).ToArray()).ToArray();
        var random = new Random(17);
        const double h = 1e-5;
        int checkedElements = 0;
        foreach (ParameterGradient g in session.Gradients)
        {
            double[] p = reference[g.Key];
            double scale = Math.Sqrt(g.Data.Select(v => (double)v * v).Average()) + 1e-6;
            IEnumerable<int> sample = new[] { 0, p.Length - 1 }.Concat(Enumerable.Range(0, 6).Select(_ => random.Next(p.Length))).Distinct();
            foreach (int i in sample)
            {
                double keep = p[i];
                p[i] = keep + h;
                double plus = reference.Loss(x, seeds64);
                p[i] = keep - h;
                double minus = reference.Loss(x, seeds64);
                p[i] = keep;
                double fd = (plus - minus) / (2 * h);
                Assert.True(Math.Abs(g.Data[i] - fd) <= 1e-4 * Math.Max(scale, Math.Abs(fd)),
                    $"{g.Key}[{i}]: backward {g.Data[i]:G6}, finite difference {fd:G6} (gradient rms {scale:G3})");
                checkedElements++;
            }
        }
        Assert.True(checkedElements > 100);
    }

    [Fact]
    public void TrainNet_Forward_EqualsReferenceForwardAndInferenceSession()
    {
        (TrainNet net, float[] image, _) = Setup(seed: 4);
        using var backend = new ReferenceBackend();
        using TrainNet.TrainingSession training = net.CreateTrainingSession(backend, Batch, Height, Width);
        using TrainNet.Session inference = net.CreateSession(backend, Batch, Height, Width);
        training.Forward(image);
        inference.Forward(image);
        var x = new Float64Net.T(Batch, 3, Height, Width);
        for (int i = 0; i < image.Length; i++) x.Data[i] = image[i];
        Float64Net.T[] want = new Float64Net(net).Forward(x);
        Assert.Equal(inference.Outputs.Select(o => o.Name), training.Outputs.Select(o => o.Name));
        for (int o = 0; o < want.Length; o++)
        {
            float[] a = Download(backend, training.Outputs[o].Tensor), b = Download(backend, inference.Outputs[o].Tensor);
            Assert.Equal(want[o].Data.Length, a.Length);
            Assert.Equal(b, a); // same calls, same weights: the same floats
            for (int i = 0; i < a.Length; i++)
                Assert.True(Math.Abs(a[i] - want[o].Data[i]) <= 1e-4 * (1 + Math.Abs(want[o].Data[i])), $"{training.Outputs[o].Name}[{i}]: {a[i]} vs {want[o].Data[i]}");
        }
    }

    [Fact]
    public void TrainNet_GradientsForExactlyTheTrainedKeys_FrozenStateAndRunningStatisticsUntouched()
    {
        (TrainNet net, float[] image, float[][] seeds) = Setup(seed: 5);
        Assert.Equal(ExpectedTrainedKeys, TrainNet.TrainedKeys);
        Assert.Equal(TrainNet.TrainedParameterCount, net.State.Where(t => ExpectedTrainedKeys.Contains(t.Key)).Sum(t => t.ElementCount));
        Dictionary<string, float[]> frozen = net.State
            .Where(t => t.ElementType == StateElementType.Float32 && !ExpectedTrainedKeys.Contains(t.Key))
            .ToDictionary(t => t.Key, t => t.Data.ToArray());
        Assert.Contains("stem.conv.weight", frozen.Keys);
        Assert.Contains("stage.1.bn.weight", frozen.Keys);
        Assert.Contains("extra.weight", frozen.Keys);
        Assert.Contains("c1_bn.running_var", frozen.Keys);

        using var backend = new ReferenceBackend();
        using TrainNet.TrainingSession session = net.CreateTrainingSession(backend, Batch, Height, Width);
        for (int step = 0; step < 2; step++)
        {
            session.Forward(image);
            for (int o = 0; o < seeds.Length; o++) backend.Upload(seeds[o], session.OutputGradients[o].Tensor);
            session.Backward();
            foreach (ParameterGradient g in session.Gradients)
                for (int i = 0; i < g.Data.Length; i++) g.Parameter.Data[i] -= 0.01f * g.Data[i];
            session.UpdateWeights();
        }

        Assert.Equal(ExpectedTrainedKeys, session.Gradients.Select(g => g.Key));
        foreach (ParameterGradient g in session.Gradients)
        {
            Assert.Equal(g.Parameter.Shape, g.Shape);
            Assert.Equal(g.Parameter.ElementCount, g.Data.Length);
            Assert.Contains(g.Data, v => v != 0);
        }
        foreach ((string key, float[] before) in frozen)
            Assert.Equal(before, net.State.Single(t => t.Key == key).Data);
    }

    [Fact]
    public void TrainNet_UpdateWeights_TakesTheNewHostWeights()
    {
        (TrainNet net, float[] image, _) = Setup(seed: 6);
        using var backend = new ReferenceBackend();
        using TrainNet.TrainingSession session = net.CreateTrainingSession(backend, Batch, Height, Width);
        session.Forward(image);
        foreach (StateTensor t in net.State.Where(t => TrainNet.TrainedKeys.Contains(t.Key)))
            for (int i = 0; i < t.Data.Length; i++) t.Data[i] *= 0.9f;
        session.UpdateWeights();
        session.Forward(image);
        using TrainNet.Session fresh = net.CreateSession(backend, Batch, Height, Width);
        fresh.Forward(image);
        for (int o = 0; o < fresh.Outputs.Count; o++)
            Assert.Equal(Download(backend, fresh.Outputs[o].Tensor), Download(backend, session.Outputs[o].Tensor));
    }

    [Fact]
    public void TrainNet_BackwardWithoutForward_Throws()
    {
        (TrainNet net, float[] image, _) = Setup(seed: 7);
        using var backend = new ReferenceBackend();
        using TrainNet.TrainingSession session = net.CreateTrainingSession(backend, Batch, Height, Width);
        Assert.Throws<InvalidOperationException>(session.Backward);
        session.Forward(image);
        session.Backward();
        Assert.Throws<InvalidOperationException>(session.Backward); // the reverse pass reused the forward's buffers
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TrainNet_BackwardWithASink_SignalsEachGradientOnceWhenFinal_AndGivesTheSameBits(bool cpu)
    {
        (TrainNet net, float[] image, float[][] seeds) = Setup(seed: 5);
        using ITrainingBackend backend = cpu ? new Backends.Cpu.CpuBackend(threads: 1) : new ReferenceBackend();
        using TrainNet.TrainingSession session = net.CreateTrainingSession(backend, Batch, Height, Width);
        float[][] plain = Step(backend, session, image, seeds).Gradients;

        // The same step with a sink: every host gradient starts as NaN, so a signal that came
        // before the gradient was written, or one that came too late to be useful, shows.
        foreach (ParameterGradient g in session.Gradients) Array.Fill(g.Data, float.NaN);
        var sink = new RecordingSink(session.Gradients);
        session.Forward(image);
        for (int o = 0; o < seeds.Length; o++) backend.Upload(seeds[o], session.OutputGradients[o].Tensor);
        session.Backward(sink);

        Assert.Equal(Enumerable.Range(0, session.Gradients.Count), sink.Order.Order()); // each exactly once
        for (int p = 0; p < plain.Length; p++)
        {
            // Final when signalled: the copy taken then is the value after the pass, which is Backward()'s.
            Assert.True(sink.AtSignal[p]!.AsSpan().SequenceEqual(session.Gradients[p].Data), $"{session.Gradients[p].Key} changed after its signal");
            Assert.True(plain[p].AsSpan().SequenceEqual(session.Gradients[p].Data), $"{session.Gradients[p].Key} differs from Backward()'s");
        }
        // Signalled as the pass goes: at the first signal (the shared head's, after its last
        // application) the stem's gradient has not been written yet.
        Assert.StartsWith("head.", session.Gradients[sink.Order[0]].Key, StringComparison.Ordinal);
        Assert.True(sink.NotWrittenAtFirstSignal.Contains("c1.weight"), string.Join(", ", sink.NotWrittenAtFirstSignal));
        Assert.Equal("c1.weight", session.Gradients[sink.Order[^1]].Key);
    }

    // Copies each gradient when it is signalled; at the first signal, notes which are still NaN.
    private sealed class RecordingSink(IReadOnlyList<ParameterGradient> gradients) : IGradientReadySink
    {
        public List<int> Order { get; } = [];

        public float[]?[] AtSignal { get; } = new float[gradients.Count][];

        public List<string> NotWrittenAtFirstSignal { get; } = [];

        public void GradientReady(int parameter)
        {
            if (Order.Count == 0)
                NotWrittenAtFirstSignal.AddRange(gradients.Where(g => g.Data.All(float.IsNaN)).Select(g => g.Key));
            Order.Add(parameter);
            Assert.Null(AtSignal[parameter]);
            int unwritten = gradients[parameter].Data.Count(float.IsNaN);
            Assert.True(unwritten == 0, $"{gradients[parameter].Key}: {unwritten} of {gradients[parameter].Data.Length} values not written when signalled (signal {Order.Count})");
            AtSignal[parameter] = gradients[parameter].Data.ToArray();
        }
    }

    [Fact]
    public void TrainNet_SessionsOfTwoSizesSharingWeights_EqualOwnedSessions_AndSeeOneUpdateWeights()
    {
        (TrainNet net, float[] imageA, float[][] seedsA) = Setup(seed: 8);
        const int batchB = 1, heightB = 36, widthB = 28;
        var random = new Random(18);
        float[] imageB = Enumerable.Range(0, batchB * 3 * heightB * widthB).Select(_ => (float)(random.NextDouble() * 4 - 2)).ToArray();
        float[][] seedsB = TrainNet.OutputsFor(heightB, widthB)
            .Select(o => Enumerable.Range(0, batchB * o.Channels * o.Height * o.Width).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray())
            .ToArray();
        using var backend = new ReferenceBackend();

        // Each size on its own weights, as CreateTrainingSession makes them.
        (float[][] Outputs, float[][] Gradients) Owned(int batch, int height, int width, float[] image, float[][] seeds)
        {
            using TrainNet.TrainingSession owned = net.CreateTrainingSession(backend, batch, height, width);
            return Step(backend, owned, image, seeds);
        }
        var ownedA = Owned(Batch, Height, Width, imageA, seedsA);
        var ownedB = Owned(batchB, heightB, widthB, imageB, seedsB);

        using TrainNet.TrainingWeights weights = net.PrepareTraining(backend);
        using TrainNet.TrainingSession a = weights.CreateSession(Batch, Height, Width);
        using TrainNet.TrainingSession b = weights.CreateSession(batchB, heightB, widthB);
        Assert.Same(weights, a.Weights);
        Assert.Same(weights, ((ITrainingSession)b).Weights);
        Assert.Same(weights.Gradients, a.Gradients);
        Assert.Same(weights.Gradients, b.Gradients);
        Assert.Equal(TrainNet.TrainedKeys, weights.Gradients.Select(g => g.Key));

        // b's shape needs longer buffers than a's in some slots: creating b grew the shared buffers,
        // and a rebinds to them. Steps of the two sizes, in either order, equal the owned sessions'.
        var shared = Step(backend, a, imageA, seedsA);
        AssertSame(ownedA.Outputs, shared.Outputs, "a outputs");
        AssertSame(ownedA.Gradients, shared.Gradients, "a gradients");
        shared = Step(backend, b, imageB, seedsB);
        AssertSame(ownedB.Outputs, shared.Outputs, "b outputs");
        AssertSame(ownedB.Gradients, shared.Gradients, "b gradients");
        AssertSame(ownedA.Gradients, Step(backend, a, imageA, seedsA).Gradients, "a gradients after b's step");

        // One set of activation buffers: a Forward of one session ends the other's pending reverse pass.
        a.Forward(imageA);
        b.Forward(imageB);
        Assert.Throws<InvalidOperationException>(a.Backward);
        b.Backward();

        // One optimizer step on the host and one UpdateWeights: both sessions run on the new weights.
        foreach (ParameterGradient g in weights.Gradients)
            for (int i = 0; i < g.Data.Length; i++) g.Parameter.Data[i] -= 0.05f * g.Data[i];
        weights.UpdateWeights();
        var updatedA = Owned(Batch, Height, Width, imageA, seedsA);
        var updatedB = Owned(batchB, heightB, widthB, imageB, seedsB);
        Assert.NotEqual(ownedA.Outputs[0], updatedA.Outputs[0]);
        AssertSame(updatedB.Outputs, Step(backend, b, imageB, seedsB).Outputs, "b outputs after the update");
        AssertSame(updatedB.Gradients, [.. weights.Gradients.Select(g => g.Data.ToArray())], "b gradients after the update");
        var stepA = Step(backend, a, imageA, seedsA);
        AssertSame(updatedA.Outputs, stepA.Outputs, "a outputs after the update");
        AssertSame(updatedA.Gradients, stepA.Gradients, "a gradients after the update");

        // A Backward needs a Forward on the current weights; disposing a session leaves the weights to the others.
        a.Forward(imageA);
        weights.UpdateWeights();
        Assert.Throws<InvalidOperationException>(a.Backward);
        a.Dispose();
        b.Forward(imageB);
        b.Backward();
        weights.Dispose();
        Assert.Throws<ObjectDisposedException>(() => b.Forward(imageB));
        Assert.Throws<ObjectDisposedException>(() => weights.CreateSession(Batch, Height, Width));
    }

    [Fact]
    public void ModelInfo_PrepareTraining_SharesOneWeightsObjectAcrossSizes()
    {
        ModelInfo model = ModelRegistry.Get("retinanet-ghm-r50-fpn");
        INetwork network = model.Create();
        var backend = new NullTrainingBackend();
        using ITrainingWeights weights = model.PrepareTraining(network, backend);
        Assert.Same(backend, weights.Backend);
        Assert.Equal(model.TrainedKeys, weights.Gradients.Select(g => g.Key));
        int prepared = backend.Allocations.Count;
        Assert.Equal(0, weights.ActivationBytes);
        using ITrainingSession small = weights.CreateSession(2, 128, 96);
        Assert.Equal(model.TrainingActivationBytes(2, 128, 96), weights.ActivationBytes);
        using ITrainingSession large = weights.CreateSession(1, 192, 256);
        Assert.Same(weights, small.Weights);
        Assert.Same(weights.Gradients, large.Gradients);
        // Every buffer of the larger shape is longer, so the shared set is that shape's: the small
        // session's buffers were released as the large one's were made, not kept beside them.
        Assert.Equal(model.TrainingActivationBytes(1, 192, 256), weights.ActivationBytes);
        Assert.Equal(model.TrainingActivationBytes(2, 128, 96) + model.TrainingActivationBytes(1, 192, 256), 4 * backend.Allocations.Skip(prepared).Sum());
        Assert.Equal(backend.Allocations.Skip(prepared).Count() / 2, backend.Released);
        using ITrainingSession again = weights.CreateSession(2, 128, 96); // fits: nothing new
        Assert.Equal(model.TrainingActivationBytes(1, 192, 256), weights.ActivationBytes);
        Assert.Equal(model.TrainingActivationBytes(2, 128, 96) + model.TrainingActivationBytes(1, 192, 256), 4 * backend.Allocations.Skip(prepared).Sum());
    }

    [Fact]
    public void ActivationArena_GrowsOnlyShortBuffers_AndSurvivesAFailedAllocation()
    {
        var backend = new NullTrainingBackend();
        using var arena = new ActivationArena(backend, 3);
        Assert.Equal(0, arena.Elements);
        DeviceBuffer[] first = arena.Reserve([10, 20, 30]);
        long generation = arena.Generation;
        var user = new object();
        arena.User = user;
        Assert.Same(first[1], arena.Reserve([5, 20, 1])[1]); // all fit: the same buffers, the same generation
        Assert.Equal(generation, arena.Generation);
        Assert.Same(user, arena.User);

        DeviceBuffer[] grown = arena.Reserve([10, 25, 30]);
        Assert.Same(first[0], grown[0]);
        Assert.NotSame(first[1], grown[1]);
        Assert.Equal(25, grown[1].Length);
        Assert.NotEqual(generation, arena.Generation);
        Assert.Null(arena.User); // the activations it held are gone
        Assert.Equal(1, backend.Released);
        Assert.Equal(65, arena.Elements);

        backend.RefuseFrom = 1000;
        Assert.Throws<OutOfMemoryException>(() => arena.Reserve([10, 25, 2000]));
        Assert.Equal(35, arena.Elements); // the short buffer went first; the others stay
        backend.RefuseFrom = null;
        DeviceBuffer[] after = arena.Reserve([10, 25, 2000]);
        Assert.Same(grown[1], after[1]);
        Assert.Equal(2035, arena.Elements);
        Assert.Throws<ArgumentException>(() => arena.Reserve([1, 2]));
        Assert.Throws<ArgumentException>(() => arena.Reserve([1, -2, 3]));
        arena.Dispose();
        Assert.Equal(0, arena.Elements);
        Assert.Throws<ObjectDisposedException>(() => arena.Reserve([1, 2, 3]));
    }

    [Fact]
    public void ActivationBytes_AreWhatTheSessionsAllocate()
    {
        var net = new TrainNet();
        // On a backend that cannot work in host arrays (NullTrainingBackend, like a GPU) the weights allocate one buffer
        // of folded gradients per trained convolution: its weights (out x in x k x k), plus out when a bias gradient is needed.
        var shared = new NullTrainingBackend();
        int gradientBuffers;
        using (TrainNet.TrainingWeights weights = net.PrepareTraining(shared))
        {
            gradientBuffers = shared.Allocations.Count;
            long[] trainedWeights = [.. weights.Gradients.Where(g => g.Shape.Count == 4).Select(g => g.Parameter.ElementCount)];
            Assert.Equal(trainedWeights.Length, gradientBuffers); // every trained convolution here has its weight trained
            long biases = shared.Allocations.Sum() - trainedWeights.Sum(); // out channels (at most 8 here) of those that need a bias gradient
            Assert.InRange(biases, 0, 8 * gradientBuffers);
            using (weights.CreateSession(Batch, Height, Width))
                Assert.Equal(TrainNet.TrainingActivationBytes(Batch, Height, Width), 4 * shared.Allocations.Skip(gradientBuffers).Sum());
            int before = shared.Allocations.Count;
            using (weights.CreateSession(Batch, 2 * Height, Width)) // a larger size replaces every buffer
                Assert.Equal(TrainNet.TrainingActivationBytes(Batch, 2 * Height, Width), 4 * shared.Allocations.Skip(before).Sum());
            Assert.Equal(TrainNet.TrainingActivationBytes(Batch, 2 * Height, Width), weights.ActivationBytes);
            before = shared.Allocations.Count;
            using (weights.CreateSession(1, Height, Width)) // a smaller one fits in them
                Assert.Equal(before, shared.Allocations.Count);
        }
        var training = new NullTrainingBackend();
        using (net.CreateTrainingSession(training, Batch, Height, Width)) // its own weights' gradient buffers first, then the activations
            Assert.Equal(TrainNet.TrainingActivationBytes(Batch, Height, Width), 4 * training.Allocations.Skip(gradientBuffers).Sum());
        var inference = new NullTrainingBackend();
        using (net.CreateSession(inference, Batch, Height, Width))
            Assert.Equal(TrainNet.InferenceActivationBytes(Batch, Height, Width), 4 * inference.Allocations.Sum());
        // Training keeps activations for the reverse pass and holds their gradients: never less than inference.
        Assert.True(TrainNet.TrainingActivationBytes(Batch, Height, Width) > TrainNet.InferenceActivationBytes(Batch, Height, Width));
        Assert.True(RetinaNetGhmR50Fpn.TrainingActivationBytes(2, 800, 1216) > RetinaNetGhmR50Fpn.InferenceActivationBytes(2, 800, 1216));
    }

    [Fact]
    public void R50_Backward_OnReferenceBackend_GivesFiniteGradientsForExactlyTheTrainedKeys()
    {
        var network = new RetinaNetGhmR50Fpn();
        SeededWeights.Fill(network);
        const int batch = 2, size = 64;
        float[] input = new float[batch * 3 * size * size];
        SeededWeights.FillInput(input);
        using var backend = new ReferenceBackend();
        using RetinaNetGhmR50Fpn.TrainingSession session = network.CreateTrainingSession(backend, batch, size, size);
        session.Forward(input);
        var random = new Random(9);
        foreach ((string _, TensorView gradient) in session.OutputGradients)
            backend.Upload(Enumerable.Range(0, (int)gradient.ElementCount).Select(_ => (float)(random.NextDouble() - 0.5) * 1e-2f).ToArray(), gradient);
        session.Backward();

        string[] frozenPrefixes = ["backbone.conv1.", "backbone.bn1.", "backbone.layer1."];
        string[] trained = network.State
            .Where(t => t.Kind == StateKind.Parameter && !frozenPrefixes.Any(p => t.Key.StartsWith(p, StringComparison.Ordinal)))
            .Select(t => t.Key).ToArray();
        Assert.Equal(trained, session.Gradients.Select(g => g.Key));
        Assert.Equal(trained, RetinaNetGhmR50Fpn.TrainedKeys);
        Assert.DoesNotContain(session.Gradients, g => g.Key.StartsWith("backbone.layer1.", StringComparison.Ordinal));
        foreach (ParameterGradient g in session.Gradients)
            Assert.All(g.Data, v => Assert.True(float.IsFinite(v), $"{g.Key} has a non-finite gradient"));
        Assert.Contains(session.Gradients, g => g.Key == "bbox_head.retina_cls.weight" && g.Data.Any(v => v != 0));
        Assert.Contains(session.Gradients, g => g.Key == "backbone.layer2.0.conv1.weight" && g.Data.Any(v => v != 0));
    }

    private static (TrainNet Net, float[] Image, float[][] Seeds) Setup(int seed)
    {
        var net = new TrainNet();
        var random = new Random(seed);
        foreach (StateTensor t in net.State)
        {
            if (t.ElementType == StateElementType.Int64) continue;
            bool variance = t.Key.EndsWith(".running_var", StringComparison.Ordinal);
            bool scale = t.Role == StateRole.BatchNormWeight;
            for (int i = 0; i < t.Data.Length; i++)
                t.Data[i] = variance ? (float)(0.5 + random.NextDouble()) : scale ? (float)(0.5 + random.NextDouble() * 0.5) : (float)(random.NextDouble() * 0.6 - 0.3);
        }
        float[] image = Enumerable.Range(0, Batch * 3 * Height * Width).Select(_ => (float)(random.NextDouble() * 4 - 2)).ToArray();
        float[][] seeds = TrainNet.OutputsFor(Height, Width)
            .Select(o => Enumerable.Range(0, Batch * o.Channels * o.Height * o.Width).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray())
            .ToArray();
        return (net, image, seeds);
    }

    // Forward, the seeds as output gradients, Backward: the outputs and a copy of the gradients.
    private static (float[][] Outputs, float[][] Gradients) Step(IBackend backend, ITrainingSession session, float[] image, float[][] seeds)
    {
        session.Forward(image);
        float[][] outputs = [.. session.Outputs.Select(o => Download(backend, o.Tensor))];
        for (int o = 0; o < seeds.Length; o++) backend.Upload(seeds[o], session.OutputGradients[o].Tensor);
        session.Backward();
        return (outputs, [.. session.Gradients.Select(g => g.Data.ToArray())]);
    }

    private static void AssertSame(float[][] want, float[][] got, string what)
    {
        Assert.Equal(want.Length, got.Length);
        for (int i = 0; i < want.Length; i++) Assert.True(want[i].AsSpan().SequenceEqual(got[i]), $"{what}: tensor {i} differs");
    }

    private static float[] Download(IBackend backend, TensorView t)
    {
        float[] values = new float[t.ElementCount];
        backend.Download(t, values);
        return values;
    }
}

/// <summary>A steady-state training step allocates nothing on the managed heap (the generated code and the runtime helpers; the backend does nothing).</summary>
[Collection(nameof(Forward.AllocationCollection))]
public class TrainingAllocationTests
{
    [Fact]
    public void Demo_BatchStatistics_ActivationBytes_AreWhatItsSessionsAllocate_AndAStepAllocatesNothing()
    {
        // ghm-demo-r18-fpn trains its 20 batch norms with batch statistics: the session keeps every
        // unfolded convolution output for the reverse pass and the saved mean and variance, and
        // TrainingActivationBytes counts both.
        var net = new GhmDemoR18Fpn();
        var backend = new NullTrainingBackend();
        using GhmDemoR18Fpn.TrainingWeights weights = net.PrepareTraining(backend);
        int before = backend.Allocations.Count;
        using GhmDemoR18Fpn.TrainingSession session = weights.CreateSession(2, 96, 128);
        Assert.Equal(GhmDemoR18Fpn.TrainingActivationBytes(2, 96, 128), 4 * backend.Allocations.Skip(before).Sum());
        // Training keeps activations for the reverse pass and their gradients: more than inference.
        Assert.True(GhmDemoR18Fpn.TrainingActivationBytes(2, 96, 128) > GhmDemoR18Fpn.InferenceActivationBytes(2, 96, 128));

        float[] input = new float[2 * 3 * 96 * 128];
        void Step()
        {
            session.Forward(input);
            session.Backward();
            session.UpdateWeights();
        }
        Step();
        long allocated = GC.GetAllocatedBytesForCurrentThread();
        Step();
        Step();
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - allocated);
        // Each Forward counted one batch per batch norm.
        Assert.All(net.State.Where(t => t.Role == StateRole.BatchNormBatchesTracked), t => Assert.Equal(3L, t.Int64Data[0]));
    }

    [Fact]
    public void TrainNet_And_R50_SteadyStateTrainingStep_AllocatesNothing()
    {
        var backend = new NullTrainingBackend();
        var tiny = new TrainNet();
        var r50 = new RetinaNetGhmR50Fpn();
        using TrainNet.TrainingSession a = tiny.CreateTrainingSession(backend, 2, 32, 32);
        using RetinaNetGhmR50Fpn.TrainingSession b = r50.CreateTrainingSession(backend, 1, 64, 64);
        float[] inputA = new float[2 * 3 * 32 * 32], inputB = new float[3 * 64 * 64];
        void Step()
        {
            a.Forward(inputA);
            a.Backward();
            a.UpdateWeights();
            b.Forward(inputB);
            b.Backward();
            b.UpdateWeights();
        }
        Step();
        long before = GC.GetAllocatedBytesForCurrentThread();
        Step();
        Step();
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}

/// <summary>Sessions of two sizes sharing one <c>TrainingWeights</c>: a steady-state step of each, with one UpdateWeights per step, allocates nothing.</summary>
[Collection(nameof(Forward.AllocationCollection))]
public class SharedTrainingAllocationTests
{
    [Fact]
    public void R50_TwoSizesSharingWeights_SteadyStateSteps_AllocateNothing()
    {
        var backend = new NullTrainingBackend();
        var r50 = new RetinaNetGhmR50Fpn();
        using RetinaNetGhmR50Fpn.TrainingWeights weights = r50.PrepareTraining(backend);
        using RetinaNetGhmR50Fpn.TrainingSession a = weights.CreateSession(1, 64, 64);
        using RetinaNetGhmR50Fpn.TrainingSession b = weights.CreateSession(2, 96, 64);
        float[] inputA = new float[3 * 64 * 64], inputB = new float[2 * 3 * 96 * 64];
        void Step()
        {
            a.Forward(inputA);
            a.Backward();
            weights.UpdateWeights();
            b.Forward(inputB);
            b.Backward();
            weights.UpdateWeights();
        }
        Step();
        long before = GC.GetAllocatedBytesForCurrentThread();
        Step();
        Step();
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}

/// <summary>A training backend whose ops do nothing: it records allocation sizes, so tests see what generated code allocates.</summary>
internal sealed class NullTrainingBackend : ITrainingBackend
{
    public List<long> Allocations { get; } = [];

    public string Name => "null";

    /// <summary>When set, allocations of this many elements or more throw, as a device out of memory would.</summary>
    public long? RefuseFrom { get; set; }

    public DeviceBuffer Allocate(long elements)
    {
        if (elements >= RefuseFrom) throw new OutOfMemoryException($"refused {elements} elements");
        Allocations.Add(elements);
        return new Buffer(elements, this);
    }

    public void Upload(ReadOnlySpan<float> source, TensorView destination) { }
    public void Download(TensorView source, Span<float> destination) { }
    public IPreparedConv PrepareConv(ConvSpec spec, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias) => new Conv(spec);
    public void Conv2d(IPreparedConv conv, TensorView x, TensorView y, TensorView? residual, bool relu) { }
    public void MaxPool2d(TensorView x, TensorView y, int kernel, int stride, int padding) { }
    public void UpsampleNearestAdd(TensorView upper, TensorView lower) { }
    public void Add(TensorView a, TensorView b, TensorView y, bool relu) { }
    public void Copy(TensorView source, TensorView destination) { }
    public void Relu(TensorView x, TensorView y) { }
    public void Sigmoid(TensorView x, TensorView y) { }
    public void UpdateConv(IPreparedConv conv, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias) { }
    public void Conv2dBackwardData(IPreparedConv conv, TensorView dy, TensorView dx, bool accumulate) { }
    public void Conv2dBackwardWeights(ConvSpec spec, TensorView x, TensorView dy, TensorView dWeight, TensorView? dBias, bool accumulate) { }
    public void ReluBackward(TensorView y, TensorView dy, TensorView dx) { }
    public void MaxPool2dBackward(TensorView x, TensorView dy, TensorView dx, int kernel, int stride, int padding, bool accumulate) { }
    public void UpsampleNearestBackward(TensorView dLower, TensorView dUpper, bool accumulate) { }
    public void BatchNormTraining(TensorView x, TensorView weight, TensorView bias, TensorView? residual, bool relu, TensorView y,
        TensorView mean, TensorView variance, double epsilon) { }
    public void BatchNormTrainingBackward(TensorView x, TensorView dy, TensorView weight, TensorView mean, TensorView variance, double epsilon,
        TensorView? dx, TensorView dWeight, TensorView dBias, bool accumulate) { }
    public void Zero(TensorView t) { }
    public void Dispose() { }

    /// <summary>Buffers disposed so far.</summary>
    public int Released { get; private set; }

    private sealed class Buffer(long length, NullTrainingBackend owner) : DeviceBuffer
    {
        private bool _disposed;

        public override long Length => length;

        public override void Dispose()
        {
            if (!_disposed) owner.Released++;
            _disposed = true;
            base.Dispose();
        }
    }

    private sealed class Conv(ConvSpec spec) : IPreparedConv
    {
        public ConvSpec Spec => spec;
        public void Dispose() { }
    }
}
