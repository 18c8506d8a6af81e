using System;
using System.Collections.Generic;
using System.Linq;
using GhmGen.Generators.Models;

namespace GhmGen.Generators.Emit;

/// <summary>
/// One call of the generated Forward: a backend op producing <see cref="Output"/>.
/// Kind: input, conv (with folded BN, optional residual and ReLU), maxpool, upsample_add
/// (lower += upsample(upper), in place or after a copy), add (optional ReLU), relu.
/// </summary>
internal sealed record ForwardStep(
    string Kind, int Output, int X, int Other, int ConvLayer, int BnLayer, bool Relu,
    int Kernel, int Stride, int Padding, bool InPlace, int LastNode);

/// <summary>The fused schedule, value liveness and buffer slots of a network's forward pass.</summary>
internal sealed class ForwardPlan
{
    public List<ForwardStep> Steps { get; } = [];

    /// <summary>Value id -> slot index (-1 for values that are never materialized).</summary>
    public int[] SlotOf { get; set; } = [];

    public int SlotCount { get; set; }

    /// <summary>Distinct conv layers in first-use order, with the BN folded into each (or -1).</summary>
    public List<(int Conv, int Bn)> Convs { get; } = [];
}

/// <summary>
/// Fuses the flattened graph into backend calls (conv+BN+residual+ReLU, upsample+add, add+ReLU)
/// and plans activation memory: every value gets a slot, slots are reused once their values
/// are dead (best fit at a probe input size), network outputs keep theirs.
/// </summary>
internal static class ForwardPlanner
{
    /// <summary>Plans <paramref name="m"/>; on an unsupported pattern returns null with the node and the reason.</summary>
    public static ForwardPlan? Plan(NetworkModel m, out int errorNode, out string? error)
    {
        errorNode = -1;
        error = null;
        int nodeCount = m.Nodes.Count;
        var producer = new int[m.Values.Count];
        var consumers = new List<int>[m.Values.Count];
        for (int v = 0; v < consumers.Length; v++) consumers[v] = [];
        for (int i = 0; i < nodeCount; i++)
        {
            producer[m.Nodes[i].Output] = i;
            foreach (int v in m.Nodes[i].Inputs) consumers[v].Add(i);
        }
        var isOutput = new bool[m.Values.Count];
        foreach (OutputModel o in m.Outputs) isOutput[o.Value] = true;

        // The single data consumer of v, when v is not a network output.
        int Only(int v) => consumers[v].Count == 1 && !isOutput[v] ? consumers[v][0] : -1;
        bool Is(int node, string op) => node >= 0 && m.Nodes[node].Op == op;

        var absorbed = new bool[nodeCount];
        var steps = new List<ForwardStep>();
        for (int i = 0; i < nodeCount; i++)
        {
            NodeModel n = m.Nodes[i];
            switch (n.Op)
            {
                case "input":
                    steps.Add(new ForwardStep("input", n.Output, -1, -1, -1, -1, false, 0, 0, 0, false, i));
                    break;
                case "conv":
                {
                    int chain = n.Output, last = i, bn = -1, residual = -1;
                    bool relu = n.Relu;
                    if (!relu && Is(Only(chain), "bn"))
                    {
                        int b = Only(chain);
                        absorbed[b] = true;
                        bn = m.Nodes[b].Layer;
                        chain = m.Nodes[b].Output;
                        last = b;
                    }
                    // The residual add joins the first convolution that reaches it, unless its other
                    // operand is an upsample (that add belongs to the upsample-add).
                    if (!relu && Is(Only(chain), "add") && !absorbed[Only(chain)])
                    {
                        int a = Only(chain);
                        NodeModel add = m.Nodes[a];
                        int other = add.Inputs[0] == chain ? add.Inputs[1] : add.Inputs[0];
                        if (other != chain && m.Nodes[producer[other]].Op != "upsample")
                        {
                            absorbed[a] = true;
                            residual = other;
                            chain = add.Output;
                            last = a;
                        }
                    }
                    if (!relu && Is(Only(chain), "relu"))
                    {
                        int r = Only(chain);
                        absorbed[r] = true;
                        relu = true;
                        chain = m.Nodes[r].Output;
                        last = r;
                    }
                    steps.Add(new ForwardStep("conv", chain, n.Inputs[0], residual, n.Layer, bn, relu, 0, 0, 0, false, last));
                    break;
                }
                case "upsample":
                {
                    int a = Only(n.Output);
                    if (!Is(a, "add") || absorbed[a])
                    {
                        errorNode = i;
                        error = "an upsampled value must be read only by one Add (the backends fuse nearest-upsample with the add); add it to another value";
                        return null;
                    }
                    absorbed[a] = true;
                    NodeModel add = m.Nodes[a];
                    int lower = add.Inputs[0] == n.Output ? add.Inputs[1] : add.Inputs[0];
                    int chain = add.Output, last = a;
                    bool relu = false;
                    if (Is(Only(chain), "relu"))
                    {
                        int r = Only(chain);
                        absorbed[r] = true;
                        relu = true;
                        chain = m.Nodes[r].Output;
                        last = r;
                    }
                    if (relu)
                    {
                        errorNode = i;
                        error = "a ReLU directly after an upsample-add is not supported by the backends; apply it after another layer";
                        return null;
                    }
                    steps.Add(new ForwardStep("upsample_add", chain, n.Inputs[0], lower, -1, -1, false, 0, 0, 0, false, last));
                    break;
                }
                case "bn":
                    if (!absorbed[i])
                    {
                        errorNode = i;
                        error = "a BatchNorm must directly follow a Conv whose output only it reads (it is folded into the convolution)";
                        return null;
                    }
                    break;
                case "add":
                    if (!absorbed[i])
                    {
                        int chain = n.Output, last = i;
                        bool relu = false;
                        if (Is(Only(chain), "relu"))
                        {
                            int r = Only(chain);
                            absorbed[r] = true;
                            relu = true;
                            chain = m.Nodes[r].Output;
                            last = r;
                        }
                        steps.Add(new ForwardStep("add", chain, n.Inputs[0], n.Inputs[1], -1, -1, relu, 0, 0, 0, false, last));
                    }
                    break;
                case "relu":
                    if (!absorbed[i]) steps.Add(new ForwardStep("relu", n.Output, n.Inputs[0], -1, -1, -1, true, 0, 0, 0, false, i));
                    break;
                case "maxpool":
                    steps.Add(new ForwardStep("maxpool", n.Output, n.Inputs[0], -1, -1, -1, false, n.Kernel, n.Stride, n.Padding, false, i));
                    break;
            }
        }
        // A fused step runs where its last node was: every operand is ready by then.
        steps.Sort((a, b) => a.LastNode.CompareTo(b.LastNode));

        var plan = new ForwardPlan();
        var seenConv = new HashSet<int>();
        foreach (ForwardStep s in steps)
            if (s.Kind == "conv" && seenConv.Add(s.ConvLayer)) plan.Convs.Add((s.ConvLayer, s.BnLayer));

        AssignSlots(m, steps, isOutput, plan);
        return plan;
    }

