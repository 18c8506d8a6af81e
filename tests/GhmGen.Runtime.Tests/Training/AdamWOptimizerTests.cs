using System.Text.Json;
using GhmGen.Layers;
using GhmGen.Training;

namespace GhmGen.Runtime.Tests.Training;

/// <summary><see cref="AdamWOptimizer"/> against torch 1.13's AdamW (Fixtures/Training/adamw_reference.json).</summary>
public sealed class AdamWOptimizerTests
{
    private static AdamWOptimizer Create(List<TrainingFixtures.OptimizerParameter> parameters, JsonElement fixture, int threads)
    {
        JsonElement betas = fixture.GetProperty("betas");
        return new AdamWOptimizer(parameters.Select(p => p.Tensor), 0.001, fixture.GetProperty("weight_decay").GetDouble(),
            betas[0].GetDouble(), betas[1].GetDouble(), fixture.GetProperty("eps").GetDouble())
        {
            MaxDegreeOfParallelism = threads,
        };
    }

    /// <summary>Runs the fixture's three steps (no clipping); returns the optimiser.</summary>
    private static AdamWOptimizer Replay(List<TrainingFixtures.OptimizerParameter> parameters, JsonElement fixture, int threads, Action<int, JsonElement, AdamWOptimizer>? check = null)
    {
        AdamWOptimizer optimizer = Create(parameters, fixture, threads);
        int step = 0;
        foreach (JsonElement expected in fixture.GetProperty("steps").EnumerateArray())
        {
            optimizer.LearningRate = expected.GetProperty("lr").GetDouble();
            optimizer.Step(TrainingFixtures.OptimizerGradients(parameters, step, expected.GetProperty("gradient_half_range").GetDouble()));
            check?.Invoke(step, expected, optimizer);
            step++;
        }
        return optimizer;
    }

    [Fact]
    public void Three_steps_equal_torch_bit_for_bit()
    {
        JsonElement fixture = TrainingFixtures.Json("adamw_reference.json");
        List<TrainingFixtures.OptimizerParameter> parameters = TrainingFixtures.OptimizerParameters(fixture);
        Replay(parameters, fixture, threads: -1, (step, expected, optimizer) =>
        {
            for (int i = 0; i < parameters.Count; i++)
            {
                StateTensor p = parameters[i].Tensor;
                AdamWParameterState? state = optimizer.State(i);
                if (expected.GetProperty("step").TryGetProperty(p.Key, out JsonElement count))
                {
                    Assert.NotNull(state);
                    Assert.Equal(count.GetDouble(), state.Step);
                    Assert.Equal(expected.GetProperty("exp_avg_sample").GetProperty(p.Key).EnumerateArray().Select(TrainingFixtures.Bits), state.ExpAvg.Take(4));
                    Assert.Equal(expected.GetProperty("exp_avg_sq_sample").GetProperty(p.Key).EnumerateArray().Select(TrainingFixtures.Bits), state.ExpAvgSq.Take(4));
                    Assert.Equal(expected.GetProperty("exp_avg").GetProperty(p.Key).GetString(), TrainingFixtures.Sha(state.ExpAvg));
                    Assert.Equal(expected.GetProperty("exp_avg_sq").GetProperty(p.Key).GetString(), TrainingFixtures.Sha(state.ExpAvgSq));
                }
                else
                {
                    Assert.Null(state); // frozen, or "late" before its first gradient
                }
                Assert.Equal(expected.GetProperty("sample").GetProperty(p.Key).EnumerateArray().Select(TrainingFixtures.Bits), p.Data.Take(4));
                Assert.Equal(expected.GetProperty("parameters").GetProperty(p.Key).GetString(), TrainingFixtures.Sha(p.Data));
            }
        });
    }

    [Fact]
    public void Results_do_not_depend_on_the_thread_count()
    {
        JsonElement fixture = TrainingFixtures.Json("adamw_reference.json");
        List<TrainingFixtures.OptimizerParameter> one = TrainingFixtures.OptimizerParameters(fixture), all = TrainingFixtures.OptimizerParameters(fixture);
        AdamWOptimizer a = Replay(one, fixture, threads: 1), b = Replay(all, fixture, threads: -1);
        for (int i = 0; i < one.Count; i++)
        {
            Assert.Equal(TrainingFixtures.Sha(one[i].Tensor.Data), TrainingFixtures.Sha(all[i].Tensor.Data));
            Assert.Equal(a.State(i) is { } x ? TrainingFixtures.Sha(x.ExpAvg) + TrainingFixtures.Sha(x.ExpAvgSq) : null,
                b.State(i) is { } y ? TrainingFixtures.Sha(y.ExpAvg) + TrainingFixtures.Sha(y.ExpAvgSq) : null);
        }
    }

