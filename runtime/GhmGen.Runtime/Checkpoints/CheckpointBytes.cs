using System.IO.MemoryMappedFiles;

namespace GhmGen.Checkpoints;

/// <summary>
/// The bytes of one checkpoint file, either memory-mapped (files) or held in an array (tests,
/// in-memory input). Every access is bounds-checked against the real length, so a declared size
/// or offset in the file can never reach outside it.
/// </summary>
internal abstract class CheckpointBytes : IDisposable
{
    protected CheckpointBytes(string name, long length)
    {
        Name = name;
        Length = length;
    }

    /// <summary>The file name used in error messages.</summary>
    public string Name { get; }

    /// <summary>Total length in bytes.</summary>
    public long Length { get; }

    /// <summary>Bytes [offset, offset + length); throws a format error when outside the file.</summary>
    public ReadOnlySpan<byte> Slice(long offset, int length)
    {
        if (offset < 0 || length < 0 || offset > Length || length > Length - offset)
        {
            throw Fail($"needs bytes {offset}..{offset + (long)length} but the file has {Length}");
        }
        return SliceUnchecked(offset, length);
    }

    /// <summary>Whether [offset, offset + length) lies inside the file.</summary>
    public bool Contains(long offset, long length) =>
        offset >= 0 && length >= 0 && offset <= Length && length <= Length - offset;

    protected abstract ReadOnlySpan<byte> SliceUnchecked(long offset, int length);

    public CheckpointFormatException Fail(string problem, Exception? inner = null) => new(Name, problem, inner);

    public abstract void Dispose();

    /// <summary>Bytes held in a managed array.</summary>
    public sealed class InMemory(string name, ReadOnlyMemory<byte> bytes) : CheckpointBytes(name, bytes.Length)
    {
        protected override ReadOnlySpan<byte> SliceUnchecked(long offset, int length) => bytes.Span.Slice((int)offset, length);

        public override void Dispose()
        {
        }
    }

    /// <summary>
    /// A read-only memory map of a file: pages come from the OS cache as tensors are read, so
    /// reading a checkpoint costs its mapped pages (shared, reclaimable) plus the values copied out.
    /// The file must not be truncated by another process while it is open.
    /// </summary>
    public sealed unsafe class Mapped : CheckpointBytes
    {
        private readonly MemoryMappedFile _map;
        private readonly MemoryMappedViewAccessor _view;
        private byte* _pointer;

        private Mapped(string name, long length, MemoryMappedFile map, MemoryMappedViewAccessor view)
            : base(name, length)
        {
            _map = map;
            _view = view;
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            _pointer = p + view.PointerOffset;
        }

        public static CheckpointBytes Open(string path)
        {
            string name = Path.GetFileName(path);
            FileStream stream;
            try
            {
                stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new CheckpointFormatException(name, $"cannot open '{path}': {OpenFailure(path, e)}", e);
            }
            long length = stream.Length;
            if (length == 0)
            {
                stream.Dispose();
                return new InMemory(name, ReadOnlyMemory<byte>.Empty);
            }
            MemoryMappedFile? map = null;
            try
            {
                map = MemoryMappedFile.CreateFromFile(
                    stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
                return new Mapped(name, length, map, map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                map?.Dispose();
                stream.Dispose();
                throw new CheckpointFormatException(name, $"cannot map '{path}': {e.Message}", e);
            }
        }

        /// <summary>Why a checkpoint file could not be opened, in words (not .NET's message, which repeats the full path).</summary>
        private static string OpenFailure(string path, Exception e) => e switch
        {
            FileNotFoundException or DirectoryNotFoundException => "no such file",
            UnauthorizedAccessException when Directory.Exists(path) => "it is a folder",
            UnauthorizedAccessException => "permission denied",
            _ => e.Message,
        };

        protected override ReadOnlySpan<byte> SliceUnchecked(long offset, int length)
        {
            ObjectDisposedException.ThrowIf(_pointer == null, this);
            return new ReadOnlySpan<byte>(_pointer + offset, length);
        }

        public override void Dispose()
        {
            if (_pointer != null)
            {
                _pointer = null;
                _view.SafeMemoryMappedViewHandle.ReleasePointer();
                _view.Dispose();
                _map.Dispose();
            }
        }
    }
}
