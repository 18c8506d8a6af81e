using System.Text.Json;
using GhmGen.Checkpoints;
using Xunit.Abstractions;

namespace GhmGen.Runtime.Tests.Checkpoints;

/// <summary>
/// Random corruptions of the real fixtures: every outcome must be a successful read (all values
/// readable) or a <see cref="CheckpointFormatException"/>; never another exception, crash or hang.
/// </summary>
public sealed class CheckpointFuzzTests(ITestOutputHelper output)
{
    /// <summary>Mutations per fixture file (six fixtures).</summary>
    private const int MutationsPerFile = 2500;

    [Fact]
    public void Random_byte_flips_and_truncations_give_success_or_a_format_error()
    {
        var random = new Random(20261124);
        var failures = new List<string>();
        int succeeded = 0, refused = 0;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        foreach (string name in CheckpointFixtures.AllPth)
        {
            byte[] original = File.ReadAllBytes(CheckpointFixtures.PathOf(name));
            for (int i = 0; i < MutationsPerFile; i++)
            {
                byte[] bytes = Mutate(original, random, out string how);
                try
                {
                    using TorchCheckpoint checkpoint = TorchCheckpoint.Read(bytes, name);
                    Exercise(checkpoint);
                    succeeded++;
                }
                catch (CheckpointFormatException e)
                {
                    Assert.StartsWith($"checkpoint '{name}': ", e.Message);
                    refused++;
                }
                catch (Exception e)
                {
                    if (failures.Count < 10) failures.Add($"{name} #{i} ({how}): {e.GetType().Name}: {e.Message}\n{e.StackTrace}");
                }
            }
        }
        output.WriteLine($"{succeeded + refused + failures.Count} mutations in {clock.Elapsed.TotalSeconds:F2} s: {succeeded} read, {refused} refused");
        Assert.True(failures.Count == 0, string.Join("\n\n", failures));
        Assert.True(refused > 0 && succeeded > 0, "the mutations should both break and spare some files");
    }

    private static void Exercise(TorchCheckpoint checkpoint)
    {
        foreach (CheckpointTensor tensor in checkpoint.Tensors)
        {
            tensor.ReadFloat32();
            if (tensor.DType.IsInteger()) tensor.ReadInt64();
        }
        _ = checkpoint.Root.ToString();
        using var writer = new Utf8JsonWriter(Stream.Null);
        checkpoint.Root.WriteJson(writer);
        _ = checkpoint.ClassNames;
        _ = checkpoint.ConfigText;
    }

    private static byte[] Mutate(byte[] original, Random random, out string how)
    {
        byte[] bytes = (byte[])original.Clone();
        switch (random.Next(5))
        {
            case 0: return ByteMutations.Truncate(bytes, random, out how);
            case 1: return ByteMutations.RandomBytes(bytes, random, out how);
            case 2:
                // Target the structure: the first 400 bytes (pickle header) and the last 200 (zip directory).
                return ByteMutations.BitFlip(bytes, random.Next(2) == 0 ? random.Next(Math.Min(400, bytes.Length)) : bytes.Length - 1 - random.Next(Math.Min(200, bytes.Length)), random, out how);
            case 3:
            {
                int at = random.Next(bytes.Length);
                how = $"0xff run at {at}";
                for (int k = at; k < Math.Min(bytes.Length, at + 1 + random.Next(8)); k++) bytes[k] = 0xff;
                return bytes;
            }
            default: return ByteMutations.Delete(bytes, random, 16, out how);
        }
    }
}
