using GhmGen.Backends;

namespace GhmGen.Layers;

/// <summary>
/// The activation buffers that the generated training sessions of one <see cref="ITrainingWeights"/>
/// share: one buffer per slot of the network's static memory plan, each as long as the longest
/// request for that slot so far. Sessions for different padded batch sizes plan the same slots
/// (only their lengths scale with the input size), and only one of them runs at a time, so one
/// set of buffers sized for the largest shape serves them all: training on images of varying
/// padded sizes holds one session's activation memory instead of one per cached shape.
/// <para>
/// A session binds its tensor views to the buffers of one <see cref="Generation"/>; a request
/// that grows a slot replaces that buffer and starts a new generation, and sessions of older
/// generations rebind before their next <c>Forward</c>. A session's <c>Forward</c> makes it the
/// <see cref="User"/>: the reverse pass reads what the forward left in the buffers, so a
/// <c>Backward</c> must come before any other session's <c>Forward</c>.
/// </para>
/// <para>Threading: not thread-safe, like the sessions that share it (one of them runs at a time).</para>
/// </summary>
public sealed class ActivationArena : IDisposable
{
    private readonly IBackend _backend;
    private readonly DeviceBuffer?[] _buffers;
    private bool _disposed;

    /// <summary>An empty arena of <paramref name="slots"/> buffers on <paramref name="backend"/>: nothing is allocated until <see cref="Reserve"/>.</summary>
    /// <param name="backend">Where the buffers live.</param>
    /// <param name="slots">Buffers in the memory plan.</param>
    /// <exception cref="ArgumentNullException"><paramref name="backend"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="slots"/> is negative.</exception>
    public ActivationArena(IBackend backend, int slots)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentOutOfRangeException.ThrowIfNegative(slots);
        _backend = backend;
        _buffers = new DeviceBuffer?[slots];
    }

    /// <summary>Buffers in the memory plan.</summary>
    public int SlotCount => _buffers.Length;

    /// <summary>Changes whenever a buffer is replaced: views made from the buffers of another generation are stale.</summary>
    public long Generation { get; private set; }

    /// <summary>The session whose <c>Forward</c> ran last (its activations are the ones in the buffers), or null; a growth resets it, as it replaces buffers.</summary>
    public object? User { get; set; }

    /// <summary>Elements held by all buffers together.</summary>
    public long Elements
    {
        get
        {
            long total = 0;
            foreach (DeviceBuffer? buffer in _buffers) total += buffer?.Length ?? 0;
            return total;
        }
    }

    /// <summary>
    /// Makes every buffer at least as long as <paramref name="lengths"/> says and returns the
    /// buffers (valid until the <see cref="Generation"/> changes). A buffer that is too short is
    /// released before its replacement is allocated, so growing never holds both; when an
    /// allocation fails (a device out of memory) the exception propagates, the arena keeps the
    /// buffers it still has, and a later call allocates what is missing.
    /// </summary>
    /// <param name="lengths">Elements each slot needs, one entry per slot.</param>
    /// <returns>The arena's buffers, one per slot.</returns>
    /// <exception cref="ArgumentException"><paramref name="lengths"/> does not have <see cref="SlotCount"/> entries, or one is negative.</exception>
    /// <exception cref="ObjectDisposedException">The arena was disposed.</exception>
    public DeviceBuffer[] Reserve(ReadOnlySpan<long> lengths)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (lengths.Length != _buffers.Length)
            throw new ArgumentException($"the memory plan has {_buffers.Length} buffers, not {lengths.Length}", nameof(lengths));
        foreach (long length in lengths)
            if (length < 0) throw new ArgumentException($"a buffer length of {length} is negative", nameof(lengths));

        long released = 0;
        try
        {
            for (int i = 0; i < _buffers.Length; i++)
            {
                if (_buffers[i] is { } held && held.Length >= lengths[i]) continue;
                if (_buffers[i] is { } shorter)
                {
                    released += shorter.Length;
                    shorter.Dispose();
                }
                _buffers[i] = null;
                Generation++;
                User = null;
                _buffers[i] = _backend.Allocate(lengths[i]);
            }
        }
        finally
        {
            // Host buffers are large managed arrays: a replaced one would stay resident next to
            // its successor until a full collection.
            if (released > LargeRelease) GC.Collect();
        }
        return [.. _buffers.Select(b => b!)];
    }

    // 16 M floats (64 MB): below this, replaced buffers are left to the collector's own pace.
    private const long LargeRelease = 16L << 20;

    /// <summary>Releases the buffers.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        for (int i = 0; i < _buffers.Length; i++)
        {
            _buffers[i]?.Dispose();
            _buffers[i] = null;
        }
        User = null;
    }
}
