using System.Text.Json;
using GhmGen.Layers;
using GhmGen.Training;

namespace GhmGen.Runtime.Tests.Training;

/// <summary><see cref="SgdOptimizer"/> against torch 1.13's SGD (Fixtures/Training/sgd_reference.json).</summary>
public sealed class SgdOptimizerTests
{
    /// <summary>Runs the fixture's three clip + step iterations; returns the optimiser.</summary>
    private static SgdOptimizer Replay(List<TrainingFixtures.OptimizerParameter> parameters, JsonElement fixture, int threads, Action<int, JsonElement, SgdOptimizer>? check = null)
    {
        var optimizer = new SgdOptimizer(parameters.Select(p => p.Tensor), 0.01, fixture.GetProperty("momentum").GetDouble(), fixture.GetProperty("weight_decay").GetDouble())
        {
            MaxDegreeOfParallelism = threads,
        };
        int step = 0;
        foreach (JsonElement expected in fixture.GetProperty("steps").EnumerateArray())
        {
            optimizer.LearningRate = expected.GetProperty("lr").GetDouble();
            List<ParameterWithGradient> gradients = TrainingFixtures.OptimizerGradients(parameters, step, expected.GetProperty("gradient_half_range").GetDouble());
            GradientClipping.ClipGradNorm(gradients, fixture.GetProperty("max_norm").GetDouble(), threads);
            optimizer.Step(gradients);
            check?.Invoke(step, expected, optimizer);
            step++;
        }
        return optimizer;
    }

    [Fact]
    public void Three_clipped_steps_equal_torch_bit_for_bit()
    {
        JsonElement fixture = TrainingFixtures.Json("sgd_reference.json");
        List<TrainingFixtures.OptimizerParameter> parameters = TrainingFixtures.OptimizerParameters(fixture);
        Replay(parameters, fixture, threads: -1, (step, expected, optimizer) =>
        {
            for (int i = 0; i < parameters.Count; i++)
            {
                StateTensor p = parameters[i].Tensor;
                Assert.Equal(expected.GetProperty("sample").GetProperty(p.Key).EnumerateArray().Select(TrainingFixtures.Bits), p.Data.Take(4));
                Assert.Equal(expected.GetProperty("parameters").GetProperty(p.Key).GetString(), TrainingFixtures.Sha(p.Data));
                float[]? buffer = optimizer.MomentumBuffer(i);
                if (expected.GetProperty("buffers").TryGetProperty(p.Key, out JsonElement sha))
                {
                    Assert.NotNull(buffer);
                    Assert.Equal(sha.GetString(), TrainingFixtures.Sha(buffer));
                }
                else
                {
                    Assert.Null(buffer); // frozen, or "late" before its first gradient
                }
            }
        });
    }

    [Fact]
    public void Results_do_not_depend_on_the_thread_count()
    {
        JsonElement fixture = TrainingFixtures.Json("sgd_reference.json");
        List<TrainingFixtures.OptimizerParameter> one = TrainingFixtures.OptimizerParameters(fixture), all = TrainingFixtures.OptimizerParameters(fixture);
        SgdOptimizer a = Replay(one, fixture, threads: 1), b = Replay(all, fixture, threads: -1);
        for (int i = 0; i < one.Count; i++)
        {
            Assert.Equal(TrainingFixtures.Sha(one[i].Tensor.Data), TrainingFixtures.Sha(all[i].Tensor.Data));
            Assert.Equal(a.MomentumBuffer(i) is { } x ? TrainingFixtures.Sha(x) : null, b.MomentumBuffer(i) is { } y ? TrainingFixtures.Sha(y) : null);
        }
    }

