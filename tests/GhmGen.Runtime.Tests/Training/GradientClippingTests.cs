using System.Text.Json;
using GhmGen.Layers;
using GhmGen.Training;

namespace GhmGen.Runtime.Tests.Training;

/// <summary><see cref="GradientClipping"/> against torch 1.13's clip_grad_norm_ (Fixtures/Training/sgd_reference.json).</summary>
public sealed class GradientClippingTests
{
    [Fact]
    public void Norms_and_clipped_gradients_equal_torch_bit_for_bit()
    {
        JsonElement fixture = TrainingFixtures.Json("sgd_reference.json");
        JsonElement[] parameters = [.. fixture.GetProperty("parameters").EnumerateArray()];
        int step = 0;
        foreach (JsonElement expected in fixture.GetProperty("steps").EnumerateArray())
        {
            double half = expected.GetProperty("gradient_half_range").GetDouble();
            var gradients = new List<(string Key, float[] Gradient)>();
            foreach (JsonElement p in parameters)
            {
                string key = p.GetProperty("key").GetString()!, role = p.GetProperty("role").GetString()!;
                long n = p.GetProperty("shape").EnumerateArray().Aggregate(1L, (a, d) => a * d.GetInt32());
                if (role == "trained" || (role == "late" && step >= 2)) gradients.Add((key, TrainingFixtures.Uniform($"grad{step}/{key}", n, -half, half)));
            }
            float[] norms = [.. expected.GetProperty("norms_f32").EnumerateArray().Select(TrainingFixtures.Bits)];
            Assert.Equal(norms, gradients.Select(g => GradientClipping.L2Norm(g.Gradient)));

            float total = GradientClipping.ClipGradNorm(gradients.Select(g => g.Gradient).ToArray<float[]?>());
            Assert.Equal(TrainingFixtures.Bits(expected.GetProperty("total_norm_f32")), total);
            Assert.Equal(TrainingFixtures.Bits(expected.GetProperty("clip_coef_f32")), GradientClipping.ClipCoefficient(total));
            JsonElement clipped = expected.GetProperty("clipped_gradients");
            foreach ((string key, float[] gradient) in gradients) Assert.Equal(clipped.GetProperty(key).GetString(), TrainingFixtures.Sha(gradient));
            step++;
        }
    }

    [Fact]
    public void Norm_matches_torchs_lane_order_for_every_tail_length()
    {
        // Hand-written torch CPU algorithm: 8 fused lanes, lanes summed in order, fused tail.
        for (int n = 0; n <= 40; n++)
        {
            float[] x = TrainingFixtures.Uniform("tail", n, -3, 3);
            var lanes = new float[8];
            int body = n - n % 8;
            for (int i = 0; i < body; i++) lanes[i % 8] = MathF.FusedMultiplyAdd(x[i], x[i], lanes[i % 8]);
            float sum = lanes[0];
            for (int j = 1; j < 8; j++) sum += lanes[j];
            for (int i = body; i < n; i++) sum = MathF.FusedMultiplyAdd(x[i], x[i], sum);
            Assert.Equal(MathF.Sqrt(sum), GradientClipping.L2Norm(x));
        }
    }

    [Fact]
    public void Small_gradients_are_left_alone_and_the_norm_before_clipping_is_returned()
    {
        float[] a = [3, 0], b = [4];
        float total = GradientClipping.ClipGradNorm([a, null, b]);
        Assert.Equal(5f, total);
        Assert.Equal([3f, 0f], a);
        Assert.Equal([4f], b);

        float[] big = [300, 400];
        Assert.Equal(500f, GradientClipping.ClipGradNorm([big], maxNorm: 35));
        float coefficient = 1f / (500f + 1e-6f) * 35f;
        Assert.Equal([300 * coefficient, 400 * coefficient], big);
    }

    [Fact]
    public void Parallel_and_serial_clipping_agree_bitwise()
    {
        float[][] serial = [.. Enumerable.Range(0, 9).Select(i => TrainingFixtures.Uniform($"par{i}", 70_000 + i * 13, -1, 1))];
        float[][] parallel = [.. serial.Select(g => (float[])g.Clone())];
        Assert.Equal(GradientClipping.ClipGradNorm(serial, maxNorm: 1, maxDegreeOfParallelism: 1), GradientClipping.ClipGradNorm(parallel, maxNorm: 1, maxDegreeOfParallelism: -1));
        for (int i = 0; i < serial.Length; i++) Assert.Equal(TrainingFixtures.Sha(serial[i]), TrainingFixtures.Sha(parallel[i]));
    }

    [Fact]
    public void No_gradients_give_zero_and_a_non_finite_norm_poisons_the_gradients_as_in_torch()
    {
        Assert.Equal(0f, GradientClipping.ClipGradNorm(Array.Empty<float[]?>()));
        Assert.Equal(0f, GradientClipping.ClipGradNorm([null]));

        float[] g = [1, float.NaN];
        Assert.True(float.IsNaN(GradientClipping.ClipGradNorm([g])));
        Assert.True(float.IsNaN(g[0]));
        Assert.Equal(0f, GradientClipping.ClipCoefficient(float.PositiveInfinity));
    }

    [Fact]
    public void Parameter_pairs_are_checked_for_length()
    {
        var p = new StateTensor("w", [3], StateKind.Parameter);
        Assert.Throws<ArgumentException>(() => GradientClipping.ClipGradNorm([new ParameterWithGradient(p, new float[2])]));
        Assert.Equal(0f, GradientClipping.ClipGradNorm([new ParameterWithGradient(p, null)]));
    }
}
