using System.Collections.Generic;
using GhmGen.Generators.Models;

namespace GhmGen.Generators.Planning;

/// <summary>
/// Fuses the graph's primitive nodes into backend calls: conv + folded BN + residual add + ReLU,
/// nearest-upsample + add, add + ReLU. Inference and training run the same calls.
/// </summary>
internal static class ForwardFusion
{
    /// <summary>A fused call before convolutions are numbered: the layer and batch norm of a conv step ride along, and the value between them.</summary>
    internal sealed record Fused(ForwardStep Step, int LastNode, int? ConvLayer, int? BatchNorm, int? BatchNormInput = null);

    /// <summary>Fuses <paramref name="m"/>; on an unsupported pattern returns null with the node and the reason.</summary>
    public static List<Fused>? Fuse(NetworkModel m, out int errorNode, out string? error)
    {
        errorNode = -1;
        error = null;
        int nodeCount = m.Nodes.Count;
        var producer = new NodeModel[m.Values.Count];
        var consumers = new List<int>[m.Values.Count];
        for (int v = 0; v < consumers.Length; v++) consumers[v] = [];
        for (int i = 0; i < nodeCount; i++)
        {
            producer[m.Nodes[i].Output] = m.Nodes[i];
            foreach (int v in m.Nodes[i].Reads) consumers[v].Add(i);
        }
        var isOutput = new bool[m.Values.Count];
        foreach (OutputModel o in m.Outputs) isOutput[o.Value] = true;

        // The index of the single data consumer of v, when v is not a network output (else -1).
        int Only(int v) => consumers[v].Count == 1 && !isOutput[v] ? consumers[v][0] : -1;
        T? As<T>(int node) where T : NodeModel => node >= 0 ? m.Nodes[node] as T : null;

        var absorbed = new bool[nodeCount];
        var steps = new List<Fused>();
        for (int i = 0; i < nodeCount; i++)
        {
            switch (m.Nodes[i])
            {
                case InputNode n:
                    steps.Add(new Fused(new UploadStep(n.Output), i, null, null));
                    break;
                case ConvNode n:
                {
                    int chain = n.Output, last = i;
                    int? bn = null, residual = null;
                    bool relu = n.Relu;
                    if (!relu && As<BatchNormNode>(Only(chain)) is { } b)
                    {
                        last = Only(chain);
                        absorbed[last] = true;
                        bn = b.Layer;
                        chain = b.Output;
                    }
                    // The residual add joins the first convolution that reaches it, unless its other
                    // operand is an upsample (that add belongs to the upsample-add).
                    if (!relu && As<AddNode>(Only(chain)) is { } add && !absorbed[Only(chain)])
                    {
                        int other = add.Left == chain ? add.Right : add.Left;
                        if (other != chain && producer[other] is not UpsampleNode)
                        {
                            last = Only(chain);
                            absorbed[last] = true;
                            residual = other;
                            chain = add.Output;
                        }
                    }
                    if (!relu && As<ReluNode>(Only(chain)) is { } r)
                    {
                        last = Only(chain);
                        absorbed[last] = true;
                        relu = true;
                        chain = r.Output;
                    }
                    // Conv is numbered by the planner once the steps are in order (first use).
                    steps.Add(new Fused(new ConvStep(chain, n.Input, residual, Conv: 0, relu), last, n.Layer, bn, bn is null ? null : n.Output));
                    break;
                }
                case UpsampleNode n:
                {
                    int last = Only(n.Output);
                    if (As<AddNode>(last) is not { } add || absorbed[last])
                    {
                        errorNode = i;
                        error = "an upsampled value must be read only by one Add (the backends fuse nearest-upsample with the add); add it to another value";
                        return null;
                    }
                    absorbed[last] = true;
                    int lower = add.Left == n.Output ? add.Right : add.Left;
                    if (As<ReluNode>(Only(add.Output)) is not null)
                    {
                        errorNode = i;
                        error = "a ReLU directly after an upsample-add is not supported by the backends; apply it after another layer";
                        return null;
                    }
                    steps.Add(new Fused(new UpsampleAddStep(add.Output, n.Input, lower), last, null, null));
                    break;
                }
                case BatchNormNode:
                    if (!absorbed[i])
                    {
                        errorNode = i;
                        error = "a BatchNorm must directly follow a Conv whose output only it reads (it is folded into the convolution)";
                        return null;
                    }
                    break;
                case AddNode n:
                    if (!absorbed[i])
                    {
                        int chain = n.Output, last = i;
                        bool relu = false;
                        if (As<ReluNode>(Only(chain)) is { } r)
                        {
                            last = Only(chain);
                            absorbed[last] = true;
                            relu = true;
                            chain = r.Output;
                        }
                        steps.Add(new Fused(new AddStep(chain, n.Left, n.Right, relu), last, null, null));
                    }
                    break;
                case ReluNode n:
                    if (!absorbed[i]) steps.Add(new Fused(new ReluStep(n.Output, n.Input), i, null, null));
                    break;
                case MaxPoolNode n:
                    steps.Add(new Fused(new MaxPoolStep(n.Output, n.Input, n.Kernel, n.Stride, n.Padding), i, null, null));
                    break;
            }
        }
        // A fused step runs where its last node was: every operand is ready by then.
        steps.Sort((a, b) => a.LastNode.CompareTo(b.LastNode));
        return steps;
    }
}