    private static IEnumerable<int> Reads(ForwardStep s) => s.Kind switch
    {
        "input" => [],
        "conv" or "add" or "upsample_add" => s.Other >= 0 ? [s.X, s.Other] : [s.X],
        _ => [s.X],
    };

    private static void AssignSlots(NetworkModel m, List<ForwardStep> steps, bool[] isOutput, ForwardPlan plan)
    {
        var lastUse = new int[m.Values.Count];
        for (int v = 0; v < lastUse.Length; v++) lastUse[v] = -1;
        for (int i = 0; i < steps.Count; i++)
            foreach (int v in Reads(steps[i])) lastUse[v] = i;

        long[] probe = ProbeSizes(m);
        var slotOf = Enumerable.Repeat(-1, m.Values.Count).ToArray();
        var slotSize = new List<long>();
        var free = new List<int>();
        var live = new List<int>();
        for (int i = 0; i < steps.Count; i++)
        {
            ForwardStep s = steps[i];
            // Values last read by an earlier step are dead: their slots are free.
            foreach (int v in live.Where(v => lastUse[v] < i && !isOutput[v]).ToList())
            {
                live.Remove(v);
                free.Add(slotOf[v]);
            }
            int slot = -1;
            bool inPlace = false;
            // Elementwise ops may write over an operand that dies here.
            if (s.Kind is "relu" or "upsample_add" or "add")
            {
                int operand = s.Kind == "upsample_add" ? s.Other : s.X;
                int alt = s.Kind == "add" ? s.Other : -1;
                foreach (int candidate in new[] { operand, alt })
                    if (candidate >= 0 && lastUse[candidate] == i && !isOutput[candidate] && live.Contains(candidate))
                    {
                        slot = slotOf[candidate];
                        live.Remove(candidate);
                        inPlace = true;
                        break;
                    }
            }
            if (slot < 0)
            {
                long need = probe[s.Output];
                // Best fit: the smallest free slot that is large enough, else the largest free one (it grows).
                int best = -1;
                foreach (int f in free)
                    if (slotSize[f] >= need && (best < 0 || slotSize[f] < slotSize[best])) best = f;
                if (best < 0)
                    foreach (int f in free)
                        if (best < 0 || slotSize[f] > slotSize[best]) best = f;
                if (best < 0)
                {
                    slotSize.Add(0);
                    best = slotSize.Count - 1;
                }
                else free.Remove(best);
                slot = best;
            }
            slotSize[slot] = Math.Max(slotSize[slot], probe[s.Output]);
            slotOf[s.Output] = slot;
            live.Add(s.Output);
            steps[i] = s with { InPlace = inPlace };
        }
        plan.Steps.AddRange(steps);
        plan.SlotOf = slotOf;
        plan.SlotCount = slotSize.Count;
    }

    /// <summary>Element count of every value for a 800x1216 input (the probe for best-fit reuse).</summary>
    private static long[] ProbeSizes(NetworkModel m)
    {
        var h = new long[m.Values.Count];
        var w = new long[m.Values.Count];
        foreach (NodeModel n in m.Nodes)
        {
            switch (n.Op)
            {
                case "input":
                    h[n.Output] = 800;
                    w[n.Output] = 1216;
                    break;
                case "conv" or "maxpool":
                    h[n.Output] = Math.Max(0, (h[n.Inputs[0]] + 2 * n.Padding - n.Kernel) / n.Stride + 1);
                    w[n.Output] = Math.Max(0, (w[n.Inputs[0]] + 2 * n.Padding - n.Kernel) / n.Stride + 1);
                    break;
                case "upsample":
                    h[n.Output] = h[n.SizeOf];
                    w[n.Output] = w[n.SizeOf];
                    break;
                default:
                    h[n.Output] = h[n.Inputs[0]];
                    w[n.Output] = w[n.Inputs[0]];
                    break;
            }
        }
        return m.Values.Select(v => v.Channels * h[v.Id] * w[v.Id]).ToArray();
    }
}
