namespace GhmGen.Distributed.Tests;

/// <summary>The four-image dataset of tools/reference/train_reference.py (linked from GhmGen.Models.Tests) and train_ddp_reference.json.</summary>
internal static class Fixtures
{
    public static string Directory => Path.Combine(AppContext.BaseDirectory, "Fixtures");

    public static string AnnotationFile => Path.Combine(Directory, "Training", "annotations.json");

    public static string ImageRoot => Path.Combine(Directory, "Training", "images");

    public static string DdpReference => Path.Combine(Directory, "train_ddp_reference.json");

    public static string NewWorkDirectory(string name)
    {
        string dir = Path.Combine(Path.GetTempPath(), "ghmgen-distributed-tests", $"{name}-{Environment.ProcessId}-{Guid.NewGuid():N}");
        System.IO.Directory.CreateDirectory(dir);
        return dir;
    }
}
