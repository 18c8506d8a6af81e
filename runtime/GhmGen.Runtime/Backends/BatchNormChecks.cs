namespace GhmGen.Backends;

/// <summary>The argument checks every backend's batch-statistics batch norm ops share.</summary>
internal static class BatchNormChecks
{
    /// <summary>Checks the operands of <see cref="ITrainingBackend.BatchNormTraining"/>.</summary>
    public static void Forward(TensorView x, TensorView weight, TensorView bias, TensorView? residual, TensorView y, TensorView mean, TensorView variance)
    {
        if (y.N != x.N || y.C != x.C || y.H != x.H || y.W != x.W)
            throw new ArgumentException($"batch norm: output {y.ShapeText} differs from input {x.ShapeText}", nameof(y));
        if (residual is { } r && (r.N != x.N || r.C != x.C || r.H != x.H || r.W != x.W))
            throw new ArgumentException($"batch norm: residual {r.ShapeText} differs from input {x.ShapeText}", nameof(residual));
        Channels(x, weight, nameof(weight));
        Channels(x, bias, nameof(bias));
        Channels(x, mean, nameof(mean));
        Channels(x, variance, nameof(variance));
        Count(x);
        if (Overlaps(x, y) || residual is { } rr && Overlaps(rr, y))
            throw new ArgumentException("batch norm: the output overlaps the input or the residual", nameof(y));
        if (Overlaps(mean, variance) || Overlaps(mean, y) || Overlaps(variance, y) || Overlaps(mean, x) || Overlaps(variance, x))
            throw new ArgumentException("batch norm: the statistics overlap each other or a tensor", nameof(mean));
    }

    /// <summary>Checks the operands of <see cref="ITrainingBackend.BatchNormTrainingBackward"/>.</summary>
    public static void Backward(TensorView x, TensorView dy, TensorView weight, TensorView mean, TensorView variance,
        TensorView? dx, TensorView dWeight, TensorView dBias)
    {
        if (dy.N != x.N || dy.C != x.C || dy.H != x.H || dy.W != x.W)
            throw new ArgumentException($"batch norm backward: output gradient {dy.ShapeText} differs from input {x.ShapeText}", nameof(dy));
        if (dx is { } d && (d.N != x.N || d.C != x.C || d.H != x.H || d.W != x.W))
            throw new ArgumentException($"batch norm backward: input gradient {d.ShapeText} differs from input {x.ShapeText}", nameof(dx));
        Channels(x, weight, nameof(weight));
        Channels(x, mean, nameof(mean));
        Channels(x, variance, nameof(variance));
        Channels(x, dWeight, nameof(dWeight));
        Channels(x, dBias, nameof(dBias));
        Count(x);
        if (dx is { } g && (Overlaps(g, x) || Overlaps(g, dy) && (!ReferenceEquals(g.Buffer, dy.Buffer) || g.Offset != dy.Offset)))
            throw new ArgumentException("batch norm backward: the input gradient overlaps the input, or the output gradient without being the same tensor", nameof(dx));
        if (Overlaps(dWeight, dBias))
            throw new ArgumentException("batch norm backward: the weight and bias gradients overlap", nameof(dBias));
    }

    private static void Channels(TensorView x, TensorView perChannel, string name)
    {
        if (perChannel.ElementCount != x.C)
            throw new ArgumentException($"batch norm: {name} {perChannel.ShapeText} does not hold the {x.C} channels of {x.ShapeText}", name);
    }

    private static void Count(TensorView x)
    {
        if ((long)x.N * x.H * x.W < 2 && x.C > 0)
            throw new ArgumentException($"batch norm with batch statistics needs more than 1 value per channel, got input {x.ShapeText} (as PyTorch in train mode)", nameof(x));
    }

    private static bool Overlaps(TensorView a, TensorView b) =>
        ReferenceEquals(a.Buffer, b.Buffer) && a.ElementCount > 0 && b.ElementCount > 0 && a.Offset < b.Offset + b.ElementCount && b.Offset < a.Offset + a.ElementCount;
}
