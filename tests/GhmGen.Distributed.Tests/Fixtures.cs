namespace GhmGen.Distributed.Tests;

/// <summary>The four-image dataset of tools/reference/train_reference.py (linked from GhmGen.Models.Tests) and train_ddp_reference.json.</summary>
internal static class Fixtures
{
    public static string Directory => Path.Combine(AppContext.BaseDirectory, "Fixtures");

    public static string AnnotationFile => Path.Combine(Directory, "Training", "annotations.json");

    public static string ImageRoot => Path.Combine(Directory, "Training", "images");

    public static string DdpReference => Path.Combine(Directory, "train_ddp_reference.json");

}

/// <summary>A fresh folder under the temporary folder, deleted with everything in it on Dispose.</summary>
internal sealed class TempFolder : IDisposable
{
    public TempFolder(string name)
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "ghmgen-distributed-tests", $"{name}-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
