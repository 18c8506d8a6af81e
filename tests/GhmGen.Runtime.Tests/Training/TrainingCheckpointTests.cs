using System.Text.Json;
using GhmGen.Checkpoints;
using GhmGen.Layers;
using GhmGen.Training;

namespace GhmGen.Runtime.Tests.Training;

/// <summary><see cref="TrainingCheckpoint"/>: our round trip, torch-written mmcv files, and a file for torch to verify.</summary>
public sealed class TrainingCheckpointTests
{
    /// <summary>Where <see cref="Writes_a_file_for_torch_to_verify"/> leaves its files for tools/reference/verify_train_checkpoint.py.</summary>
    public static string VerifyDirectory => Path.Combine(AppContext.BaseDirectory, "train-checkpoint-verify");

    /// <summary>A small detector-like state: frozen stem, trained layers, BN buffers, a GHM buffer.</summary>
    private sealed class Net
    {
        public Net()
        {
            State =
            [
                P("backbone.conv1.weight", 4, 3, 3, 3),
                P("backbone.bn1.weight", 4),
                P("backbone.bn1.bias", 4),
                B("backbone.bn1.running_mean", 4),
                B("backbone.bn1.running_var", 4),
                new StateTensor("backbone.bn1.num_batches_tracked", [], StateKind.Buffer, StateElementType.Int64),
                P("backbone.layer2.0.conv1.weight", 64, 4, 3, 3),
                P("backbone.layer2.0.bn1.weight", 64),
                P("backbone.layer2.0.bn1.bias", 64),
                B("backbone.layer2.0.bn1.running_mean", 64),
                B("backbone.layer2.0.bn1.running_var", 64),
                B("bbox_head.loss_cls.acc_sum", 30),
                P("bbox_head.retina_cls.weight", 720, 64, 3, 3),
                P("bbox_head.retina_cls.bias", 720),
                P("bbox_head.retina_reg.bias", 36),
            ];
            foreach (StateTensor t in State)
            {
                if (t.ElementType == StateElementType.Float32) SeededWeights.FillUniform(t.Key, t.Data, -0.5, 0.5);
                else t.Int64Data[0] = 1234;
            }
            Parameters = [.. State.Where(t => t.Kind == StateKind.Parameter)];
            Trained = [.. Parameters.Where(t => !t.Key.StartsWith("backbone.conv1.", StringComparison.Ordinal) && !t.Key.StartsWith("backbone.bn1.", StringComparison.Ordinal))];
        }

        public List<StateTensor> State { get; }

        public List<StateTensor> Parameters { get; }

        public List<StateTensor> Trained { get; }

        public string[] ParameterKeys => [.. Parameters.Select(p => p.Key)];

        public string[] TrainedKeys => [.. Trained.Select(p => p.Key)];

        /// <summary>Seeded gradients for the trained parameters (retina_reg.bias only from step 1).</summary>
        public List<ParameterWithGradient> Gradients(int step) =>
            [.. Parameters.Select(p => new ParameterWithGradient(p,
                Trained.Contains(p) && (step > 0 || p.Key != "bbox_head.retina_reg.bias") ? TrainingFixtures.Uniform($"grad{step}/{p.Key}", p.ElementCount, -0.5, 0.5) : null))];

        private static StateTensor P(string key, params int[] shape) => new(key, shape, StateKind.Parameter);

        private static StateTensor B(string key, params int[] shape) => new(key, shape, StateKind.Buffer);
    }

    private static SgdOptimizer Train(Net net, int steps, StepLrSchedule schedule)
    {
        var optimizer = new SgdOptimizer(net.Parameters, schedule.BaseLearningRate);
        for (int step = 0; step < steps; step++)
        {
            optimizer.LearningRate = schedule.LearningRate(0, step);
            List<ParameterWithGradient> gradients = net.Gradients(step);
            GradientClipping.ClipGradNorm(gradients);
            optimizer.Step(gradients);
        }
        return optimizer;
    }

    private static string TempPath() => Path.Combine(Path.GetTempPath(), $"ghm-train-{Guid.NewGuid():N}.pth");

