using System.Collections.Generic;
using System.Linq;
using GhmGen.Generators.Models;

namespace GhmGen.Generators.Planning;

/// <summary>
/// Puts the applications of each shared convolution that do not depend on one another (a shared
/// head's levels) into one <see cref="SharedConvStep"/>, and orders the steps again: a step or group
/// runs once everything it reads is written, the one that came first in the fused order first (so a
/// network without shared layers keeps its order, and a shared head runs layer by layer over all
/// levels instead of level by level). Applications with a residual are left alone.
/// </summary>
internal static class SharedConvGrouping
{
    public static List<ForwardStep> Group(IReadOnlyList<ForwardStep> steps)
    {
        int n = steps.Count, words = (n + 63) / 64;
        var producer = new Dictionary<int, int>();
        for (int i = 0; i < n; i++)
            foreach (int v in steps[i].Writes) producer[v] = i;

        // Every step's ancestors as a bit set (the fused order is topological).
        var predecessors = new List<int>[n];
        var ancestors = new ulong[n][];
        for (int i = 0; i < n; i++)
        {
            predecessors[i] = [.. steps[i].Reads.Where(producer.ContainsKey).Select(r => producer[r]).Distinct()];
            ancestors[i] = new ulong[words];
            foreach (int p in predecessors[i])
            {
                for (int w = 0; w < words; w++) ancestors[i][w] |= ancestors[p][w];
                ancestors[i][p / 64] |= 1UL << (p % 64);
            }
        }
        bool Reaches(int from, int to) => (ancestors[to][from / 64] & (1UL << (from % 64))) != 0;

        // Units: a group of independent applications of one convolution, or a single step.
        var unitOf = Enumerable.Repeat(-1, n).ToArray();
        var units = new List<List<int>>();
        foreach (var candidates in Enumerable.Range(0, n)
            .Where(i => steps[i] is ConvStep { Residual: null })
            .GroupBy(i => (((ConvStep)steps[i]).Conv, ((ConvStep)steps[i]).Relu))
            .Where(g => g.Count() >= 2))
        {
            List<int> members = [.. candidates];
            bool independent = members.All(a => members.All(b => a == b || !Reaches(a, b)));
            if (!independent) continue;
            foreach (int i in members) unitOf[i] = units.Count;
            units.Add(members);
        }
        for (int i = 0; i < n; i++)
        {
            if (unitOf[i] >= 0) continue;
            unitOf[i] = units.Count;
            units.Add([i]);
        }

        // Kahn's algorithm, the ready unit with the earliest member first.
        int count = units.Count;
        var waiting = new int[count];
        var successors = new List<int>[count];
        for (int u = 0; u < count; u++) successors[u] = [];
        for (int u = 0; u < count; u++)
            foreach (int p in units[u].SelectMany(i => predecessors[i]).Select(i => unitOf[i]).Distinct().Where(p => p != u))
            {
                successors[p].Add(u);
                waiting[u]++;
            }
        var ready = new SortedSet<(int First, int Unit)>();
        for (int u = 0; u < count; u++)
            if (waiting[u] == 0) ready.Add((units[u].Min(), u));
        var ordered = new List<ForwardStep>(count);
        while (ready.Count > 0)
        {
            (int _, int unit) = ready.Min;
            ready.Remove(ready.Min);
            List<int> members = units[unit];
            ordered.Add(members.Count == 1 ? steps[members[0]] : new SharedConvStep(members.Select(i => (ConvStep)steps[i]).ToEquatableArray()));
            foreach (int s in successors[unit])
                if (--waiting[s] == 0) ready.Add((units[s].Min(), s));
        }
        return ordered;
    }
}
