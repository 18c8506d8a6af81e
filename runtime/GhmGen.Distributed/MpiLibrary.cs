// The MPI C library, bound by hand: the dozen functions the data-parallel trainer needs, looked
// up with NativeLibrary.GetExport as unmanaged function pointers (AOT-safe; nothing is resolved
// until Load). Two ABIs are handled:
//  * Open MPI (libmpi.so.40, Debian's openmpi-bin): handles are pointers to global objects
//    (MPI_COMM_WORLD = &ompi_mpi_comm_world, MPI_FLOAT = &ompi_mpi_float, MPI_SUM =
//    &ompi_mpi_op_sum), requests are pointers.
//  * MPICH (libmpi.so.12, and its ABI family): handles are 32-bit int constants from mpi.h
//    (MPI_COMM_WORLD 0x44000000, MPI_FLOAT 0x4c00040a, MPI_DOUBLE 0x4c00080b, MPI_BYTE
//    0x4c00010d, MPI_SUM 0x58000003), requests are ints.
// Every handle is passed as a nint: on x86-64 and arm64 an int argument is read from the low half
// of its register or stack slot, so an int handle zero-extended to 64 bits is the same call; a
// request is written by MPICH into the low 4 bytes of a zeroed 8-byte slot. Statuses are ignored
// through a scratch buffer larger than either library's MPI_Status (Open MPI 24 bytes, MPICH 20).
// Open MPI loads its components with dlopen and needs libmpi's symbols global, so the library is
// opened with RTLD_NOW | RTLD_GLOBAL through libc's dlopen rather than NativeLibrary.Load alone.
using System.Runtime.InteropServices;

namespace GhmGen.Distributed;

/// <summary>Which MPI implementation's ABI the loaded library has.</summary>
public enum MpiFlavor
{
    /// <summary>Open MPI (pointer handles).</summary>
    OpenMpi,

    /// <summary>MPICH or an MPICH-ABI library (int handles).</summary>
    Mpich,
}

internal sealed unsafe class MpiLibrary
{
    public const int Success = 0;
    public const int ThreadFunneled = 1; // the same value in Open MPI and MPICH

    private readonly nint _handle;

    public delegate* unmanaged<int*, nint, int, int*, int> InitThread;
    public delegate* unmanaged<int*, int> Initialized;
    public delegate* unmanaged<int*, int> Finalized;
    public delegate* unmanaged<int> Finalize;
    public delegate* unmanaged<nint, int*, int> CommRank;
    public delegate* unmanaged<nint, int*, int> CommSize;
    public delegate* unmanaged<void*, int, nint, int, nint, int> Bcast;
    public delegate* unmanaged<void*, void*, int, nint, nint, nint, int> Allreduce;
    public delegate* unmanaged<void*, void*, int, nint, nint, nint, nint*, int> Iallreduce;
    public delegate* unmanaged<int, nint*, void*, int> Waitall;
    public delegate* unmanaged<nint*, int*, void*, int> Test;
    public delegate* unmanaged<nint, int, int> Abort;
    public delegate* unmanaged<nint, int> Barrier;
    public delegate* unmanaged<byte*, int*, int> GetLibraryVersion;

    private MpiLibrary(nint handle, string path, MpiFlavor flavor)
    {
        _handle = handle;
        Path = path;
        Flavor = flavor;
        InitThread = (delegate* unmanaged<int*, nint, int, int*, int>)Export("MPI_Init_thread");
        Initialized = (delegate* unmanaged<int*, int>)Export("MPI_Initialized");
        Finalized = (delegate* unmanaged<int*, int>)Export("MPI_Finalized");
        Finalize = (delegate* unmanaged<int>)Export("MPI_Finalize");
        CommRank = (delegate* unmanaged<nint, int*, int>)Export("MPI_Comm_rank");
        CommSize = (delegate* unmanaged<nint, int*, int>)Export("MPI_Comm_size");
        Bcast = (delegate* unmanaged<void*, int, nint, int, nint, int>)Export("MPI_Bcast");
        Allreduce = (delegate* unmanaged<void*, void*, int, nint, nint, nint, int>)Export("MPI_Allreduce");
        Iallreduce = (delegate* unmanaged<void*, void*, int, nint, nint, nint, nint*, int>)Export("MPI_Iallreduce");
        Waitall = (delegate* unmanaged<int, nint*, void*, int>)Export("MPI_Waitall");
        Test = (delegate* unmanaged<nint*, int*, void*, int>)Export("MPI_Test");
        Abort = (delegate* unmanaged<nint, int, int>)Export("MPI_Abort");
        Barrier = (delegate* unmanaged<nint, int>)Export("MPI_Barrier");
        GetLibraryVersion = (delegate* unmanaged<byte*, int*, int>)Export("MPI_Get_library_version");
        if (flavor == MpiFlavor.OpenMpi)
        {
            CommWorld = Export("ompi_mpi_comm_world");
            Float = Export("ompi_mpi_float");
            Double = Export("ompi_mpi_double");
            Byte = Export("ompi_mpi_byte");
            Sum = Export("ompi_mpi_op_sum");
        }
        else
        {
            CommWorld = 0x44000000;
            Float = 0x4c00040a;
            Double = 0x4c00080b;
            Byte = 0x4c00010d;
            Sum = 0x58000003;
        }
    }

