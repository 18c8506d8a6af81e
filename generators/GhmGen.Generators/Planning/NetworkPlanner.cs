using System.Collections.Generic;
using System.Linq;
using GhmGen.Generators.Diagnostics;
using GhmGen.Generators.Models;

namespace GhmGen.Generators.Planning;

/// <summary>
/// The one planning step of the pipeline: fuses the forward pass, numbers the prepared
/// convolutions, derives the reverse pass, and plans the memory of inference (forward only) and
/// of training (forward and backward lifetimes on one timeline). A pattern the backends cannot
/// run is GHM014 at the node's attribute.
/// </summary>
internal static class NetworkPlanner
{
    public static PlanResult Plan(ExpansionResult expansion)
    {
        if (expansion.Model is not { } m) return new PlanResult(null, expansion.Diagnostics);

        List<ForwardFusion.Fused>? fused = ForwardFusion.Fuse(m, out int badNode, out string? problem);
        if (fused is null)
        {
            var d = new DiagnosticInfo(DiagnosticDescriptors.NoForward.Id,
                new EquatableArray<string>([$"'{m.Values[m.Nodes[badNode].Output].Name}'", problem!]),
                expansion.NodeLocations[badNode].Location);
            return new PlanResult(null, expansion.Diagnostics.Append(d).ToEquatableArray());
        }

        // Distinct convolutions in first-use order, each with the batch norm folded into it.
        var convs = new List<PreparedConvModel>();
        var convOfLayer = new Dictionary<int, int>();
        var forward = new List<ForwardStep>();
        // Training's forward: a convolution whose batch norm trains with batch statistics writes the
        // value between them unfolded, then a BatchNormStep normalizes it (one application each).
        var trainingForward = new List<ForwardStep>();
        var norms = new List<int>();
        var normOfLayer = new Dictionary<int, int>();
        var normApplications = new List<int>();
        foreach (ForwardFusion.Fused f in fused)
        {
            if (f.Step is ConvStep c && f.ConvLayer is { } layer)
            {
                bool batchStatistics = f.BatchNorm is { } b && m.Layers[b] is BatchNormLayer { BatchStatistics: true };
                if (!convOfLayer.TryGetValue(layer, out int index))
                {
                    bool trained = m.Layers[layer].Trainable || f.BatchNorm is { } bn && m.Layers[bn].Trainable;
                    index = convOfLayer[layer] = convs.Count;
                    convs.Add(new PreparedConvModel(layer, f.BatchNorm, trained, batchStatistics));
                }
                ConvStep step = c with { Conv = index };
                forward.Add(step);
                if (batchStatistics)
                {
                    int normLayer = f.BatchNorm!.Value, z = f.BatchNormInput!.Value;
                    if (!normOfLayer.TryGetValue(normLayer, out int norm))
                    {
                        norm = normOfLayer[normLayer] = norms.Count;
                        norms.Add(normLayer);
                    }
                    trainingForward.Add(new ConvStep(z, c.Input, null, index, Relu: false));
                    trainingForward.Add(new BatchNormStep(c.Output, z, c.Residual, c.Relu, norm, normApplications.Count));
                    normApplications.Add(norm);
                }
                else trainingForward.Add(step);
            }
            else
            {
                forward.Add(f.Step);
                trainingForward.Add(f.Step);
            }
        }

        // The reverse pass follows the fused order (level by level in a shared head, which keeps
        // fewer gradients alive); both forward passes run each shared convolution's independent
        // applications as one call.
        List<TrainedConvModel> trainedConvs = TrainedConvs(m, convs, out long weightGradientLength);
        List<BackwardStep> backward = BackwardPlanner.Plan(m, trainingForward, trainedConvs, norms.Count);
        forward = SharedConvGrouping.Group(forward);
        trainingForward = SharedConvGrouping.Group(trainingForward);

        int values = m.Values.Count;
        var density = new List<MemoryPlanner.Density>();
        foreach (ValueModel v in m.Values) density.Add(new MemoryPlanner.Density(v.Channels, v.Stride * v.Stride));
        var pinned = new bool[2 * values];
        foreach (OutputModel o in m.Outputs) pinned[o.Value] = true;

        // Inference: the forward steps alone; a convolution may also write over its residual when
        // that dies there and its K = in/groups*k*k is at most InPlaceResidualDepth: every backend
        // reads each residual element before writing it, and up to that K the CPU backend's GEMM
        // runs one k block, so the result is bitwise that of a separate residual (training sessions,
        // which never write in place, compute the same as inference sessions).
        List<MemoryPlanner.Step> timeline = forward.Select(s => ForwardTimelineStep(s, residualInPlace: s is ConvStep c && Depth(m, convs[c.Conv]) <= InPlaceResidualDepth)).ToList();
        MemoryPlan inference = MemoryPlanner.Allocate(values, density, timeline, pinned);

        // Training: one timeline for both passes.
        var trainingTimeline = trainingForward.Select(s => ForwardTimelineStep(s, residualInPlace: false)).ToList();
        var outputGradients = new MemoryPlanner.Step();
        foreach (OutputModel o in m.Outputs) outputGradients.Births.Add((values + o.Value, EquatableArray<int>.Empty));
        trainingTimeline.Add(outputGradients);
        foreach (BackwardStep b in backward)
        {
            var step = new MemoryPlanner.Step();
            step.Uses.AddRange(b.Reads(values));
            if (b.Writes(values) is { } written)
            {
                if (b.Accumulates) step.Uses.Add(written);
                else step.Births.Add((written, b.InPlaceCandidates(values)));
            }
            trainingTimeline.Add(step);
        }
        MemoryPlan training = MemoryPlanner.Allocate(2 * values, density.Concat(density).ToList(), trainingTimeline, pinned);

        var plan = new NetworkPlan(forward.ToEquatableArray(), convs.ToEquatableArray(), inference,
            trainedConvs.ToEquatableArray(), weightGradientLength, backward.ToEquatableArray(), training,
            trainingForward.ToEquatableArray(), norms.ToEquatableArray(), normApplications.ToEquatableArray());
        return new PlanResult(new PlannedNetwork(m, plan), expansion.Diagnostics);
    }