    [Fact]
    public void Update_follows_torchs_operation_order()
    {
        var p = new StateTensor("w", [9], StateKind.Parameter);
        float[] initial = TrainingFixtures.Uniform("w0", 9, -1, 1);
        initial.CopyTo(p.Data);
        float[] g1 = TrainingFixtures.Uniform("g1", 9, -1, 1), g2 = TrainingFixtures.Uniform("g2", 9, -1, 1);
        var optimizer = new SgdOptimizer([p], 0.01);
        optimizer.Step([new ParameterWithGradient(p, g1)]);
        optimizer.LearningRate = 0.005005;
        optimizer.Step([new ParameterWithGradient(p, g2)]);

        float wd = 1e-4f, m = 0.9f;
        for (int i = 0; i < 9; i++)
        {
            float w = initial[i];
            float d = MathF.FusedMultiplyAdd(w, wd, g1[i]);
            float buf = d; // clone of d on the first step
            w = MathF.FusedMultiplyAdd(buf, -0.01f, w);
            d = MathF.FusedMultiplyAdd(w, wd, g2[i]);
            float scaled = buf * m;
            buf = scaled + d;
            w = MathF.FusedMultiplyAdd(buf, (float)-0.005005, w);
            Assert.Equal(w, p.Data[i]);
            Assert.Equal(buf, optimizer.MomentumBuffer(0)![i]);
        }
        Assert.Equal(2, optimizer.StepCount);
    }

    [Fact]
    public void Parameters_without_gradient_are_untouched_and_get_no_buffer()
    {
        var frozen = new StateTensor("frozen", [5], StateKind.Parameter);
        var trained = new StateTensor("trained", [5], StateKind.Parameter);
        frozen.Data.AsSpan().Fill(2f);
        trained.Data.AsSpan().Fill(2f);
        var optimizer = new SgdOptimizer([frozen, trained], 0.1);
        optimizer.Step([new ParameterWithGradient(frozen, null), new ParameterWithGradient(trained, new float[] { 1, 1, 1, 1, 1 })]);
        optimizer.Step([new ParameterWithGradient(trained, new float[] { 1, 1, 1, 1, 1 })]);
        Assert.All(frozen.Data, v => Assert.Equal(2f, v));
        Assert.Null(optimizer.MomentumBuffer(0));
        Assert.NotNull(optimizer.MomentumBuffer(1));
        Assert.NotEqual(2f, trained.Data[0]);
    }

    [Fact]
    public void Without_momentum_or_decay_it_is_plain_gradient_descent()
    {
        var p = new StateTensor("w", [3], StateKind.Parameter);
        p.Data[0] = 1; p.Data[1] = 2; p.Data[2] = 3;
        var optimizer = new SgdOptimizer([p], 0.5, momentum: 0, weightDecay: 0);
        optimizer.Step([new ParameterWithGradient(p, new float[] { 1, -2, 0 })]);
        Assert.Equal([0.5f, 3f, 3f], p.Data);
        Assert.Null(optimizer.MomentumBuffer(0));
    }

    [Fact]
    public void Bad_arguments_are_refused()
    {
        var p = new StateTensor("w", [3], StateKind.Parameter);
        var buffer = new StateTensor("b", [3], StateKind.Buffer);
        var stranger = new StateTensor("x", [3], StateKind.Parameter);
        Assert.Throws<ArgumentException>(() => new SgdOptimizer([buffer], 0.1));
        Assert.Throws<ArgumentException>(() => new SgdOptimizer([p, p], 0.1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new SgdOptimizer([p], double.NaN));
        var optimizer = new SgdOptimizer([p], 0.1);
        Assert.Throws<ArgumentException>(() => optimizer.Step([new ParameterWithGradient(stranger, new float[3])]));
        Assert.Throws<ArgumentException>(() => optimizer.Step([new ParameterWithGradient(p, new float[2])]));
        Assert.Throws<ArgumentException>(() => optimizer.Step([new ParameterWithGradient(p, new float[3]), new ParameterWithGradient(p, new float[3])]));
        Assert.Throws<ArgumentException>(() => optimizer.SetMomentumBuffer(0, new float[2]));
        Assert.Equal(0, optimizer.StepCount);
    }

    [Fact]
    public void Float32_step_scale_is_the_rounded_negative_lr()
    {
        var optimizer = new SgdOptimizer([new StateTensor("w", [1], StateKind.Parameter)], 0.005005);
        Assert.Equal(3148087548u, BitConverter.SingleToUInt32Bits(optimizer.Float32StepScale)); // numpy float32(-0.005005)
    }
}
