namespace GhmGen.Datasets;

/// <summary>SplitMix64 (Steele, Lea, Flood 2014): a small, fast generator whose stream is fixed by its seed on every platform.</summary>
/// <remarks>Used instead of <see cref="Random"/> so the dataset does not depend on the runtime's choice of algorithm.</remarks>
internal struct SplitMix64
{
    private ulong _state;

    public SplitMix64(ulong seed) => _state = seed;

    /// <summary>The generator for image <paramref name="index"/> of split <paramref name="split"/> (0 train, 1 val) under <paramref name="seed"/>.</summary>
    public static SplitMix64 ForImage(int seed, int split, int index)
    {
        ulong h = Mix((ulong)(uint)seed + 0x5EED_5EED_0000_0001UL);
        h = Mix(h ^ ((ulong)(uint)split + 0x9E37_79B9_7F4A_7C15UL));
        h = Mix(h ^ (ulong)(uint)index);
        return new SplitMix64(h);
    }

    public ulong NextUInt64()
    {
        _state += 0x9E3779B97F4A7C15UL;
        return Mix(_state);
    }

    /// <summary>Uniform in [0, 1), 53 bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Uniform in [min, max).</summary>
    public double NextDouble(double min, double max) => min + (max - min) * NextDouble();

    /// <summary>Uniform integer in [min, max], both inclusive (modulo bias below 2^-40 for the ranges used here).</summary>
    public int NextInt(int min, int max) => min + (int)(NextUInt64() % (ulong)((long)max - min + 1));

    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