    // The trained prepared convolutions, and the elements of their folded gradients (length).
    private static List<TrainedConvModel> TrainedConvs(NetworkModel m, List<PreparedConvModel> convs, out long length)
    {
        var trainedConvs = new List<TrainedConvModel>();
        length = 0;
        for (int i = 0; i < convs.Count; i++)
        {
            if (!convs[i].Trained) continue;
            var conv = (ConvLayer)m.Layers[convs[i].Layer];
            bool trainConv = conv.Trainable;
            // A batch norm with batch statistics is not folded in training: its own step trains it.
            bool trainNorm = convs[i].BatchNorm is { } bn && m.Layers[bn].Trainable && !convs[i].BatchStatistics;
            if (!trainConv && !trainNorm) continue;
            bool foldedBias = trainConv && conv.Bias || trainNorm;
            length += conv.WeightCount + (foldedBias ? conv.OutChannels : 0);
            trainedConvs.Add(new TrainedConvModel(i, trainConv, trainNorm, foldedBias));
        }
        return trainedConvs;
    }

    /// <summary>Largest K of a convolution planned to write over its residual (GemmConvolution.SingleDepthBlock).</summary>
    private const int InPlaceResidualDepth = 192;

    private static long Depth(NetworkModel m, PreparedConvModel conv)
    {
        var layer = (ConvLayer)m.Layers[conv.Layer];
        return (long)layer.InChannels / layer.Groups * layer.Kernel * layer.Kernel;
    }

    private static MemoryPlanner.Step ForwardTimelineStep(ForwardStep s, bool residualInPlace)
    {
        var step = new MemoryPlanner.Step();
        step.Uses.AddRange(s.Reads);
        EquatableArray<int> candidates = residualInPlace && s is ConvStep { Residual: { } residual } c && residual != c.Input
            ? new([residual]) : s.InPlaceCandidates;
        foreach (int output in s.Writes) step.Births.Add((output, candidates));
        return step;
    }
}
