using System.Collections.Generic;
using System.Linq;
using GhmGen.Generators.Models;

namespace GhmGen.Generators.Planning;

/// <summary>
/// The reverse pass of a fused forward: for each forward call, last first, the gradient calls
/// that trained parameters need. A value gets a gradient only when it reaches an output and a
/// trained parameter lies on or below it, so nothing is computed for frozen layers or below the
/// lowest trained one. A gradient's first contribution overwrites, later ones accumulate (a
/// value read by several calls, shared weights applied several times).
/// </summary>
internal static class BackwardPlanner
{
    public static List<BackwardStep> Plan(NetworkModel m, IReadOnlyList<ForwardStep> forward, List<TrainedConvModel> trained, int norms)
    {
        var trainedIndex = new Dictionary<int, int>();
        foreach (TrainedConvModel t in trained) trainedIndex[t.Conv] = trainedIndex.Count;

        int values = m.Values.Count;
        var isOutput = new bool[values];
        foreach (OutputModel o in m.Outputs) isOutput[o.Value] = true;

        // Values that some output depends on.
        var reaches = (bool[])isOutput.Clone();
        for (int i = forward.Count - 1; i >= 0; i--)
            if (reaches[forward[i].Output])
                foreach (int r in forward[i].Reads) reaches[r] = true;

        // Values whose gradient is needed: they reach an output, and a trained conv or batch norm
        // (batch statistics, always trained) makes or feeds them.
        var need = new bool[values];
        foreach (ForwardStep s in forward)
            need[s.Output] = reaches[s.Output] && (s is ConvStep c && trainedIndex.ContainsKey(c.Conv) || s is BatchNormStep || s.Reads.Any(r => need[r]));

        var steps = new List<BackwardStep>();
        var hasGradient = (bool[])isOutput.Clone(); // the caller writes the output gradients
        var weightsSeen = new bool[trained.Count];
        var normsSeen = new bool[norms];
        bool First(int v)
        {
            bool first = !hasGradient[v];
            hasGradient[v] = true;
            return first;
        }

        for (int i = forward.Count - 1; i >= 0; i--)
        {
            ForwardStep s = forward[i];
            if (!need[s.Output]) continue;
            int y = s.Output;
            switch (s)
            {
                case ConvStep c:
                    if (c.Relu) steps.Add(new ReluBackwardStep(y));
                    if (trainedIndex.TryGetValue(c.Conv, out int t))
                    {
                        steps.Add(new ConvWeightsBackwardStep(c.Conv, t, c.Input, y, weightsSeen[t]));
                        weightsSeen[t] = true;
                    }
                    if (need[c.Input]) steps.Add(new ConvDataBackwardStep(c.Conv, y, c.Input, !First(c.Input)));
                    // Last, so that it may take over dy's buffer (dy is read by nothing after it).
                    if (c.Residual is { } residual && need[residual]) steps.Add(new PassGradientStep(y, residual, !First(residual)));
                    break;
                case BatchNormStep b:
                    if (b.Relu) steps.Add(new ReluBackwardStep(y));
                    // The convolution's output has no other reader: its gradient is always a first contribution.
                    bool writeInput = need[b.Input];
                    if (writeInput) First(b.Input);
                    steps.Add(new BatchNormBackwardStep(b.Norm, b.Application, b.Input, y, writeInput, normsSeen[b.Norm]));
                    normsSeen[b.Norm] = true;
                    // Last, so that it may take over dy's buffer.
                    if (b.Residual is { } normResidual && need[normResidual]) steps.Add(new PassGradientStep(y, normResidual, !First(normResidual)));
                    break;
                case MaxPoolStep p:
                    if (need[p.Input]) steps.Add(new MaxPoolBackwardStep(y, p.Input, p.Kernel, p.Stride, p.Padding, !First(p.Input)));
                    break;
                case UpsampleAddStep u:
                    if (need[u.Upper]) steps.Add(new UpsampleBackwardStep(y, u.Upper, !First(u.Upper)));
                    if (need[u.Lower]) steps.Add(new PassGradientStep(y, u.Lower, !First(u.Lower)));
                    break;
                case AddStep a:
                    if (a.Relu) steps.Add(new ReluBackwardStep(y));
                    if (need[a.Left]) steps.Add(new PassGradientStep(y, a.Left, !First(a.Left)));
                    if (need[a.Right]) steps.Add(new PassGradientStep(y, a.Right, !First(a.Right)));
                    break;
                case ReluStep r:
                    steps.Add(new ReluBackwardStep(y));
                    if (need[r.Input]) steps.Add(new PassGradientStep(y, r.Input, !First(r.Input)));
                    break;
            }
        }

        // A trained convolution that no gradient reaches still reports its (zero) gradient.
        var zeros = new List<BackwardStep>();
        for (int t = 0; t < trained.Count; t++)
            if (!weightsSeen[t]) zeros.Add(new ZeroWeightGradientsStep(t));
        for (int n = 0; n < norms; n++)
            if (!normsSeen[n]) zeros.Add(new ZeroNormGradientsStep(n));
        steps.InsertRange(0, zeros);
        return steps;
    }
}