    [Fact]
    public void Update_follows_torchs_operation_order()
    {
        var p = new StateTensor("w", [11], StateKind.Parameter);
        float[] initial = TrainingFixtures.Uniform("w0", 11, -1, 1);
        initial.CopyTo(p.Data);
        float[] g1 = TrainingFixtures.Uniform("g1", 11, -1, 1), g2 = TrainingFixtures.Uniform("g2", 11, -1e-3, 1e-3);
        var optimizer = new AdamWOptimizer([p], 0.01, weightDecay: 0.05);
        optimizer.Step([new ParameterWithGradient(p, g1)]);
        optimizer.LearningRate = 0.005005;
        optimizer.Step([new ParameterWithGradient(p, g2)]);

        for (int i = 0; i < 11; i++)
        {
            float w = initial[i], m = 0, v = 0;
            int step = 0;
            foreach ((double lr, float g) in new[] { (0.01, g1[i]), (0.005005, g2[i]) })
            {
                step++;
                w *= (float)(1 - lr * 0.05);
                m = MathF.FusedMultiplyAdd(g, (float)(1 - 0.9), m * 0.9f);
                float scaled = (float)(1 - 0.999) * g;
                v = MathF.FusedMultiplyAdd(scaled, g, v * 0.999f);
                float root = MathF.Sqrt(v) / (float)Math.Sqrt(1 - Math.Pow(0.999, step));
                float denom = root + 1e-8f;
                float product = (float)-(lr / (1 - Math.Pow(0.9, step))) * m;
                float quotient = product / denom;
                w += quotient;
            }
            Assert.Equal(w, p.Data[i]);
            Assert.Equal(m, optimizer.State(0)!.ExpAvg[i]);
            Assert.Equal(v, optimizer.State(0)!.ExpAvgSq[i]);
        }
        Assert.Equal(2f, optimizer.State(0)!.Step);
        Assert.Equal(2, optimizer.StepCount);
    }

    [Fact]
    public void Parameters_without_gradient_are_untouched_and_get_no_state()
    {
        var frozen = new StateTensor("frozen", [5], StateKind.Parameter);
        var trained = new StateTensor("trained", [5], StateKind.Parameter);
        var late = new StateTensor("late", [5], StateKind.Parameter);
        foreach (StateTensor t in (StateTensor[])[frozen, trained, late]) t.Data.AsSpan().Fill(2f);
        var optimizer = new AdamWOptimizer([frozen, trained, late], 0.1, weightDecay: 0.5);
        optimizer.Step([new ParameterWithGradient(frozen, null), new ParameterWithGradient(trained, [1, 1, 1, 1, 1])]);
        optimizer.Step([new ParameterWithGradient(trained, [1, 1, 1, 1, 1]), new ParameterWithGradient(late, [1, 1, 1, 1, 1])]);
        Assert.All(frozen.Data, v => Assert.Equal(2f, v)); // no decay without a gradient either
        Assert.Null(optimizer.State(0));
        Assert.Equal(2f, optimizer.State(1)!.Step);
        Assert.Equal(1f, optimizer.State(2)!.Step); // its own count, from its first gradient
        Assert.NotEqual(2f, trained.Data[0]);
        Assert.Equal(TrainingOptimizerKind.AdamW, optimizer.Kind);
    }

    [Fact]
    public void State_can_be_set_and_cleared()
    {
        var p = new StateTensor("w", [3], StateKind.Parameter);
        var optimizer = new AdamWOptimizer([p], 0.1);
        var state = new AdamWParameterState(4, [1, 2, 3], [4, 5, 6]);
        optimizer.SetState(0, state);
        Assert.Same(state.ExpAvg, optimizer.State(0)!.ExpAvg);
        optimizer.Step([new ParameterWithGradient(p, new float[3])]);
        Assert.Equal(5f, optimizer.State(0)!.Step);
        optimizer.SetState(0, null);
        Assert.Null(optimizer.State(0));
        Assert.Throws<ArgumentException>(() => optimizer.SetState(0, new AdamWParameterState(1, new float[2], new float[3])));
        Assert.Throws<ArgumentException>(() => optimizer.SetState(0, new AdamWParameterState(1, new float[3], new float[4])));
        Assert.Throws<ArgumentOutOfRangeException>(() => optimizer.SetState(0, new AdamWParameterState(0, new float[3], new float[3])));
        Assert.Throws<ArgumentOutOfRangeException>(() => optimizer.SetState(0, new AdamWParameterState(float.NaN, new float[3], new float[3])));
        Assert.Throws<ArgumentOutOfRangeException>(() => optimizer.SetState(1, null));
    }

    [Fact]
    public void Bad_arguments_are_refused()
    {
        var p = new StateTensor("w", [3], StateKind.Parameter);
        var buffer = new StateTensor("b", [3], StateKind.Buffer);
        var stranger = new StateTensor("x", [3], StateKind.Parameter);
        Assert.Throws<ArgumentException>(() => new AdamWOptimizer([buffer], 0.1));
        Assert.Throws<ArgumentException>(() => new AdamWOptimizer([p, p], 0.1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new AdamWOptimizer([p], double.NaN));
        Assert.Throws<ArgumentOutOfRangeException>(() => new AdamWOptimizer([p], 0.1, weightDecay: -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new AdamWOptimizer([p], 0.1, beta1: 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new AdamWOptimizer([p], 0.1, beta2: -0.1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new AdamWOptimizer([p], 0.1, epsilon: double.NaN));
        var optimizer = new AdamWOptimizer([p], 0.1);
        Assert.Throws<ArgumentException>(() => optimizer.Step([new ParameterWithGradient(stranger, new float[3])]));
        Assert.Throws<ArgumentException>(() => optimizer.Step([new ParameterWithGradient(p, new float[2])]));
        Assert.Throws<ArgumentException>(() => optimizer.Step([new ParameterWithGradient(p, new float[3]), new ParameterWithGradient(p, new float[3])]));
        Assert.Null(optimizer.State(0));
        Assert.Equal(0, optimizer.StepCount);
    }
}