    [Fact]
    public void Round_trip_restores_weights_buffers_progress_and_param_group()
    {
        var net = new Net();
        StepLrSchedule schedule = StepLrSchedule.Ghm1x(0.01);
        SgdOptimizer optimizer = Train(net, 2, schedule);
        string path = TempPath();
        try
        {
            PickleValue meta = PickleValue.NewDict([KeyValuePair.Create("CLASSES", PickleValue.NewTuple(PickleValue.FromString("person"))), KeyValuePair.Create("epoch", PickleValue.FromInt64(99))]);
            TrainingCheckpoint.Write(path, net.State, optimizer, new TrainingProgress(Epoch: 0, Iteration: 2, IterationInEpoch: 2, DataSeed: -42), meta);
            Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(path)!, Path.GetFileName(path) + ".tmp-*"));

            using TrainingCheckpoint read = TrainingCheckpoint.Read(path, net.ParameterKeys, net.TrainedKeys);
            Assert.Equal(new TrainingProgress(0, 2, 2, -42), read.Progress);
            Assert.Equal(OptimizerIndexing.AllParameters, read.Indexing);
            Assert.Equal(optimizer.LearningRate, read.LearningRate);
            Assert.Equal(0.01, read.InitialLearningRate);
            Assert.Equal(0.9, read.Momentum);
            Assert.Equal(1e-4, read.WeightDecay);
            Assert.Equal(["person"], read.Weights.ClassNames);
            Assert.Equal(0, read.Weights.Meta!["epoch"]!.AsInt64); // ours replaces the caller's
            Assert.Equal(net.TrainedKeys.Order(), read.MomentumBuffers.Keys.Order());

            var fresh = new Net();
            foreach (StateTensor t in fresh.State)
            {
                if (t.ElementType == StateElementType.Float32) Array.Clear(t.Data);
            }
            StateDictLoader.Load(fresh.State, read.Weights.Tensors, read.Weights.FileName, "net");
            var restored = new SgdOptimizer(fresh.Parameters, 1);
            read.RestoreOptimizer(restored);
            Assert.Equal(optimizer.LearningRate, restored.LearningRate);
            Assert.Equal(0.01, restored.InitialLearningRate);
            for (int i = 0; i < net.State.Count; i++)
            {
                if (net.State[i].ElementType == StateElementType.Int64) Assert.Equal(net.State[i].Int64Data, fresh.State[i].Int64Data);
                else Assert.Equal(TrainingFixtures.Sha(net.State[i].Data), TrainingFixtures.Sha(fresh.State[i].Data));
            }
            for (int i = 0; i < net.Parameters.Count; i++)
            {
                Assert.Equal(optimizer.MomentumBuffer(i) is { } a ? TrainingFixtures.Sha(a) : null, restored.MomentumBuffer(i) is { } b ? TrainingFixtures.Sha(b) : null);
            }

