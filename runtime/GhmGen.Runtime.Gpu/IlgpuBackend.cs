using System.Diagnostics.CodeAnalysis;
using GhmGen.Backends.Gpu.Kernels;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;

namespace GhmGen.Backends.Gpu;

/// <summary>Which ILGPU accelerator an <see cref="IlgpuBackend"/> runs on.</summary>
public enum IlgpuDevice
{
    /// <summary>The first CUDA device.</summary>
    Cuda,

    /// <summary>ILGPU's CPU accelerator: correct but very slow; for tests on small shapes.</summary>
    CpuAccelerator,
}

/// <summary>
/// Every <see cref="IBackend"/> and <see cref="ITrainingBackend"/> op as an ILGPU kernel (compiled
/// to PTX on CUDA; the backward ops are in IlgpuBackend.Backward.cs). Tensors stay on
/// the accelerator between ops; only <see cref="Upload"/> and <see cref="Download"/> copy.
/// Ops are queued on the default stream; <see cref="Download"/> waits for them. Thread-safe: each
/// op is queued under one lock, so sessions on several threads share the stream op by op (the
/// GHM-loss and detection kernel classes on the same accelerator are not covered by it).
/// </summary>
public sealed partial class IlgpuBackend : ITrainingBackend
{
    private readonly Context _context;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvLaunch> _conv;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>> _relu;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>> _sigmoid;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int> _add;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, PoolLaunch> _maxPool;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, UpsampleLaunch> _upsampleAdd;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _unused;
    private readonly Lock _gate = new();
    private bool _disposed;

    private IlgpuBackend(Context context, Accelerator accelerator)
    {
        _context = context;
        Accelerator = accelerator;
        _conv = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvLaunch>(ConvKernels.Conv2d);
        _relu = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>>(TensorKernels.Relu);
        _sigmoid = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>>(TensorKernels.Sigmoid);
        _add = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(TensorKernels.Add);
        _maxPool = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, PoolLaunch>(TensorKernels.MaxPool2d);
        _upsampleAdd = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, UpsampleLaunch>(TensorKernels.UpsampleNearestAdd);
        _unused = accelerator.Allocate1D<float>(1);
    }

    /// <summary>Creates a backend on <paramref name="device"/>.</summary>
    /// <exception cref="InvalidOperationException">No CUDA device when <see cref="IlgpuDevice.Cuda"/> is asked for.</exception>
    public static IlgpuBackend Create(IlgpuDevice device)
    {
        switch (device)
        {
            case IlgpuDevice.Cuda:
                return TryCreateCuda(out IlgpuBackend? cuda)
                    ? cuda
                    : throw new InvalidOperationException("no CUDA device is available (ILGPU found none, or the CUDA driver could not be loaded)");
            case IlgpuDevice.CpuAccelerator:
            {
                // 256 simulated threads per group: the convolution kernel's groups are 16x16.
                var cpu = new CPUDevice(numThreadsPerWarp: 4, numWarpsPerMultiprocessor: 64, numMultiprocessors: 1);
                Context context = Context.Create(b => b.CPU(cpu).EnableAlgorithms());
                return new IlgpuBackend(context, context.CreateCPUAccelerator(0));
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(device), device, "unknown ILGPU device kind");
        }
    }

    /// <summary>Tries to create a backend on the first CUDA device; false when there is none.</summary>
    public static bool TryCreateCuda([NotNullWhen(true)] out IlgpuBackend? backend)
    {
        backend = null;
        Context? context = null;
        try
        {
            context = Context.Create(b => b.Cuda().EnableAlgorithms());
            if (context.GetCudaDevices().Count == 0)
            {
                context.Dispose();
                return false;
            }
            backend = new IlgpuBackend(context, context.CreateCudaAccelerator(0));
            return true;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // No driver (DllNotFoundException), no device, or a driver that refuses to start.
            context?.Dispose();
            return false;
        }
    }

    /// <summary>True when a CUDA device can be used (for <c>--device auto</c>).</summary>
    public static bool IsCudaAvailable
    {
        get
        {
            try
            {
                using Context context = Context.Create(b => b.Cuda());
                return context.GetCudaDevices().Count > 0;
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                return false;
            }
        }
    }

    /// <summary>The ILGPU accelerator the kernels run on.</summary>
    public Accelerator Accelerator { get; }

    /// <inheritdoc/>
    public string Name => Accelerator.AcceleratorType == AcceleratorType.Cuda ? "cuda" : "ilgpu-cpu";

    /// <summary>Waits until every queued op has finished.</summary>
    public void Synchronize()
    {
        lock (_gate) Accelerator.Synchronize();
    }

