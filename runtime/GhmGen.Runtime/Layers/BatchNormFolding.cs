namespace GhmGen.Layers;

/// <summary>
/// Folds a batch norm with running statistics into the convolution before it, and maps the
/// gradients of the folded weights back to the convolution's and the batch norm's own
/// (training with norm_eval: the statistics stay fixed, so conv + BN stays one convolution).
/// Reference test: tests/GhmGen.Runtime.Tests/Layers/BatchNormFoldingTests.cs (finite differences).
/// </summary>
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

    /// <summary>
    /// The gradients of a convolution and of the batch norm folded into it, from the gradients of
    /// the folded weight and bias (<see cref="Fold"/> run backwards). With s = sqrt(var + eps) and
    /// a = gamma / s, the folded weights are W' = a W and b' = a (b - mean) + beta, so
    /// dW = a dW'; db = a db'; dBeta = db'; dGamma[o] = (sum_k dW'[o,k] W[o,k] + db'[o] (b[o] - mean[o])) / s.
    /// <paramref name="weight"/> and <paramref name="foldedWeightGradient"/> are [out, ...];
    /// <paramref name="bias"/> is [out], or empty for a convolution without bias (b = 0).
    /// Each gradient span may be empty when that gradient is not wanted (a frozen parameter);
    /// <paramref name="foldedBiasGradient"/> may be empty when neither db, dGamma nor dBeta is wanted.
    /// Computed in double, rounded once to float. <paramref name="foldedWeightGradient"/> may be
    /// <paramref name="weightGradient"/> itself and <paramref name="foldedBiasGradient"/>
    /// <paramref name="betaGradient"/> itself (unfolding in place); no other spans may overlap.
    /// </summary>
    public static void UnfoldGradients(
        ReadOnlySpan<float> foldedWeightGradient, ReadOnlySpan<float> foldedBiasGradient,
        ReadOnlySpan<float> weight, ReadOnlySpan<float> bias,
        ReadOnlySpan<float> gamma, ReadOnlySpan<float> runningMean, ReadOnlySpan<float> runningVar,
        Span<float> weightGradient, Span<float> biasGradient, Span<float> gammaGradient, Span<float> betaGradient,
        double eps = 1e-5)
    {
        int outChannels = gamma.Length;
        if (runningMean.Length != outChannels || runningVar.Length != outChannels)
            throw new ArgumentException($"batch norm statistics have {runningMean.Length} and {runningVar.Length} channels; gamma has {outChannels}");
        if (outChannels == 0 || weight.Length % outChannels != 0 || foldedWeightGradient.Length != weight.Length)
            throw new ArgumentException($"weight ({weight.Length}) and its folded gradient ({foldedWeightGradient.Length}) must be the same multiple of {outChannels} output channels");
        if (bias.Length is not 0 && bias.Length != outChannels)
            throw new ArgumentException($"bias has {bias.Length} elements; expected 0 or {outChannels}", nameof(bias));
        bool needBias = biasGradient.Length > 0 || gammaGradient.Length > 0 || betaGradient.Length > 0;
        if (needBias && foldedBiasGradient.Length != outChannels)
            throw new ArgumentException($"the folded bias gradient has {foldedBiasGradient.Length} elements; expected {outChannels}", nameof(foldedBiasGradient));
        if (weightGradient.Length is not 0 && weightGradient.Length != weight.Length)
            throw new ArgumentException($"weight gradient has {weightGradient.Length} elements; expected {weight.Length}", nameof(weightGradient));
        if (biasGradient.Length is not 0 && (biasGradient.Length != outChannels || bias.Length == 0))
            throw new ArgumentException($"bias gradient has {biasGradient.Length} elements; expected {outChannels} for a convolution with bias", nameof(biasGradient));
        if (gammaGradient.Length is not 0 && gammaGradient.Length != outChannels)
            throw new ArgumentException($"gamma gradient has {gammaGradient.Length} elements; expected {outChannels}", nameof(gammaGradient));
        if (betaGradient.Length is not 0 && betaGradient.Length != outChannels)
            throw new ArgumentException($"beta gradient has {betaGradient.Length} elements; expected {outChannels}", nameof(betaGradient));

        int perOut = weight.Length / outChannels;
        for (int o = 0; o < outChannels; o++)
        {
            double s = Math.Sqrt(runningVar[o] + eps), a = gamma[o] / s;
            // Everything of channel o is read before any of it is written: the folded gradients may be the
            // weight and beta gradients' own memory (unfolded in place, TrainedConv).
            ReadOnlySpan<float> dw = foldedWeightGradient.Slice(o * perOut, perOut), w = weight.Slice(o * perOut, perOut);
            double db = needBias ? foldedBiasGradient[o] : 0;
            if (gammaGradient.Length > 0)
            {
                double sum = 0;
                for (int i = 0; i < perOut; i++) sum += (double)dw[i] * w[i];
                double b = bias.Length > 0 ? bias[o] : 0;
                gammaGradient[o] = (float)((sum + db * (b - runningMean[o])) / s);
            }
            if (weightGradient.Length > 0)
            {
                Span<float> g = weightGradient.Slice(o * perOut, perOut);
                for (int i = 0; i < perOut; i++) g[i] = (float)(dw[i] * a);
            }
            if (biasGradient.Length > 0) biasGradient[o] = (float)(db * a);
            if (betaGradient.Length > 0) betaGradient[o] = (float)db;
        }
    }
}