            // A resumed step equals an uninterrupted one, bit for bit.
            optimizer.LearningRate = restored.LearningRate = schedule.LearningRate(0, 2);
            List<ParameterWithGradient> g1 = net.Gradients(2), g2 = fresh.Gradients(2);
            GradientClipping.ClipGradNorm(g1);
            GradientClipping.ClipGradNorm(g2);
            optimizer.Step(g1);
            restored.Step(g2);
            for (int i = 0; i < net.Parameters.Count; i++) Assert.Equal(TrainingFixtures.Sha(net.Parameters[i].Data), TrainingFixtures.Sha(fresh.Parameters[i].Data));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Trained_only_indexing_is_written_and_read_back()
    {
        var net = new Net();
        var optimizer = new SgdOptimizer(net.Trained, 0.01);
        optimizer.Step(net.Gradients(1).Where(g => g.Gradient != null).ToList());
        string path = TempPath();
        try
        {
            TrainingCheckpoint.Write(path, net.State, optimizer, new TrainingProgress(1, 7));
            using TrainingCheckpoint read = TrainingCheckpoint.Read(path, net.ParameterKeys, net.TrainedKeys);
            Assert.Equal(OptimizerIndexing.TrainedParameters, read.Indexing);
            Assert.Equal(new TrainingProgress(1, 7), read.Progress);
            for (int i = 0; i < net.Trained.Count; i++) Assert.Equal(optimizer.MomentumBuffer(i), read.MomentumBuffers[net.Trained[i].Key]);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [InlineData("mmdet_all.pth", OptimizerIndexing.AllParameters)]
    [InlineData("mmdet_all_legacy.pth", OptimizerIndexing.AllParameters)]
    [InlineData("mmdet_trained.pth", OptimizerIndexing.TrainedParameters)]
    public void Reads_torch_written_mmcv_checkpoints_in_both_indexings(string file, OptimizerIndexing indexing)
    {
        JsonElement described = TrainingFixtures.Json("mmdet_checkpoints.json");
        string[] all = [.. described.GetProperty("parameter_keys").EnumerateArray().Select(k => k.GetString()!)];
        string[] trained = [.. described.GetProperty("trained_keys").EnumerateArray().Select(k => k.GetString()!)];
        JsonElement expected = described.GetProperty("files").GetProperty(file);

        using TrainingCheckpoint read = TrainingCheckpoint.Read(TrainingFixtures.PathOf(file), all, trained);
        Assert.Equal(indexing, read.Indexing);
        Assert.Equal(new TrainingProgress(expected.GetProperty("epoch").GetInt32(), expected.GetProperty("iter").GetInt64()), read.Progress);
        Assert.Equal(expected.GetProperty("lr").GetDouble(), read.LearningRate);
        Assert.Equal(expected.GetProperty("initial_lr").GetDouble(), read.InitialLearningRate);
        Assert.Equal(trained.Order(), read.MomentumBuffers.Keys.Order());
        foreach (JsonProperty buffer in expected.GetProperty("buffers").EnumerateObject())
        {
            Assert.Equal(buffer.Value.EnumerateArray().Select(TrainingFixtures.Bits), read.MomentumBuffers[buffer.Name]);
        }
    }

    [Fact]
    public void Mismatched_networks_and_weights_only_files_are_refused()
    {
        var net = new Net();
        SgdOptimizer optimizer = Train(net, 1, StepLrSchedule.Ghm1x(0.01));
        string path = TempPath();
        try
        {
            TrainingCheckpoint.Write(path, net.State, optimizer, new TrainingProgress(0, 1, 1));
            string[] wrongCount = [.. net.ParameterKeys.Skip(1)];
            Assert.Throws<CheckpointFormatException>(() => TrainingCheckpoint.Read(path, wrongCount, net.TrainedKeys));
            string[] renamed = [.. net.ParameterKeys.Select(k => k.Replace("retina_cls", "retina_xxx", StringComparison.Ordinal))];
            string[] renamedTrained = [.. net.TrainedKeys.Select(k => k.Replace("retina_cls", "retina_xxx", StringComparison.Ordinal))];
            CheckpointFormatException e = Assert.Throws<CheckpointFormatException>(() => TrainingCheckpoint.Read(path, renamed, renamedTrained));
            Assert.Contains("retina_cls", e.Problem, StringComparison.Ordinal);

            using (TrainingCheckpoint read = TrainingCheckpoint.Read(path, net.ParameterKeys, net.TrainedKeys))
            {
                Assert.Throws<InvalidOperationException>(() => read.RestoreOptimizer(new SgdOptimizer(net.Parameters, 0.01, momentum: 0.8)));
            }

            TorchCheckpoint.Write(path, net.State);
            Assert.Throws<CheckpointFormatException>(() => TrainingCheckpoint.Read(path, net.ParameterKeys, net.TrainedKeys));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Optimizer_parameters_must_be_in_the_saved_state()
    {
        var net = new Net();
        var optimizer = new SgdOptimizer(net.Parameters, 0.01);
        Assert.Throws<ArgumentException>(() => TrainingCheckpoint.Write(TempPath(), net.State.Skip(1).ToList(), optimizer, new TrainingProgress(0, 0)));
        Assert.Throws<ArgumentException>(() => TrainingCheckpoint.Write(TempPath(), net.State, optimizer, new TrainingProgress(0, 1, 2)));
    }

    /// <summary>
    /// Leaves a checkpoint after two steps, and what a third step must give, for
    /// tools/reference/verify_train_checkpoint.py (run by hand; CI has no Python).
    /// </summary>
    [Fact]
    public void Writes_a_file_for_torch_to_verify()
    {
        var net = new Net();
        StepLrSchedule schedule = StepLrSchedule.Ghm1x(0.01);
        SgdOptimizer optimizer = Train(net, 2, schedule);
        Directory.CreateDirectory(VerifyDirectory);
        string path = Path.Combine(VerifyDirectory, "train_by_ghmgen.pth");
        TrainingCheckpoint.Write(path, net.State, optimizer, new TrainingProgress(0, 2, 2, 7));
        Dictionary<string, string> buffersBefore = [];
        for (int i = 0; i < net.Parameters.Count; i++)
        {
            if (optimizer.MomentumBuffer(i) is { } b) buffersBefore[net.Parameters[i].Key] = TrainingFixtures.Sha(b);
        }

        optimizer.LearningRate = schedule.LearningRate(0, 2);
        List<ParameterWithGradient> gradients = net.Gradients(2);
        float norm = GradientClipping.ClipGradNorm(gradients);
        optimizer.Step(gradients);
        using (var stream = File.Create(Path.Combine(VerifyDirectory, "train_by_ghmgen.expected.json")))
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            WriteStrings(json, "parameter_keys", net.ParameterKeys);
            WriteStrings(json, "trained_keys", net.TrainedKeys);
            json.WriteNumber("epoch", 0);
            json.WriteNumber("iter", 2);
            json.WriteNumber("iter_in_epoch", 2);
            json.WriteNumber("data_seed", 7);
            json.WriteNumber("lr_saved", schedule.LearningRate(0, 1));
            WriteMap(json, "buffers_saved", buffersBefore);
            json.WriteStartObject("next_step");
            json.WriteNumber("lr", optimizer.LearningRate);
            json.WriteString("gradient", "seeded_weights.uniform(f'grad2/{key}', n, -0.5, 0.5), trained keys only");
            json.WriteNumber("max_norm", GradientClipping.MmdetectionMaxNorm);
            json.WriteNumber("grad_norm_f32", BitConverter.SingleToUInt32Bits(norm));
            WriteMap(json, "parameters", net.Parameters.ToDictionary(p => p.Key, p => TrainingFixtures.Sha(p.Data)));
            WriteMap(json, "buffers", Enumerable.Range(0, net.Parameters.Count).Where(i => optimizer.MomentumBuffer(i) != null)
                .ToDictionary(i => net.Parameters[i].Key, i => TrainingFixtures.Sha(optimizer.MomentumBuffer(i)!)));
            json.WriteEndObject();
            json.WriteEndObject();
        }
        Assert.True(File.Exists(path));
    }

    private const double AdamWDecay = 0.05;

    private static AdamWOptimizer TrainAdamW(Net net, int steps, StepLrSchedule schedule)
    {
        var optimizer = new AdamWOptimizer(net.Parameters, schedule.BaseLearningRate, AdamWDecay);
        for (int step = 0; step < steps; step++) AdamWStep(net, optimizer, schedule, step);
        return optimizer;
    }

    private static float AdamWStep(Net net, AdamWOptimizer optimizer, StepLrSchedule schedule, int step)
    {
        optimizer.LearningRate = schedule.LearningRate(0, step);
        List<ParameterWithGradient> gradients = net.Gradients(step);
        float norm = GradientClipping.ClipGradNorm(gradients);
        optimizer.Step(gradients);
        return norm;
    }

    private static string? StateSha(AdamWParameterState? state) =>
        state is null ? null : FormattableString.Invariant($"{state.Step} {TrainingFixtures.Sha(state.ExpAvg)} {TrainingFixtures.Sha(state.ExpAvgSq)}");

    [Fact]
    public void AdamW_round_trip_resumes_bit_for_bit_as_an_uninterrupted_run()
    {
        var net = new Net();
        StepLrSchedule schedule = StepLrSchedule.Ghm1x(0.001);
        AdamWOptimizer optimizer = TrainAdamW(net, 2, schedule); // the uninterrupted run, continued below
        string path = TempPath();
        try
        {
            TrainingCheckpoint.Write(path, net.State, optimizer, new TrainingProgress(Epoch: 0, Iteration: 2, IterationInEpoch: 2, DataSeed: 3));
            using TrainingCheckpoint read = TrainingCheckpoint.Read(path, net.ParameterKeys, net.TrainedKeys);
            Assert.Equal(TrainingOptimizerKind.AdamW, read.OptimizerKind);
            Assert.Equal(OptimizerIndexing.AllParameters, read.Indexing);
            Assert.Equal(optimizer.LearningRate, read.LearningRate);
            Assert.Equal(0.001, read.InitialLearningRate);
            Assert.Null(read.Momentum);
            Assert.Equal(0.9, read.Beta1);
            Assert.Equal(0.999, read.Beta2);
            Assert.Equal(1e-8, read.Epsilon);
            Assert.Equal(AdamWDecay, read.WeightDecay);
            Assert.Empty(read.MomentumBuffers);
            Assert.Equal(net.TrainedKeys.Order(), read.AdamWStates.Keys.Order());
            Assert.Equal(1f, read.AdamWStates["bbox_head.retina_reg.bias"].Step); // its first gradient came at step 1
            Assert.Equal(2f, read.AdamWStates["bbox_head.retina_cls.weight"].Step);

            var fresh = new Net();
            foreach (StateTensor t in fresh.State)
            {
                if (t.ElementType == StateElementType.Float32) Array.Clear(t.Data);
            }
            StateDictLoader.Load(fresh.State, read.Weights.Tensors, read.Weights.FileName, "net");
            var restored = new AdamWOptimizer(fresh.Parameters, 1, AdamWDecay);
            read.RestoreOptimizer(restored);
            Assert.Equal(optimizer.LearningRate, restored.LearningRate);
            Assert.Equal(0.001, restored.InitialLearningRate);
            for (int i = 0; i < net.Parameters.Count; i++)
            {
                Assert.Equal(StateSha(optimizer.State(i)), StateSha(restored.State(i)));
                if (restored.State(i) is { } state) Assert.NotSame(read.AdamWStates[net.Parameters[i].Key].ExpAvg, state.ExpAvg); // a copy
            }

            // Two more steps after the resume equal two more in the uninterrupted run, bit for bit.
            for (int step = 2; step < 4; step++)
            {
                AdamWStep(net, optimizer, schedule, step);
                AdamWStep(fresh, restored, schedule, step);
            }
            for (int i = 0; i < net.Parameters.Count; i++)
            {
                Assert.Equal(TrainingFixtures.Sha(net.Parameters[i].Data), TrainingFixtures.Sha(fresh.Parameters[i].Data));
                Assert.Equal(StateSha(optimizer.State(i)), StateSha(restored.State(i)));
            }
            Assert.Equal(4f, restored.State(net.ParameterKeys.ToList().IndexOf("bbox_head.retina_cls.weight"))!.Step);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void A_checkpoint_resumes_only_with_the_optimizer_and_settings_that_wrote_it()
    {
        var net = new Net();
        string sgdPath = TempPath(), adamWPath = TempPath();
        try
        {
            TrainingCheckpoint.Write(sgdPath, net.State, Train(net, 1, StepLrSchedule.Ghm1x(0.01)), new TrainingProgress(0, 1, 1));
            TrainingCheckpoint.Write(adamWPath, net.State, TrainAdamW(net, 1, StepLrSchedule.Ghm1x(0.001)), new TrainingProgress(0, 1, 1));
            using (TrainingCheckpoint sgd = TrainingCheckpoint.Read(sgdPath, net.ParameterKeys, net.TrainedKeys))
            {
                Assert.Equal(TrainingOptimizerKind.Sgd, sgd.OptimizerKind);
                Assert.Empty(sgd.AdamWStates);
                Assert.Null(sgd.Beta1);
                var e = Assert.Throws<InvalidOperationException>(() => sgd.RestoreOptimizer(new AdamWOptimizer(net.Parameters, 0.001, AdamWDecay)));
                Assert.Contains(Path.GetFileName(sgdPath), e.Message, StringComparison.Ordinal);
                Assert.Contains("SGD optimiser state; this optimiser is AdamW", e.Message, StringComparison.Ordinal);
            }
            using TrainingCheckpoint adamW = TrainingCheckpoint.Read(adamWPath, net.ParameterKeys, net.TrainedKeys);
            var wrongKind = Assert.Throws<InvalidOperationException>(() => adamW.RestoreOptimizer(new SgdOptimizer(net.Parameters, 0.01)));
            Assert.Contains(Path.GetFileName(adamWPath), wrongKind.Message, StringComparison.Ordinal);
            Assert.Contains("AdamW optimiser state; this optimiser is SGD", wrongKind.Message, StringComparison.Ordinal);
            var wrongDecay = Assert.Throws<InvalidOperationException>(() => adamW.RestoreOptimizer(new AdamWOptimizer(net.Parameters, 0.001, 1e-4)));
            Assert.Contains("weight decay 0.05", wrongDecay.Message, StringComparison.Ordinal);
            Assert.Throws<InvalidOperationException>(() => adamW.RestoreOptimizer(new AdamWOptimizer(net.Parameters, 0.001, AdamWDecay, beta2: 0.99)));
            Assert.Throws<InvalidOperationException>(() => adamW.RestoreOptimizer(new AdamWOptimizer(net.Trained.Skip(1), 0.001, AdamWDecay)));
        }
        finally
        {
            File.Delete(sgdPath);
            File.Delete(adamWPath);
        }
    }

    /// <summary>
    /// Writes an mmcv-layout checkpoint of <paramref name="net"/> whose AdamW state has one entry,
    /// for parameter <paramref name="index"/>, written by <paramref name="entry"/> (inside its dict).
    /// </summary>
    private static void WriteAdamWCheckpoint(string path, Net net, int index, Action<PickleWriter, List<StorageSource>, StateTensor> entry,
        PickleValue? betas = null, bool amsgrad = false)
    {
        var storages = new List<StorageSource>();
        var pickle = new PickleWriter();
        pickle.EmptyDict();
        pickle.Mark();
        pickle.String("meta");
        pickle.Value(PickleValue.NewDict([KeyValuePair.Create("epoch", PickleValue.FromInt64(0)), KeyValuePair.Create("iter", PickleValue.FromInt64(1))]));
        pickle.String("state_dict");
        pickle.StateDict(net.State, storages);
        pickle.String("optimizer");
        pickle.EmptyDict();
        pickle.Mark();
        pickle.String("state");
        pickle.EmptyDict();
        pickle.Mark();
        pickle.Int(index);
        pickle.EmptyDict();
        pickle.Mark();
        entry(pickle, storages, net.Parameters[index]);
        pickle.SetItems();
        pickle.SetItems();
        pickle.String("param_groups");
        pickle.Value(PickleValue.NewList([PickleValue.NewDict(
        [
            KeyValuePair.Create("lr", PickleValue.FromDouble(0.001)),
            KeyValuePair.Create("betas", betas ?? PickleValue.NewTuple(PickleValue.FromDouble(0.9), PickleValue.FromDouble(0.999))),
            KeyValuePair.Create("eps", PickleValue.FromDouble(1e-8)),
            KeyValuePair.Create("weight_decay", PickleValue.FromDouble(AdamWDecay)),
            KeyValuePair.Create("amsgrad", PickleValue.FromBool(amsgrad)),
            KeyValuePair.Create("params", PickleValue.NewList(Enumerable.Range(0, net.Parameters.Count).Select(i => PickleValue.FromInt64(i)))),
        ])]));
        pickle.SetItems();
        pickle.SetItems();
        TorchCheckpoint.WriteArchive(path, pickle.Finish(), storages);
    }

    private static void Moment(PickleWriter pickle, List<StorageSource> storages, string name, StateTensor p, IReadOnlyList<int>? shape = null)
    {
        pickle.String(name);
        IReadOnlyList<int> s = shape ?? p.Shape;
        pickle.Tensor(storages, StorageSource.Of(new float[s.Aggregate(1, (a, b) => a * b)]), CheckpointDType.Float32, s);
    }

    private static void Step(PickleWriter pickle, List<StorageSource> storages, float value)
    {
        pickle.String("step");
        pickle.Tensor(storages, StorageSource.Of([value]), CheckpointDType.Float32, []);
    }

    public static TheoryData<string, string> MalformedAdamWStates => new()
    {
        { "missing exp_avg", "AdamW state of 'backbone.layer2.0.bn1.weight' has no 'exp_avg'" },
        { "missing exp_avg_sq", "AdamW state of 'backbone.layer2.0.bn1.weight' has no 'exp_avg_sq'" },
        { "missing step", "AdamW state of 'backbone.layer2.0.bn1.weight' has no 'step'" },
        { "exp_avg wrong shape", "exp_avg of 'backbone.layer2.0.bn1.weight' is [63]; the parameter is [64]" },
        { "exp_avg_sq wrong shape", "exp_avg_sq of 'backbone.layer2.0.bn1.weight' is [8, 8]; the parameter is [64]" },
        { "exp_avg not a tensor", "exp_avg of 'backbone.layer2.0.bn1.weight' is not a tensor" },
        { "step a string", "'step' of 'backbone.layer2.0.bn1.weight' is not a number or a one-element tensor" },
        { "step two values", "'step' of 'backbone.layer2.0.bn1.weight' is not a number or a one-element tensor" },
        { "step zero", "'step' of 'backbone.layer2.0.bn1.weight' is 0; a saved step count is at least 1" },
        { "step NaN", "'step' of 'backbone.layer2.0.bn1.weight' is NaN; a saved step count is at least 1" },
        { "frozen", "frozen parameter 'backbone.bn1.weight' has AdamW state" },
        { "betas not a pair", "param group 'betas' is not a pair of numbers" },
        { "amsgrad", "amsgrad is set; GhmGen's AdamW has no AMSGrad" },
    };

    [Theory]
    [MemberData(nameof(MalformedAdamWStates))]
    public void Malformed_AdamW_state_is_a_format_error_naming_the_file_and_the_problem(string variant, string problem)
    {
        var net = new Net();
        int index = net.ParameterKeys.ToList().IndexOf(variant == "frozen" ? "backbone.bn1.weight" : "backbone.layer2.0.bn1.weight");
        string path = TempPath();
        try
        {
            WriteAdamWCheckpoint(path, net, index, (pickle, storages, p) =>
            {
                switch (variant)
                {
                    case "missing step": break;
                    case "step a string": pickle.String("step"); pickle.String("three"); break;
                    case "step two values": pickle.String("step"); pickle.Tensor(storages, StorageSource.Of([1f, 2f]), CheckpointDType.Float32, [2]); break;
                    case "step zero": Step(pickle, storages, 0); break;
                    case "step NaN": Step(pickle, storages, float.NaN); break;
                    default: Step(pickle, storages, 3); break;
                }
                switch (variant)
                {
                    case "missing exp_avg": break;
                    case "exp_avg wrong shape": Moment(pickle, storages, "exp_avg", p, [63]); break;
                    case "exp_avg not a tensor": pickle.String("exp_avg"); pickle.Value(PickleValue.FromDouble(0)); break;
                    default: Moment(pickle, storages, "exp_avg", p); break;
                }
                switch (variant)
                {
                    case "missing exp_avg_sq": break;
                    case "exp_avg_sq wrong shape": Moment(pickle, storages, "exp_avg_sq", p, [8, 8]); break;
                    default: Moment(pickle, storages, "exp_avg_sq", p); break;
                }
            },
            betas: variant == "betas not a pair" ? PickleValue.NewTuple(PickleValue.FromDouble(0.9)) : null,
            amsgrad: variant == "amsgrad");
            CheckpointFormatException e = Assert.Throws<CheckpointFormatException>(() => TrainingCheckpoint.Read(path, net.ParameterKeys, net.TrainedKeys));
            Assert.Equal(Path.GetFileName(path), e.FileName);
            Assert.Equal(problem, e.Problem);
            Assert.Contains(Path.GetFileName(path), e.Message, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void A_well_formed_hand_written_AdamW_state_reads_and_a_python_int_step_is_accepted()
    {
        var net = new Net();
        int index = net.ParameterKeys.ToList().IndexOf("backbone.layer2.0.bn1.weight");
        string path = TempPath();
        try
        {
            WriteAdamWCheckpoint(path, net, index, (pickle, storages, p) =>
            {
                pickle.String("step");
                pickle.Int(3); // torch before 1.12 kept a Python number
                Moment(pickle, storages, "exp_avg", p);
                Moment(pickle, storages, "exp_avg_sq", p);
            });
            using TrainingCheckpoint read = TrainingCheckpoint.Read(path, net.ParameterKeys, net.TrainedKeys);
            Assert.Equal(TrainingOptimizerKind.AdamW, read.OptimizerKind);
            Assert.Equal(3f, Assert.Single(read.AdamWStates).Value.Step);
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>
    /// Leaves an AdamW checkpoint after two steps, and what a third step must give, for
    /// tools/reference/verify_train_checkpoint.py (run by hand; CI has no Python).
    /// </summary>
    [Fact]
    public void Writes_an_AdamW_file_for_torch_to_verify()
    {
        var net = new Net();
        StepLrSchedule schedule = StepLrSchedule.Ghm1x(0.001);
        AdamWOptimizer optimizer = TrainAdamW(net, 2, schedule);
        Directory.CreateDirectory(VerifyDirectory);
        string path = Path.Combine(VerifyDirectory, "train_by_ghmgen_adamw.pth");
        TrainingCheckpoint.Write(path, net.State, optimizer, new TrainingProgress(0, 2, 2, 7));
        Dictionary<string, string> statesBefore = StateMap(net, optimizer);

        float norm = AdamWStep(net, optimizer, schedule, 2);
        using (var stream = File.Create(Path.Combine(VerifyDirectory, "train_by_ghmgen_adamw.expected.json")))
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteString("optimizer", "adamw");
            json.WriteNumber("weight_decay", AdamWDecay);
            WriteStrings(json, "parameter_keys", net.ParameterKeys);
            WriteStrings(json, "trained_keys", net.TrainedKeys);
            json.WriteNumber("epoch", 0);
            json.WriteNumber("iter", 2);
            json.WriteNumber("iter_in_epoch", 2);
            json.WriteNumber("data_seed", 7);
            json.WriteNumber("lr_saved", schedule.LearningRate(0, 1));
            json.WriteNumber("initial_lr", 0.001);
            WriteMap(json, "states_saved", statesBefore);
            json.WriteStartObject("next_step");
            json.WriteNumber("lr", optimizer.LearningRate);
            json.WriteString("gradient", "seeded_weights.uniform(f'grad2/{key}', n, -0.5, 0.5), trained keys only");
            json.WriteNumber("max_norm", GradientClipping.MmdetectionMaxNorm);
            json.WriteNumber("grad_norm_f32", BitConverter.SingleToUInt32Bits(norm));
            WriteMap(json, "parameters", net.Parameters.ToDictionary(p => p.Key, p => TrainingFixtures.Sha(p.Data)));
            WriteMap(json, "states", StateMap(net, optimizer));
            json.WriteEndObject();
            json.WriteEndObject();
        }
        Assert.True(File.Exists(path));
    }

    /// <summary>"step sha(exp_avg) sha(exp_avg_sq)" by key, as verify_train_checkpoint.py prints them.</summary>
    private static Dictionary<string, string> StateMap(Net net, AdamWOptimizer optimizer) =>
        Enumerable.Range(0, net.Parameters.Count).Where(i => optimizer.State(i) != null)
            .ToDictionary(i => net.Parameters[i].Key, i => StateSha(optimizer.State(i))!);

    private static void WriteStrings(Utf8JsonWriter json, string name, IEnumerable<string> values)
    {
        json.WriteStartArray(name);
        foreach (string value in values) json.WriteStringValue(value);
        json.WriteEndArray();
    }

    private static void WriteMap(Utf8JsonWriter json, string name, IReadOnlyDictionary<string, string> values)
    {
        json.WriteStartObject(name);
        foreach (KeyValuePair<string, string> entry in values) json.WriteString(entry.Key, entry.Value);
        json.WriteEndObject();
    }
}