    /// <inheritdoc/>
    public DeviceBuffer Allocate(long elements)
    {
        lock (_gate)
        {
            if (elements <= 0)
                throw new ArgumentOutOfRangeException(nameof(elements), elements, "a device buffer needs at least one element");
            return new IlgpuBuffer(Accelerator.Allocate1D<float>(elements));
        }
    }

    /// <inheritdoc/>
    public void Upload(ReadOnlySpan<float> source, TensorView destination)
    {
        lock (_gate)
        {
            CheckLength(source.Length, destination);
            View(destination).CopyFromCPU(source);
        }
    }

    /// <inheritdoc/>
    public void Download(TensorView source, Span<float> destination)
    {
        lock (_gate)
        {
            CheckLength(destination.Length, source);
            Accelerator.Synchronize();
            View(source).CopyToCPU(destination);
        }
    }

    /// <inheritdoc/>
    public IPreparedConv PrepareConv(ConvSpec spec, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias)
    {
        lock (_gate)
        {
            CheckSpec(spec);
            if (weight.Length != spec.WeightCount)
                throw new ArgumentException($"weight has {weight.Length} elements; {spec} needs {spec.WeightCount}", nameof(weight));
            if (bias.Length != 0 && bias.Length != spec.OutChannels)
                throw new ArgumentException($"bias has {bias.Length} elements; expected 0 or {spec.OutChannels}", nameof(bias));
            MemoryBuffer1D<float, Stride1D.Dense> w = Accelerator.Allocate1D<float>(weight.Length);
            ((ArrayView<float>)w.View).CopyFromCPU(weight);
            MemoryBuffer1D<float, Stride1D.Dense>? b = null;
            if (bias.Length > 0)
            {
                b = Accelerator.Allocate1D<float>(bias.Length);
                ((ArrayView<float>)b.View).CopyFromCPU(bias);
            }
            return new PreparedConv(spec, w, b);
        }
    }

    /// <inheritdoc/>
    public void Conv2d(IPreparedConv conv, TensorView x, TensorView y, TensorView? residual, bool relu)
    {
        lock (_gate)
        {
            if (conv is not PreparedConv p)
                throw new ArgumentException($"conv {conv.Spec} was not prepared by this ILGPU backend", nameof(conv));
            ConvSpec s = p.Spec;
            int oh = s.OutputSize(x.H), ow = s.OutputSize(x.W);
            if (x.C != s.InChannels || y.C != s.OutChannels || y.H != oh || y.W != ow || y.N != x.N || oh <= 0 || ow <= 0)
                throw new ArgumentException($"conv {s}: input {x.ShapeText} does not give output {y.ShapeText}");
            if (residual is { } r && (r.N != y.N || r.C != y.C || r.H != y.H || r.W != y.W))
                throw new ArgumentException($"conv {s}: residual {r.ShapeText} differs from output {y.ShapeText}", nameof(residual));
            if (y.ElementCount == 0) return;
            var launch = new ConvLaunch(s, x.N, x.H, x.W, p.Bias is not null, residual is not null, relu);
            var grid = new Index3D(
                Blocks(launch.Columns, ConvKernels.Tile),
                Blocks(launch.OutPerGroup, ConvKernels.Tile),
                s.Groups);
            var group = new Index3D(ConvKernels.Threads, ConvKernels.Threads, 1);
            _conv(new KernelConfig(grid, group),
                View(x), p.Weight.View, p.Bias?.View ?? _unused.View,
                residual is { } res ? View(res) : _unused.View, View(y), launch);
        }
    }

    /// <inheritdoc/>
    public void MaxPool2d(TensorView x, TensorView y, int kernel, int stride, int padding)
    {
        lock (_gate)
        {
            if (kernel <= 0 || stride <= 0 || padding < 0 || padding * 2 > kernel)
                throw new ArgumentException($"max-pool: kernel {kernel}, stride {stride}, padding {padding} are not a valid window");
            int oh = (x.H + 2 * padding - kernel) / stride + 1, ow = (x.W + 2 * padding - kernel) / stride + 1;
            if (y.N != x.N || y.C != x.C || y.H != oh || y.W != ow)
                throw new ArgumentException($"max-pool: input {x.ShapeText} does not give output {y.ShapeText}");
            if (y.ElementCount == 0) return;
            _maxPool(Elements(y), View(x), View(y), new PoolLaunch(x.H, x.W, oh, ow, kernel, stride, padding));
        }
    }

