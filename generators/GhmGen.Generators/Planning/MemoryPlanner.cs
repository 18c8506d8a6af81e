using System.Collections.Generic;
using System.Linq;
using GhmGen.Generators.Models;

namespace GhmGen.Generators.Planning;

/// <summary>
/// Static buffer slots for a timeline of steps: a tensor lives from the step that first writes
/// it to the last step that touches it; its slot is free for later tensors after that, except
/// for pinned tensors (kept to the end). An elementwise step may write over an operand that
/// dies at that step. Slots are chosen best fit by size, where a tensor's size is its channels
/// over the square of its stride from the input (elements per input pixel, exact for large
/// inputs), so the plan depends on no particular input size; the generated code sizes each slot
/// for the real input as the largest of its tensors.
/// </summary>
internal static class MemoryPlanner
{
    /// <summary>One point of the timeline: the tensors first written there (each with the tensors whose slot it may take over), and every tensor touched.</summary>
    internal sealed class Step
    {
        public List<(int Tensor, EquatableArray<int> InPlaceCandidates)> Births { get; } = [];

        public List<int> Uses { get; } = [];
    }

    /// <summary>Elements per input pixel as the fraction Channels / Stride².</summary>
    internal readonly struct Density(long channels, long strideSquared)
    {
        public long Channels { get; } = channels;

        public long StrideSquared { get; } = strideSquared == 0 ? 1 : strideSquared;

        public int CompareTo(Density other) => (Channels * other.StrideSquared).CompareTo(other.Channels * StrideSquared);

        public static Density Max(Density a, Density b) => a.CompareTo(b) >= 0 ? a : b;
    }

    public static MemoryPlan Allocate(int tensorCount, IReadOnlyList<Density> density, IReadOnlyList<Step> steps, bool[] pinned)
    {
        var lastUse = Enumerable.Repeat(-1, tensorCount).ToArray();
        for (int i = 0; i < steps.Count; i++)
        {
            foreach (int t in steps[i].Uses) lastUse[t] = i;
            foreach ((int t, _) in steps[i].Births) lastUse[t] = System.Math.Max(lastUse[t], i);
        }

        var slotOf = Enumerable.Repeat(-1, tensorCount).ToArray();
        var inPlace = new bool[steps.Count];
        var slotSize = new List<Density>();
        var free = new List<int>();
        var live = new List<int>();
        for (int i = 0; i < steps.Count; i++)
        {
            // Tensors last touched by an earlier step are dead: their slots are free.
            foreach (int t in live.Where(t => lastUse[t] < i && !pinned[t]).ToList())
            {
                live.Remove(t);
                free.Add(slotOf[t]);
            }
            foreach ((int tensor, EquatableArray<int> candidates) in steps[i].Births)
            {
                int slot = -1;
                foreach (int candidate in candidates)
                    if (lastUse[candidate] == i && !pinned[candidate] && live.Contains(candidate))
                    {
                        slot = slotOf[candidate];
                        live.Remove(candidate);
                        inPlace[i] = true;
                        break;
                    }
                if (slot < 0)
                {
                    Density need = density[tensor];
                    // Best fit: the smallest free slot that is large enough, else the largest free one (it grows).
                    int best = -1;
                    foreach (int f in free)
                        if (slotSize[f].CompareTo(need) >= 0 && (best < 0 || slotSize[f].CompareTo(slotSize[best]) < 0)) best = f;
                    if (best < 0)
                        foreach (int f in free)
                            if (best < 0 || slotSize[f].CompareTo(slotSize[best]) > 0) best = f;
                    if (best < 0)
                    {
                        slotSize.Add(new Density(0, 1));
                        best = slotSize.Count - 1;
                    }
                    else free.Remove(best);
                    slot = best;
                }
                slotSize[slot] = Density.Max(slotSize[slot], density[tensor]);
                slotOf[tensor] = slot;
                live.Add(tensor);
            }
        }
        return new MemoryPlan(slotOf.ToEquatableArray(), slotSize.Count, inPlace.ToEquatableArray());
    }
}