    /// <summary>The file that was loaded.</summary>
    public string Path { get; }

    public MpiFlavor Flavor { get; }

    public nint CommWorld { get; }

    public nint Float { get; }

    public nint Double { get; }

    public nint Byte { get; }

    public nint Sum { get; }

    /// <summary>The library's MPI_Get_library_version string (first line).</summary>
    public string Version()
    {
        byte* buffer = stackalloc byte[8192]; // >= MPI_MAX_LIBRARY_VERSION_STRING of both
        int length = 0;
        if (GetLibraryVersion(buffer, &length) != Success) return "unknown";
        string text = Marshal.PtrToStringUTF8((nint)buffer, Math.Clamp(length, 0, 8191)) ?? "unknown";
        int newline = text.IndexOfAny(['\n', '\r']);
        return (newline >= 0 ? text[..newline] : text).Trim().TrimEnd('\0');
    }

    /// <summary>
    /// Loads the MPI library: <paramref name="path"/> when given (or the environment's
    /// <c>GHM_MPI_LIBRARY</c>), else the first that the dynamic loader finds of libmpi.so.40 (Open
    /// MPI), libmpi.so.12, libmpich.so.12 (MPICH), libmpi.so, with MPICH's first when the launcher
    /// is not Open MPI's (no <c>OMPI_COMM_WORLD_SIZE</c>).
    /// </summary>
    /// <exception cref="DllNotFoundException">None could be loaded; the message lists what was tried.</exception>
    public static MpiLibrary Load(string? path = null)
    {
        path ??= Environment.GetEnvironmentVariable("GHM_MPI_LIBRARY");
        // The launcher's own library first: Open MPI's mpirun sets OMPI_*, MPICH's Hydra does not.
        bool openMpiLauncher = Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE") is not null;
        string[] candidates = path is { Length: > 0 } ? [path]
            : openMpiLauncher ? ["libmpi.so.40", "libmpi.so.12", "libmpich.so.12", "libmpi.so"]
            : ["libmpich.so.12", "libmpi.so.12", "libmpi.so.40", "libmpi.so"];
        var errors = new List<string>();
        foreach (string candidate in candidates)
        {
            nint handle = OpenGlobal(candidate, out string? error);
            if (handle == 0)
            {
                errors.Add($"{candidate}: {error}");
                continue;
            }
            MpiFlavor flavor = NativeLibrary.TryGetExport(handle, "ompi_mpi_comm_world", out _) ? MpiFlavor.OpenMpi : MpiFlavor.Mpich;
            return new MpiLibrary(handle, candidate, flavor);
        }
        throw new DllNotFoundException("could not load an MPI library (install Open MPI, e.g. apt-get install openmpi-bin libopenmpi-dev, or MPICH; " +
            "or set GHM_MPI_LIBRARY to libmpi's path): " + string.Join("; ", errors));
    }

    private nint Export(string name) =>
        NativeLibrary.TryGetExport(_handle, name, out nint address) ? address
            : throw new EntryPointNotFoundException($"{Path} has no '{name}': not an MPI-3 library of a supported ABI (Open MPI or MPICH)");

    // dlopen(name, RTLD_NOW | RTLD_GLOBAL): Open MPI's components resolve libmpi's symbols globally.
    private static nint OpenGlobal(string name, out string? error)
    {
        const int RtldNow = 2, RtldGlobal = 0x100;
        error = null;
        nint libc;
        if (!NativeLibrary.TryLoad("libc.so.6", out libc))
        {
            if (NativeLibrary.TryLoad(name, out nint plain)) return plain;
            error = "not found";
            return 0;
        }
        var dlopen = (delegate* unmanaged<byte*, int, nint>)NativeLibrary.GetExport(libc, "dlopen");
        var dlerror = (delegate* unmanaged<byte*>)NativeLibrary.GetExport(libc, "dlerror");
        nint handle;
        fixed (byte* utf8 = System.Text.Encoding.UTF8.GetBytes(name + "\0")) handle = dlopen(utf8, RtldNow | RtldGlobal);
        if (handle == 0) error = Marshal.PtrToStringUTF8((nint)dlerror()) ?? "not found";
        return handle;
    }
}
