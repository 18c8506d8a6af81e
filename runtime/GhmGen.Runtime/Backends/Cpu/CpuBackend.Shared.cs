// IBackend.Conv2dShared on the CPU: one convolution over several inputs (the shared RetinaNet head's
// five pyramid levels). Inputs that run Winograd with per-call weight transforms share each
// transform; the small ones (at most SharedInputConvolution.MaxPixels output pixels per image) run
// as one GEMM of their concatenated columns (ConcatenatedConvolution), so the weights are read once
// and the tiny levels no longer pad a tile each, except for a smallest input of at most 8 pixels that
// alone would pad a tile (P7 at 64x96: 128 columns fill 32-wide tiles, 129 pad to 144), which runs
// on its own through the GEMV-like small-map path; the rest run as separate Conv2d calls.
// Reference tests: tests/GhmGen.Runtime.Tests/Backends/ConcatenatedConvolutionTests.cs.
using System.Runtime.InteropServices;

namespace GhmGen.Backends.Cpu;

public sealed unsafe partial class CpuBackend
{
    private GCHandle[] sharedPins = new GCHandle[32];

    /// <summary>Inputs of <see cref="Conv2dShared"/> left out of a concatenated GEMM because they alone would have padded a tile.</summary>
    internal long SmallInputsLeftOut { get; private set; }

    /// <summary>Calls of <see cref="Conv2dShared"/> that ran a concatenated GEMM (tests check that the path ran).</summary>
    internal long ConcatenatedCalls { get; private set; }

    /// <inheritdoc/>
    public void Conv2dShared(IPreparedConv conv, ReadOnlySpan<TensorView> x, ReadOnlySpan<TensorView> y, bool relu)
    {
        if (x.Length != y.Length)
            throw new ArgumentException($"{x.Length} inputs but {y.Length} outputs", nameof(y));
        lock (gate)
        {
            ThrowIfDisposed();
            PackedConvWeights packed = Own(conv);
            for (int i = 0; i < x.Length; i++)
            {
                CheckConv(packed, x[i], y[i], null);
                Span(x[i]);
                Span(y[i]);
                for (int j = 0; j < x.Length; j++)
                {
                    if (Overlaps(y[i], x[j]))
                        throw new ArgumentException($"conv {packed.Spec}: output {i} {y[i].ShapeText} overlaps input {j} {x[j].ShapeText}", nameof(y));
                    if (j != i && Overlaps(y[i], y[j]))
                        throw new ArgumentException($"conv {packed.Spec}: outputs {i} and {j} overlap", nameof(y));
                }
            }
            if (x.Length == 0) return;
            if (x.Length > 1) packed.AppliedShared = true; // its backward-data form will run once per input (EnsureBackwardData)
            if (2 * x.Length > sharedPins.Length) sharedPins = new GCHandle[2 * x.Length];
            int pinned = 0;
            try
            {
                Span<nint> px = x.Length <= 64 ? stackalloc nint[x.Length] : new nint[x.Length];
                Span<nint> py = x.Length <= 64 ? stackalloc nint[x.Length] : new nint[x.Length];
                for (int i = 0; i < x.Length; i++)
                {
                    px[i] = Pin(x[i], pinned++);
                    py[i] = Pin(y[i], pinned++);
                }
                RunShared(packed, x, y, px, py, relu);
            }
            finally
            {
                for (int i = 0; i < pinned; i++) sharedPins[i].Free();
            }
        }
    }

    // Output pixels of convolution s over the whole batch of x.
    private static long Pixels(ConvSpec s, TensorView x) => (long)x.N * s.OutputSize(x.H) * s.OutputSize(x.W);

    private nint Pin(TensorView t, int slot)
    {
        sharedPins[slot] = GCHandle.Alloc(((HostBuffer)t.Buffer).Array, GCHandleType.Pinned);
        return sharedPins[slot].AddrOfPinnedObject() + (nint)(t.Offset * sizeof(float));
    }

    // Under the lock, every pair checked and pinned: per-call Winograd inputs together, the small ones
    // as one concatenated GEMM, the rest one by one.
    private void RunShared(PackedConvWeights packed, ReadOnlySpan<TensorView> x, ReadOnlySpan<TensorView> y, ReadOnlySpan<nint> px, ReadOnlySpan<nint> py, bool relu)
    {
        int n = x.Length;
        Span<bool> done = n <= 256 ? stackalloc bool[n] : new bool[n];
        Span<int> which = n <= 256 ? stackalloc int[n] : new int[n];
        done.Clear();
        ConvSpec s = packed.Spec;

        int count = 0;
        if (!packed.WinogradApplies && TransformsPerCall(packed))
        {
            for (int i = 0; i < n; i++)
                if (x[i].ElementCount > 0 && EnoughWinogradTiles(packed, x[i])) which[count++] = i;
            if (count > 0)
            {
                FreshPanels(packed);
                RunWinogradPerCall(packed, x, px, py, default, which[..count], relu);
                foreach (int i in which[..count]) done[i] = true;
            }
        }

        if (ConcatenatedConvolution.Applies(packed))
        {
            concatenatedConvolution.Begin(packed);
            count = 0;
            int candidates = 0;
            long columns = 0;
            Span<int> candidate = n <= 256 ? stackalloc int[n] : new int[n];
            for (int i = 0; i < n; i++)
            {
                if (done[i] || x[i].ElementCount == 0 || packed.WinogradApplies && EnoughWinogradTiles(packed, x[i])) continue;
                if (!ConcatenatedConvolution.Fits(s.OutputSize(x[i].H), s.OutputSize(x[i].W))) continue;
                candidate[candidates++] = i;
                columns += Pixels(s, x[i]);
            }
            // Leave out the smallest input when it alone pads a tile (64x96: P7's 1 pixel takes the head's
            // 128 columns to 144): it runs on its own through the GEMV-like small-map path instead.
            while (candidates > 2)
            {
                int smallest = 0;
                for (int c = 1; c < candidates; c++)
                    if (Pixels(s, x[candidate[c]]) < Pixels(s, x[candidate[smallest]])) smallest = c;
                TensorView t = x[candidate[smallest]];
                long pixels = Pixels(s, t);
                if (pixels >= SharedInputConvolution.MinimumColumns || !SmallMapConvolution.Applies(packed, t.N, s.OutputSize(t.H), s.OutputSize(t.W))
                    || SharedInputConvolution.PaddedColumns(columns - pixels, packed.Kernel.Kind) + 16 > SharedInputConvolution.PaddedColumns(columns, packed.Kernel.Kind))
                    break;
                candidate[smallest] = candidate[--candidates];
                columns -= pixels;
                SmallInputsLeftOut++;
            }
            candidate[..candidates].Sort();
            foreach (int i in candidate[..candidates])
                if (concatenatedConvolution.TryAdd((float*)px[i], (float*)py[i], x[i].N, x[i].H, x[i].W)) which[count++] = i;
            if (count >= 2)
            {
                FreshPanels(packed);
                fixed (float* pa = packed.Panels)
                fixed (float* pb = packed.Bias)
                {
                    pool.Run(concatenatedConvolution, concatenatedConvolution.Prepare(pa, pb, relu));
                    if (concatenatedConvolution.Gathering) GatheredPackingCalls++;
                    pool.Run(concatenatedConvolution, concatenatedConvolution.PrepareProducts(pool.WorkerCount));
                }
                ConcatenatedCalls++;
                foreach (int i in which[..count]) done[i] = true;
            }
        }

        for (int i = 0; i < n; i++)
            if (!done[i]) RunConv(packed, x[i], y[i], null, relu);
    }
}