    /// <inheritdoc/>
    public void UpsampleNearestAdd(TensorView upper, TensorView lower)
    {
        lock (_gate)
        {
            if (upper.N != lower.N || upper.C != lower.C)
                throw new ArgumentException($"upsample-add: {upper.ShapeText} and {lower.ShapeText} differ in batch or channels");
            if (lower.ElementCount == 0) return;
            if (upper.H <= 0 || upper.W <= 0)
                throw new ArgumentException($"upsample-add: upper tensor {upper.ShapeText} is empty", nameof(upper));
            _upsampleAdd(Elements(lower), View(upper), View(lower), new UpsampleLaunch(upper.H, upper.W, lower.H, lower.W));
        }
    }

    /// <inheritdoc/>
    public void Add(TensorView a, TensorView b, TensorView y, bool relu)
    {
        lock (_gate)
        {
            if (a.ElementCount != b.ElementCount || a.ElementCount != y.ElementCount)
                throw new ArgumentException($"add: shapes {a.ShapeText}, {b.ShapeText}, {y.ShapeText} differ");
            if (y.ElementCount == 0) return;
            _add(Elements(y), View(a), View(b), View(y), relu ? 1 : 0);
        }
    }

    /// <inheritdoc/>
    public void Copy(TensorView source, TensorView destination)
    {
        lock (_gate)
        {
            if (source.ElementCount != destination.ElementCount)
                throw new ArgumentException($"copy: shapes {source.ShapeText} and {destination.ShapeText} differ");
            if (destination.ElementCount == 0) return;
            View(source).CopyTo(View(destination));
        }
    }

    /// <inheritdoc/>
    public void Relu(TensorView x, TensorView y)
    {
        lock (_gate)
        {
            if (x.ElementCount != y.ElementCount)
                throw new ArgumentException($"relu: shapes {x.ShapeText} and {y.ShapeText} differ");
            if (y.ElementCount == 0) return;
            _relu(Elements(y), View(x), View(y));
        }
    }

    /// <inheritdoc/>
    public void Sigmoid(TensorView x, TensorView y)
    {
        lock (_gate)
        {
            if (x.ElementCount != y.ElementCount)
                throw new ArgumentException($"sigmoid: shapes {x.ShapeText} and {y.ShapeText} differ");
            if (y.ElementCount == 0) return;
            _sigmoid(Elements(y), View(x), View(y));
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
        }
        _unused.Dispose();
        Accelerator.Dispose();
        _context.Dispose();
    }

    /// <summary>The device window of a tensor that lives in this backend's memory.</summary>
    internal static ArrayView<float> View(TensorView t)
    {
        if (t.Buffer is not IlgpuBuffer b)
            throw new ArgumentException($"tensor {t.ShapeText} does not live in ILGPU device memory");
        if (t.Offset < 0 || t.Offset + t.ElementCount > b.Length)
            throw new ArgumentException($"tensor {t.ShapeText} at offset {t.Offset} overruns its buffer of {b.Length} elements");
        if (t.ElementCount > int.MaxValue)
            throw new ArgumentException($"tensor {t.ShapeText} has more than 2^31 elements (kernels index with int)");
        return b.Memory.View.SubView(t.Offset, t.ElementCount);
    }

    private static Index1D Elements(TensorView t) => new(checked((int)t.ElementCount));

    private static int Blocks(int count, int tile) => (count + tile - 1) / tile;

    private static void CheckSpec(ConvSpec spec)
    {
        if (spec.Groups <= 0 || spec.InChannels % spec.Groups != 0 || spec.OutChannels % spec.Groups != 0)
            throw new ArgumentException($"conv {spec}: channels must divide into {spec.Groups} groups", nameof(spec));
        if (spec.Kernel <= 0 || spec.Stride <= 0 || spec.Padding < 0)
            throw new ArgumentException($"conv {spec}: kernel and stride must be positive, padding non-negative", nameof(spec));
    }

    private static void CheckLength(int length, TensorView t)
    {
        if (length != t.ElementCount)
            throw new ArgumentException($"{length} values do not fit tensor {t.ShapeText} ({t.ElementCount} elements)");
    }

    private sealed class PreparedConv(ConvSpec spec, MemoryBuffer1D<float, Stride1D.Dense> weight, MemoryBuffer1D<float, Stride1D.Dense>? bias) : IPreparedConv
    {
        public ConvSpec Spec { get; } = spec;
        public MemoryBuffer1D<float, Stride1D.Dense> Weight { get; } = weight;
        public MemoryBuffer1D<float, Stride1D.Dense>? Bias { get; } = bias;

        public void Dispose()
        {
            Weight.Dispose();
            Bias?.Dispose();
        }
    }
}
