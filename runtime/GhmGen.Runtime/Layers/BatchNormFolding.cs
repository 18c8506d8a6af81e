namespace GhmGen.Layers;

/// <summary>Folds a frozen batch norm (running statistics) into the convolution before it.</summary>
public static class BatchNormFolding
{
    /// <summary>
    /// weight'[o,...] = weight[o,...] * gamma[o] / sqrt(var[o] + eps);
    /// bias'[o] = (bias[o] - mean[o]) * gamma[o] / sqrt(var[o] + eps) + beta[o].
    /// <paramref name="weight"/> is [out, ...] and <paramref name="bias"/> [out] (zeros when the conv has none).
    /// Computed in double, rounded once to float.
    /// </summary>
    public static void Fold(Span<float> weight, Span<float> bias, ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta,
        ReadOnlySpan<float> runningMean, ReadOnlySpan<float> runningVar, double eps = 1e-5)
    {
        int outChannels = bias.Length;
        if (gamma.Length != outChannels || beta.Length != outChannels || runningMean.Length != outChannels || runningVar.Length != outChannels)
            throw new ArgumentException($"batch norm has {gamma.Length} channels; the convolution has {outChannels}");
        if (weight.Length % outChannels != 0)
            throw new ArgumentException($"weight length {weight.Length} is not a multiple of {outChannels} output channels");
        int perOut = weight.Length / outChannels;
        for (int o = 0; o < outChannels; o++)
        {
            double scale = gamma[o] / Math.Sqrt(runningVar[o] + eps);
            Span<float> w = weight.Slice(o * perOut, perOut);
            for (int i = 0; i < w.Length; i++) w[i] = (float)(w[i] * scale);
            bias[o] = (float)((bias[o] - runningMean[o]) * scale + beta[o]);
        }
    }
}
